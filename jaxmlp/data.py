"""Datasets as arrays: Fashion-MNIST, CIFAR-10 and MNIST from local files or tfds.

Local files use the Keras cache layout (what `../shared/datasets/prepare DEST` writes):
    fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz
    cifar-10-batches-py/{data_batch_1..5,test_batch}
    mnist.npz
Untrusted files are data, never code: CIFAR pickles go through an Unpickler that admits only
numpy array reconstruction, and `np.load` runs with allow_pickle=False.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATASETS = ("fashion_mnist", "cifar10", "mnist")
SPLITS = ("tail", "shuffled")
LAYOUT = """expected layout (Keras cache; `python ../shared/datasets/prepare DIR` makes it):
  DIR/fashion-mnist/train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
                    t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz
  DIR/cifar-10-batches-py/data_batch_1 .. data_batch_5, test_batch
  DIR/mnist.npz"""
FILES = {
    "fashion_mnist": tuple(f"fashion-mnist/{s}-{k}-ubyte.gz" for s in ("train", "t10k")
                           for k in ("images-idx3", "labels-idx1")),
    "cifar10": tuple(f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6))
    + ("cifar-10-batches-py/test_batch",),
    "mnist": ("mnist.npz",),
}
JPEG_NOTE = ("CIFAR-10 pixels decoded from a JPEG copy (quality ~75, 4:2:0; PSNR ~30 dB against "
             "the lossless originals); labels exact. See shared/datasets/PROVENANCE.md.")


class DataError(ValueError):
    """A dataset cannot be loaded: says what is wrong and what is expected."""


@dataclass(frozen=True)
class Dataset:
    x_train: np.ndarray  # float32 in [0, 1], flattened
    y_train: np.ndarray  # int32
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    identity: dict


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --- formats ------------------------------------------------------------------------------------

def _read_idx(path: Path, magic: int) -> np.ndarray:
    """An IDX file (gzip): checks the magic number, dims and that the size matches the header."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: not a readable gzip file ({e})") from None
    if len(raw) < 8 or int.from_bytes(raw[:4], "big") != magic:
        found = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
        raise DataError(f"{path}: bad magic number {found}, expected {magic} (IDX format)")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        raise DataError(f"{path}: {len(raw)} bytes, expected {expected} for shape {dims} "
                        "(truncated or corrupt)")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


class _ArraysOnly(pickle.Unpickler):
    """Admits numpy array reconstruction only; any other global is refused."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
    }

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise DataError(f"refusing to load pickle global {module}.{name}: CIFAR-10 batches hold "
                        "only arrays, lists, bytes and ints")


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            batch = _ArraysOnly(f, encoding="bytes").load()
    except DataError as e:
        raise DataError(f"{path}: {e}") from None
    except Exception as e:  # noqa: BLE001 - any parse failure is a data error
        raise DataError(f"{path}: not a CIFAR-10 python batch ({type(e).__name__}: {e})") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataError(f"{path}: expected a dict with b'data' and b'labels'")
    x, y = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"])
    if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072 or y.shape != (x.shape[0],):
        raise DataError(f"{path}: data {x.dtype}{x.shape} / labels {y.shape}; expected uint8 "
                        "(N, 3072) and N labels")
    # CHW planes -> HWC, Keras's cifar10.load_data image layout, then flattened.
    x = x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).reshape(-1, 3072)
    return x, y


def _local_fashion_mnist(root: Path):
    f = [root / p for p in FILES["fashion_mnist"]]
    x_tr, y_tr = _read_idx(f[0], 2051), _read_idx(f[1], 2049)
    x_te, y_te = _read_idx(f[2], 2051), _read_idx(f[3], 2049)
    return x_tr.reshape(len(x_tr), -1), y_tr, x_te.reshape(len(x_te), -1), y_te


def _local_cifar10(root: Path):
    parts = [_read_cifar_batch(root / p) for p in FILES["cifar10"]]
    x_tr = np.concatenate([p[0] for p in parts[:5]])
    y_tr = np.concatenate([p[1] for p in parts[:5]])
    return x_tr, y_tr, parts[5][0], parts[5][1]


def _local_mnist(root: Path):
    path = root / "mnist.npz"
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = [z[k] for k in ("x_train", "y_train", "x_test", "y_test")]
    except (ValueError, KeyError, OSError) as e:
        raise DataError(f"{path}: not a Keras mnist.npz with uint8 arrays x_train, y_train, "
                        f"x_test, y_test ({e})") from None
    x_tr, y_tr, x_te, y_te = arrays
    return x_tr.reshape(len(x_tr), -1), y_tr, x_te.reshape(len(x_te), -1), y_te


_LOCAL = {"fashion_mnist": _local_fashion_mnist, "cifar10": _local_cifar10, "mnist": _local_mnist}


# --- sources -----------------------------------------------------------------------------------

def default_dirs() -> list[Path]:
    """Where local copies are looked for: $JAXMLP_DATA_DIR, then ~/.keras/datasets."""
    dirs = [Path(os.environ["JAXMLP_DATA_DIR"])] if os.environ.get("JAXMLP_DATA_DIR") else []
    return dirs + [Path.home() / ".keras" / "datasets"]


def _missing(name: str, root: Path) -> list[Path]:
    return [root / p for p in FILES[name] if not (root / p).is_file()]


def _load_local(name: str, root: Path):
    missing = _missing(name, root)
    if missing:
        raise DataError(f"{name}: missing {missing[0]}" +
                        (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "") +
                        f"\n{LAYOUT}")
    arrays = _LOCAL[name](root)
    files = {p: sha256_file(root / p) for p in FILES[name]}
    return arrays, {"source": "local", "path": str(root), "files": files}


def _load_tfds(name: str, data_dir):
    try:
        import tensorflow_datasets as tfds
    except Exception as e:  # noqa: BLE001 - tfds needs TensorFlow, which may be absent
        raise DataError(
            f"{name}: tensorflow-datasets unavailable ({type(e).__name__}: {e})") from None
    try:
        train, test = tfds.as_numpy(tfds.load(name, split=["train", "test"], batch_size=-1,
                                              as_supervised=True, data_dir=data_dir))
    except Exception as e:  # noqa: BLE001 - no network, no cache
        raise DataError(f"{name}: tfds.load failed ({type(e).__name__}: {e})") from None
    (x_tr, y_tr), (x_te, y_te) = train, test
    arrays = (x_tr.reshape(len(x_tr), -1), y_tr, x_te.reshape(len(x_te), -1), y_te)
    return arrays, {"source": "tfds", "path": None, "files": {}}


def _no_data(name: str, reason: str) -> DataError:
    return DataError(
        f"no {name} data: {reason}.\nPass --data-dir DIR (data_dir=DIR in Python) or set "
        f"JAXMLP_DATA_DIR to a local copy; tfds downloads need network.\n{LAYOUT}")


# --- splits and the public entry point ---------------------------------------------------------

def split_indices(n: int, validation_split: float, split: str, seed: int):
    """(train, val) indices. 'tail' is Keras's validation_split: the last fraction, unshuffled.

    Keras (trainers/data_adapters/data_adapter_utils.train_validation_split) splits at
    int(n * (1 - validation_split)).
    """
    if not 0.0 <= validation_split < 1.0:
        raise DataError(f"validation_split={validation_split!r}: allowed a number in [0, 1)")
    if split not in SPLITS:
        raise DataError(f"split={split!r}: allowed 'tail' or 'shuffled'")
    cut = int(n * (1.0 - validation_split))
    order = np.arange(n) if split == "tail" else np.random.default_rng(seed).permutation(n)
    return order[:cut], order[cut:]


def load(name: str, *, data_dir=None, source: str = "auto", validation_split: float = 0.1,
         split: str = "tail", split_seed: int = 0) -> Dataset:
    """Load `name` as float32 [0, 1] flattened features and int32 labels, split as Keras does."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}: allowed {', '.join(DATASETS)}")
    if source not in ("auto", "local", "tfds"):
        raise DataError(f"source={source!r}: allowed 'auto', 'local' or 'tfds'")
    split_indices(10, validation_split, split, split_seed)  # validate before any reading
    if source == "tfds":
        arrays, ident = _load_tfds(name, data_dir)
    elif data_dir is not None or source == "local":
        roots = [Path(data_dir)] if data_dir is not None else default_dirs()
        root = next((r for r in roots if not _missing(name, r)), roots[0])
        arrays, ident = _load_local(name, root)
    else:
        root = next((r for r in default_dirs() if not _missing(name, r)), None)
        if root is not None:
            arrays, ident = _load_local(name, root)
        else:
            try:
                arrays, ident = _load_tfds(name, None)
            except DataError as e:
                raise _no_data(name, f"no local copy in {', '.join(map(str, default_dirs()))} "
                               f"and {e}") from None
    return _finish(name, arrays, ident, validation_split, split, split_seed)


def _finish(name, arrays, ident, validation_split, split, split_seed) -> Dataset:
    x_tr, y_tr, x_te, y_te = arrays
    for x, y, part in ((x_tr, y_tr, "train"), (x_te, y_te, "test")):
        if len(x) != len(y):
            raise DataError(f"{name} {part}: {len(x)} images but {len(y)} labels")
    num_classes = 10
    for y in (y_tr, y_te):
        if y.size and (y.min() < 0 or y.max() >= num_classes):
            raise DataError(f"{name}: labels outside [0, {num_classes})")
    tr, va = split_indices(len(x_tr), validation_split, split, split_seed)
    def feats(x):
        return x.astype(np.float32) / np.float32(255)

    identity = {"name": name, **ident, "n_train": int(len(tr)), "n_val": int(len(va)),
                "n_test": int(len(x_te)), "validation_split": validation_split, "split": split,
                "split_seed": split_seed if split == "shuffled" else None,
                "note": JPEG_NOTE if name == "cifar10" and ident["source"] == "local" else ""}
    return Dataset(feats(x_tr[tr]), y_tr[tr].astype(np.int32), feats(x_tr[va]),
                   y_tr[va].astype(np.int32), feats(x_te), y_te.astype(np.int32), num_classes,
                   identity)
