"""jaxmlp.data: tiny files in each format written here; no network, never the real ~/.keras."""

import gzip
import hashlib
import json
import os
import pickle
import struct
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from jaxmlp import data

N_TRAIN, N_TEST = 20, 5  # Fashion-MNIST / MNIST files
CIFAR_PER_BATCH = 2  # 5 batches: 10 training images
SIZES = {"fashion_mnist": (N_TRAIN, N_TEST, 784), "mnist": (N_TRAIN, N_TEST, 784),
         "cifar10": (5 * CIFAR_PER_BATCH, CIFAR_PER_BATCH, 3072)}


@pytest.fixture(autouse=True)
def no_real_data_dirs(tmp_path, monkeypatch):
    """Point HOME at an empty directory and unset JAXMLP_DATA_DIR."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("JAXMLP_DATA_DIR", raising=False)


@pytest.fixture
def no_tensorflow(monkeypatch):
    """Make `import tensorflow` and `import tensorflow_datasets` fail, as without TensorFlow."""
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)


# --- writing the formats -----------------------------------------------------------------------

def write_idx(path: Path, array: np.ndarray, magic: int, *, cut: int = 0) -> None:
    """A gzipped IDX file with `cut` bytes dropped from the end of the uncompressed content."""
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw[:len(raw) - cut]))


def images(n: int, shape: tuple, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


def labels(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 10, n).astype(np.uint8)


def write_fashion_mnist(root: Path) -> dict:
    arrays = {"x_train": images(N_TRAIN, (28, 28), 1), "y_train": labels(N_TRAIN, 2),
              "x_test": images(N_TEST, (28, 28), 3), "y_test": labels(N_TEST, 4)}
    d = root / "fashion-mnist"
    write_idx(d / "train-images-idx3-ubyte.gz", arrays["x_train"], 2051)
    write_idx(d / "train-labels-idx1-ubyte.gz", arrays["y_train"], 2049)
    write_idx(d / "t10k-images-idx3-ubyte.gz", arrays["x_test"], 2051)
    write_idx(d / "t10k-labels-idx1-ubyte.gz", arrays["y_test"], 2049)
    return arrays


def write_mnist(root: Path) -> dict:
    arrays = {"x_train": images(N_TRAIN, (28, 28), 5), "y_train": labels(N_TRAIN, 6),
              "x_test": images(N_TEST, (28, 28), 7), "y_test": labels(N_TEST, 8)}
    root.mkdir(parents=True, exist_ok=True)
    np.savez(root / "mnist.npz", **arrays)
    return arrays


def write_cifar_batch(path: Path, x, y) -> None:
    """Like the real batches: a protocol-2 pickle of a dict with bytes keys."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump({b"batch_label": b"test", b"labels": list(y), b"data": x,
                     b"filenames": [b"x.png"] * len(y)}, f, protocol=2)


def write_cifar10(root: Path) -> dict:
    """Five training batches and a test batch; x in the files' CHW planes."""
    n = CIFAR_PER_BATCH
    x = images(6 * n, (3072,), 9)
    y = [int(v) for v in labels(6 * n, 10)]
    d = root / "cifar-10-batches-py"
    for b in range(5):
        write_cifar_batch(d / f"data_batch_{b + 1}", x[b * n:(b + 1) * n], y[b * n:(b + 1) * n])
    write_cifar_batch(d / "test_batch", x[5 * n:], y[5 * n:])
    return {"x_train": x[:5 * n], "y_train": np.array(y[:5 * n]),
            "x_test": x[5 * n:], "y_test": np.array(y[5 * n:])}


WRITERS = {"fashion_mnist": write_fashion_mnist, "mnist": write_mnist, "cifar10": write_cifar10}


def hwc(x: np.ndarray) -> np.ndarray:
    return x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).reshape(len(x), -1)


# --- what comes back ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", data.DATASETS)
def test_arrays_are_flat_float32_in_unit_range_with_int32_labels(tmp_path, name):
    raw = WRITERS[name](tmp_path)
    ds = data.load(name, data_dir=tmp_path, validation_split=0.2)
    n_train, n_test, dim = SIZES[name]
    n_val = n_train - int(n_train * 0.8)
    assert ds.x_train.shape == (n_train - n_val, dim) and ds.x_val.shape == (n_val, dim)
    assert ds.x_test.shape == (n_test, dim) and ds.num_classes == 10
    for x, y in ((ds.x_train, ds.y_train), (ds.x_val, ds.y_val), (ds.x_test, ds.y_test)):
        assert x.dtype == np.float32 and y.dtype == np.int32 and len(x) == len(y)
        assert 0.0 <= x.min() and x.max() <= 1.0
    flat = hwc if name == "cifar10" else (lambda a: a.reshape(len(a), -1))
    expected = flat(raw["x_train"]).astype("float32") / 255  # what Keras users write
    np.testing.assert_array_equal(np.concatenate([ds.x_train, ds.x_val]), expected)
    np.testing.assert_array_equal(np.concatenate([ds.y_train, ds.y_val]), raw["y_train"])
    np.testing.assert_array_equal(ds.x_test, flat(raw["x_test"]).astype("float32") / 255)
    np.testing.assert_array_equal(ds.y_test, raw["y_test"])


def test_the_pixel_table_is_what_keras_users_write_for_every_uint8_value():
    every = np.arange(256, dtype=np.uint8)
    expected = every.astype("float32") / 255  # what Keras users write
    assert data.PIXEL_FEATURES.dtype == np.float32
    np.testing.assert_array_equal(data.PIXEL_FEATURES, expected)
    np.testing.assert_array_equal(data.features(every), expected)


@pytest.mark.parametrize("name", data.DATASETS)
def test_pixels_are_the_uint8_images_the_features_come_from(tmp_path, name):
    from jaxmlp import epoch

    WRITERS[name](tmp_path)
    ds = data.load(name, data_dir=tmp_path, validation_split=0.2)
    px = data.load(name, data_dir=tmp_path, validation_split=0.2, pixels=True)
    assert px.pixels and not ds.pixels and px.identity == ds.identity
    for a, b in ((px.x_train, ds.x_train), (px.x_val, ds.x_val), (px.x_test, ds.x_test)):
        assert a.dtype == np.uint8 and a.shape == b.shape
        np.testing.assert_array_equal(data.PIXEL_FEATURES[a], b)
    for a, b in ((px.y_train, ds.y_train), (px.y_val, ds.y_val), (px.y_test, ds.y_test)):
        np.testing.assert_array_equal(a, b)
    # on the device (alone or replicated over a mesh), pixels become the host's features bit
    # for bit, labels untouched
    import jax
    from jax.sharding import Mesh

    mesh = Mesh(np.array(jax.devices()[:1]), ("data",))
    for on_device, expected in ((epoch.device_data(px), epoch.device_data(ds)),
                                (epoch.device_data(px, mesh), epoch.device_data(ds, mesh))):
        for a, b in zip(on_device, expected):
            assert a.dtype == b.dtype and a.shape == b.shape and a.sharding == b.sharding
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_pixels_are_asked_for_uint8_images_only():
    x, y = np.full((4, 2, 2), 0.5, np.float32), np.arange(4) % 10  # floats, not pixels
    ds = data.assemble("toy", (x, y, x[:2], y[:2]), {"files": {}}, 0.25, "tail", 0,
                       pixels=True)
    assert not ds.pixels and ds.x_train.dtype == np.float32  # scaled as before: 0.5 / 255
    np.testing.assert_array_equal(ds.x_train, np.full((3, 4), 0.5 / 255, np.float32))


@pytest.mark.parametrize("c,i,j", [(0, 0, 0), (1, 0, 0), (2, 5, 7), (0, 31, 30), (1, 17, 3)])
def test_cifar_is_flattened_hwc_like_keras(tmp_path, c, i, j):
    write_cifar10(tmp_path)
    x = np.zeros((CIFAR_PER_BATCH, 3072), np.uint8)
    x[0, c * 1024 + i * 32 + j] = 255  # the file stores three 32x32 planes
    write_cifar_batch(tmp_path / "cifar-10-batches-py/data_batch_1", x, [0] * CIFAR_PER_BATCH)
    first = data.load("cifar10", data_dir=tmp_path).x_train[0]
    assert np.flatnonzero(first).tolist() == [(i * 32 + j) * 3 + c]


@pytest.mark.parametrize("n,fraction,n_train", [
    (60000, 0.1, 54000), (50000, 0.1, 45000), (20, 0.25, 15), (7, 0.5, 3),
    (10, 0.8, 1),  # Keras's float arithmetic: 10 * (1 - 0.8) = 1.9999999999999996
    (50, 0.34, 32),  # 50 * 0.6599999999999999 = 32.99...
    (1000, 0.0, 1000),
])
def test_tail_split_is_the_last_fraction_with_keras_sizes(n, fraction, n_train):
    train, val = data.split_indices(n, fraction, "tail")
    np.testing.assert_array_equal(train, np.arange(n_train))
    np.testing.assert_array_equal(val, np.arange(n_train, n))


def test_tail_split_of_loaded_data_holds_the_last_rows(tmp_path):
    raw = write_fashion_mnist(tmp_path)
    ds = data.load("fashion_mnist", data_dir=tmp_path, validation_split=0.25)
    np.testing.assert_array_equal(ds.y_val, raw["y_train"][15:])
    np.testing.assert_array_equal(ds.x_val * 255, raw["x_train"][15:].reshape(5, -1))


@pytest.mark.parametrize("name", ["fashion_mnist", "cifar10"])
def test_zero_validation_split_gives_empty_two_dimensional_val(tmp_path, name):
    WRITERS[name](tmp_path)
    ds = data.load(name, data_dir=tmp_path, validation_split=0.0)
    n_train, _, dim = SIZES[name]
    assert ds.x_train.shape == (n_train, dim)
    assert ds.x_val.shape == (0, dim) and ds.x_val.dtype == np.float32
    assert ds.y_val.shape == (0,) and ds.y_val.dtype == np.int32


def test_shuffled_split_is_seeded_disjoint_and_complete():
    train, val = data.split_indices(100, 0.3, "shuffled", seed=1)
    assert len(train) == 70 and len(val) == 30
    assert not set(train) & set(val)
    assert sorted([*train, *val]) == list(range(100))
    again = data.split_indices(100, 0.3, "shuffled", seed=1)
    other = data.split_indices(100, 0.3, "shuffled", seed=2)
    np.testing.assert_array_equal(val, again[1])
    assert set(val) != set(other[1]) and set(val) != set(range(70, 100))


def test_shuffled_split_of_loaded_data(tmp_path):
    raw = write_fashion_mnist(tmp_path)
    ds = data.load("fashion_mnist", data_dir=tmp_path, split="shuffled", split_seed=3)
    _, val = data.split_indices(N_TRAIN, 0.1, "shuffled", 3)
    np.testing.assert_array_equal(ds.y_val, raw["y_train"][val])
    assert ds.identity["split"] == "shuffled" and ds.identity["split_seed"] == 3


@pytest.mark.parametrize("name", data.DATASETS)
def test_identity_records_files_sizes_and_split(tmp_path, name):
    WRITERS[name](tmp_path)
    ident = data.load(name, data_dir=tmp_path).identity
    assert json.loads(json.dumps(ident)) == ident
    assert ident["files"] == {rel: hashlib.sha256((tmp_path / rel).read_bytes()).hexdigest()
                              for rel in data.FILES[name]}
    assert ident["files"] == {rel: data.sha256_file(tmp_path / rel) for rel in data.FILES[name]}
    n_train, n_test, _ = SIZES[name]
    assert ident | {"files": None} == {
        "name": name, "source": "local", "path": str(tmp_path), "files": None,
        "n_train": int(n_train * 0.9), "n_val": n_train - int(n_train * 0.9), "n_test": n_test,
        "validation_split": 0.1, "split": "tail", "split_seed": None,
        "note": ident["note"]}
    assert ident["note"] == ""  # these are not the JPEG-decoded CIFAR-10 copy


def test_the_jpeg_note_marks_only_the_jpeg_decoded_cifar_copy(tmp_path, monkeypatch):
    write_cifar10(tmp_path)
    batch_1 = data.sha256_file(tmp_path / data.FILES["cifar10"][0])
    monkeypatch.setattr(data, "JPEG_COPY_BATCH_1", batch_1)  # pretend this is that copy
    note = data.load("cifar10", data_dir=tmp_path).identity["note"]
    assert "JPEG" in note and "PROVENANCE.md" in note


# --- where the files are looked for ------------------------------------------------------------

def test_env_var_comes_before_the_keras_cache(tmp_path, monkeypatch):
    keras_cache = tmp_path / "home" / ".keras" / "datasets"
    write_fashion_mnist(keras_cache)
    assert data.load("fashion_mnist").identity["path"] == str(keras_cache)
    write_fashion_mnist(tmp_path / "env")
    monkeypatch.setenv("JAXMLP_DATA_DIR", str(tmp_path / "env"))
    for source in ("auto", "local"):
        assert data.load("fashion_mnist", source=source).identity["path"] == str(tmp_path / "env")


def test_auto_with_nothing_local_and_no_tensorflow_names_every_way_out(tmp_path, no_tensorflow):
    with pytest.raises(data.DataError) as e:
        data.load("fashion_mnist")
    msg = str(e.value)
    for needle in ("--data-dir", "data_dir=", "JAXMLP_DATA_DIR", "--download", "TensorFlow",
                   "train-images-idx3-ubyte.gz", "cifar-10-batches-py", "mnist.npz",
                   str(tmp_path / "home" / ".keras" / "datasets")):
        assert needle in msg


def test_tfds_without_tensorflow_names_the_local_option(no_tensorflow):
    with pytest.raises(data.DataError, match="TensorFlow") as e:
        data.load("cifar10", source="tfds")
    assert "--data-dir" in str(e.value) and "JAXMLP_DATA_DIR" in str(e.value)


def test_tfds_arrays_are_flattened_like_local_ones(monkeypatch):
    x = images(4, (32, 32, 3), 11)  # tfds images are HWC
    y = np.arange(4, dtype=np.int64)
    fake = types.SimpleNamespace(as_numpy=lambda t: t,
                                 load=lambda name, **kw: [(x, y), (x[:2], y[:2])])
    monkeypatch.setitem(sys.modules, "tensorflow", types.ModuleType("tensorflow"))
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake)
    ds = data.load("cifar10", source="tfds", validation_split=0.25)
    np.testing.assert_array_equal(ds.x_train, x[:3].reshape(3, -1).astype("float32") / 255)
    assert ds.y_train.dtype == np.int32 and ds.x_test.shape == (2, 3072)
    assert ds.identity["source"] == "tfds" and ds.identity["files"] == {}
    assert ds.identity["note"] == ""


# --- every problem is one DataError ------------------------------------------------------------

def test_data_error_is_a_value_error():
    assert issubclass(data.DataError, ValueError)


@pytest.mark.parametrize("kwargs,match", [
    ({"name": "imagenet"}, "unknown dataset 'imagenet': allowed fashion_mnist, cifar10, mnist"),
    ({"source": "web"}, "source='web': allowed 'auto', 'local', 'tfds'"),
    ({"split": "random"}, "split='random': allowed 'tail', 'shuffled'"),
    ({"validation_split": 1.0}, r"validation_split=1.0: allowed a number in \[0, 1\)"),
    ({"validation_split": -0.1}, "validation_split=-0.1"),
    ({"validation_split": float("nan")}, "validation_split=nan"),
    ({"validation_split": "0.1"}, "validation_split='0.1'"),
    ({"split_seed": 1.5}, "split_seed=1.5: allowed an integer"),
])
def test_bad_arguments_are_refused_before_reading(tmp_path, kwargs, match):
    args = {"name": "fashion_mnist", "data_dir": tmp_path / "absent"} | kwargs
    with pytest.raises(data.DataError, match=match):
        data.load(args.pop("name"), **args)


def test_a_split_leaving_a_part_empty_is_refused_like_keras():
    with pytest.raises(data.DataError, match="leaves an empty"):
        data.split_indices(1, 0.5, "tail")


@pytest.mark.parametrize("name", data.DATASETS)
def test_missing_file_is_named_with_the_layout(tmp_path, name):
    WRITERS[name](tmp_path)
    gone = tmp_path / data.FILES[name][-1]
    gone.unlink()
    for source in ("local", "auto"):
        with pytest.raises(data.DataError) as e:
            data.load(name, data_dir=tmp_path, source=source)
        assert f"missing {gone}" in str(e.value) and "Accepted layout" in str(e.value)


@pytest.mark.parametrize("cut", [1, 500])
def test_truncated_idx_names_file_and_sizes(tmp_path, cut):
    raw = write_fashion_mnist(tmp_path)
    path = tmp_path / "fashion-mnist/train-images-idx3-ubyte.gz"
    write_idx(path, raw["x_train"], 2051, cut=cut)
    full = 16 + N_TRAIN * 784
    with pytest.raises(data.DataError, match=f"{full - cut} bytes after decompression, "
                                             f"expected {full}") as e:
        data.load("fashion_mnist", data_dir=tmp_path)
    assert str(path) in str(e.value) and "truncated" in str(e.value)


def test_truncated_gzip_stream_names_the_file(tmp_path):
    write_fashion_mnist(tmp_path)
    path = tmp_path / "fashion-mnist/t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(data.DataError, match="not a readable gzip file, or truncated") as e:
        data.load("fashion_mnist", data_dir=tmp_path)
    assert str(path) in str(e.value)


def test_not_gzip_at_all(tmp_path):
    write_fashion_mnist(tmp_path)
    path = tmp_path / "fashion-mnist/train-labels-idx1-ubyte.gz"
    path.write_bytes(b"<html>not found</html>")
    with pytest.raises(data.DataError, match="not a readable gzip file"):
        data.load("fashion_mnist", data_dir=tmp_path)


def test_bad_magic_number(tmp_path):
    raw = write_fashion_mnist(tmp_path)
    # an images file where the labels belong
    write_idx(tmp_path / "fashion-mnist/train-labels-idx1-ubyte.gz", raw["x_train"], 2051)
    with pytest.raises(data.DataError, match="bad magic number 2051, expected 2049"):
        data.load("fashion_mnist", data_dir=tmp_path)


def test_wrong_image_dims(tmp_path):
    write_fashion_mnist(tmp_path)
    write_idx(tmp_path / "fashion-mnist/t10k-images-idx3-ubyte.gz", images(N_TEST, (27, 28), 0),
              2051)
    with pytest.raises(data.DataError, match=r"IDX shape \(5, 27, 28\), expected \(N, 28, 28\)"):
        data.load("fashion_mnist", data_dir=tmp_path)


def test_image_and_label_counts_must_agree(tmp_path):
    write_fashion_mnist(tmp_path)
    write_idx(tmp_path / "fashion-mnist/t10k-labels-idx1-ubyte.gz", labels(N_TEST + 1, 0), 2049)
    with pytest.raises(data.DataError, match=r"fashion_mnist test: \S*t10k-images-idx3-ubyte.gz "
                       r"holds 5 images but \S*t10k-labels-idx1-ubyte.gz holds 6 labels"):
        data.load("fashion_mnist", data_dir=tmp_path)


def test_labels_out_of_range(tmp_path):
    write_fashion_mnist(tmp_path)
    write_idx(tmp_path / "fashion-mnist/train-labels-idx1-ubyte.gz",
              np.full(N_TRAIN, 10, np.uint8), 2049)
    with pytest.raises(data.DataError, match=r"labels in \[10, 10\], allowed 0..9"):
        data.load("fashion_mnist", data_dir=tmp_path)


@pytest.mark.parametrize("x,y", [
    (np.zeros((2, 3071), np.uint8), [0, 1]),
    (np.zeros((2, 3072), np.float32), [0, 1]),
    (np.zeros((2, 3072), np.uint8), [0, 1, 2]),
    ([[0] * 3072] * 2, [0, 1]),
])
def test_wrong_cifar_data_is_refused(tmp_path, x, y):
    write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py/data_batch_3"
    write_cifar_batch(path, x, y)
    with pytest.raises(data.DataError, match=r"expected uint8 \(N, 3072\) and N labels") as e:
        data.load("cifar10", data_dir=tmp_path)
    assert str(path) in str(e.value)


def test_cifar_batch_that_is_not_a_pickle(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py/test_batch").write_bytes(b"\x80\x02}q\x00(")  # cut short
    with pytest.raises(data.DataError, match="not a CIFAR-10 python batch"):
        data.load("cifar10", data_dir=tmp_path)


class RunsAShellCommand:
    """What a malicious pickle does: names a callable that pickle will call on load."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class CallsEval:
    def __reduce__(self):
        return eval, ("1 + 1",)


@pytest.mark.parametrize("evil", ["shell", "eval"])
def test_malicious_cifar_pickle_is_refused_and_never_run(tmp_path, evil):
    write_cifar10(tmp_path)
    sentinel = tmp_path / "SENTINEL"
    payload = RunsAShellCommand(f"touch {sentinel}") if evil == "shell" else CallsEval()
    path = tmp_path / "cifar-10-batches-py/data_batch_2"
    with open(path, "wb") as f:  # the payload sits beside real-looking data
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": payload}, f, protocol=2)
    with pytest.raises(data.DataError, match="refusing to load pickle global") as e:
        data.load("cifar10", data_dir=tmp_path)
    assert str(path) in str(e.value)
    assert ("system" in str(e.value)) if evil == "shell" else ("eval" in str(e.value))
    assert not sentinel.exists()


def test_codecs_encode_is_admitted_only_for_latin1_bytes(tmp_path):
    """Protocol-2 pickles spell bytes as _codecs.encode(text, 'latin1'); nothing else passes."""
    write_cifar10(tmp_path)
    text = b"X\x03\x00\x00\x00abc"  # BINUNICODE 'abc'
    rot13 = b"X\x05\x00\x00\x00rot13"
    crafted = b"\x80\x02c_codecs\nencode\n" + text + rot13 + b"\x86R."
    (tmp_path / "cifar-10-batches-py/test_batch").write_bytes(crafted)
    with pytest.raises(data.DataError, match="_codecs.encode other than for latin-1"):
        data.load("cifar10", data_dir=tmp_path)


def test_npz_with_an_object_array_is_refused(tmp_path):
    arrays = write_mnist(tmp_path)
    np.savez(tmp_path / "mnist.npz", **(arrays | {"y_train": np.array([{}] * N_TRAIN)}))
    with pytest.raises(data.DataError, match="no pickled objects"):
        data.load("mnist", data_dir=tmp_path)


def test_npz_missing_an_array(tmp_path):
    arrays = write_mnist(tmp_path)
    np.savez(tmp_path / "mnist.npz", **{k: v for k, v in arrays.items() if k != "x_test"})
    with pytest.raises(data.DataError, match="x_test"):
        data.load("mnist", data_dir=tmp_path)


def test_npz_with_wrong_image_shape(tmp_path):
    arrays = write_mnist(tmp_path)
    np.savez(tmp_path / "mnist.npz", **(arrays | {"x_train": images(N_TRAIN, (32, 32), 0)}))
    with pytest.raises(data.DataError, match=r"expected uint8 \(N, 28, 28\)"):
        data.load("mnist", data_dir=tmp_path)


# --- the real prepared data, when present ------------------------------------------------------

REAL = os.environ.get("JAXMLP_REAL_DATA")


@pytest.mark.skipif(not REAL or not Path(REAL).is_dir(),
                    reason="set JAXMLP_REAL_DATA to a directory made by shared/datasets/prepare")
def test_real_prepared_data():
    fm = data.load("fashion_mnist", data_dir=REAL)
    assert (len(fm.x_train), len(fm.x_val), len(fm.x_test)) == (54000, 6000, 10000)
    all_train = np.concatenate([fm.x_train, fm.x_val])
    assert all_train.mean(dtype=np.float64) == pytest.approx(0.286041, abs=1e-6)
    assert fm.x_train.mean(dtype=np.float64) == pytest.approx(0.2860, abs=1e-3)
    assert fm.y_train[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    cifar = data.load("cifar10", data_dir=REAL)
    assert (len(cifar.x_train), len(cifar.x_val), len(cifar.x_test)) == (45000, 5000, 10000)
    assert np.bincount(cifar.y_test).tolist() == [1000] * 10
    assert "JPEG" in cifar.identity["note"]
    # the experiments' uint8 pixels give these very features
    for name, ds in (("fashion_mnist", fm), ("cifar10", cifar)):
        px = data.load(name, data_dir=REAL, pixels=True)
        for a, b in ((px.x_train, ds.x_train), (px.x_val, ds.x_val), (px.x_test, ds.x_test)):
            np.testing.assert_array_equal(data.PIXEL_FEATURES[a], b)
