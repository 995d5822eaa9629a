"""Dataset files as NumPy arrays: the IDX, CIFAR-10 pickle and npz formats, Keras's validation
split, and the Dataset the trainer takes (finding and downloading files: `jaxmlp.datasets`)."""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import numbers
import os
import pickle
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATASETS = ("fashion_mnist", "cifar10", "mnist")
SOURCES = ("auto", "local", "tfds")
SPLITS = ("tail", "shuffled")
NUM_CLASSES = 10

FILES = {
    "fashion_mnist": tuple(f"fashion-mnist/{part}-ubyte.gz" for part in (
        "train-images-idx3", "train-labels-idx1", "t10k-images-idx3", "t10k-labels-idx1")),
    "cifar10": tuple(f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6))
    + ("cifar-10-batches-py/test_batch",),
    "mnist": ("mnist.npz",),
}
JPEG_NOTE = ("CIFAR-10 pixels decoded from a JPEG copy (quality ~75, 4:2:0; PSNR ~30 dB against "
             "the lossless originals); labels exact. See shared/datasets/PROVENANCE.md.")
# sha256 of data_batch_1 of that JPEG-decoded copy (as recorded in experiments/ta8/results.json):
# the note is attached only to results trained on it, not to the official batches.
JPEG_COPY_BATCH_1 = "753e1f734cb5eace504e47bbbde8da34f88f6192781db2db7f7fd3b690c79289"

IDX_IMAGES, IDX_LABELS = 2051, 2049  # magic numbers: 0x08 (uint8) then the number of dims
MNIST_IMAGE = (28, 28)
CIFAR_PIXELS = 3 * 32 * 32
DEFLATE_MAX_RATIO = 1032  # deflate expands at most ~1032:1, so a file bounds what it can hold


class DataError(ValueError):
    """A dataset cannot be loaded: says what is wrong and what is expected."""


@dataclass(frozen=True)
class Dataset:
    """Flattened float32 features in [0, 1] and int32 labels, plus where they came from. With
    `pixels`, the x arrays are the flattened uint8 pixels instead, a quarter of the bytes:
    `features(x)` (on the host) or `jaxmlp.epoch.device_data` (on the device) gives the very
    same float32 features."""

    x_train: np.ndarray  # (N, 784) or (N, 3072)
    y_train: np.ndarray  # int32
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    identity: dict  # JSON-serialisable: which files, which split (see `load`)
    pixels: bool = False  # x arrays: uint8 pixels, not yet float32 features


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --- file formats: bytes in, uint8 arrays out, every inconsistency a DataError ------------------

def parse_idx(path: Path, raw: bytes, magic: int, item_shape: tuple) -> np.ndarray:
    """A gzipped IDX file: checks magic number, item shape and that the size matches the header."""
    ndim = magic & 0xFF
    header_size = 4 + 4 * ndim
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as f:
            header = f.read(header_size)
            found = int.from_bytes(header[:4], "big") if len(header) >= 4 else None
            if found != magic:
                raise DataError(f"{path}: bad magic number {found}, expected {magic} "
                                f"(IDX {'images' if magic == IDX_IMAGES else 'labels'})")
            if len(header) < header_size:
                raise DataError(f"{path}: truncated IDX header ({len(header)} of {header_size} "
                                "bytes)")
            dims = struct.unpack(f">{ndim}I", header[4:])
            if dims[1:] != item_shape:
                raise DataError(f"{path}: IDX shape {dims}, expected (N, "
                                f"{', '.join(map(str, item_shape))})")
            size = math.prod(dims)
            body = f.read(min(size, DEFLATE_MAX_RATIO * len(raw)) + 1)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: not a readable gzip file, or truncated ({e})") from None
    if len(body) != size:
        raise DataError(f"{path}: {header_size + len(body)} bytes after decompression, expected "
                        f"{header_size + size} for shape {dims} "
                        f"({'truncated' if len(body) < size else 'trailing bytes'})")
    return np.frombuffer(body, np.uint8).reshape(dims)


class ArraysOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays, dicts, lists, bytes and ints; refuses every other global.

    Pickle calls whatever callable a file names; a CIFAR-10 batch names only numpy's array
    reconstruction, plus `_codecs.encode` where Python 3 wrote bytes at protocol 2 (then only
    text to latin-1 bytes is admitted).
    """

    ALLOWED = frozenset({
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
    })

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        if (module, name) == ("_codecs", "encode"):
            return _latin1_bytes
        raise DataError(f"refusing to load pickle global {module}.{name}: CIFAR-10 batches hold "
                        "only numpy arrays, lists, bytes and ints")


def _latin1_bytes(text, encoding="utf-8", *errors):
    """`_codecs.encode` as protocol-2 pickles use it for bytes: latin-1 text to bytes, no more."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or errors:
        raise DataError("refusing to load pickle global _codecs.encode other than for latin-1 "
                        "bytes")
    return text.encode("latin-1")


def parse_cifar_batch(path: Path, raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    """A CIFAR-10 python batch: (N, 3072) uint8 pixels flattened HWC, and N labels."""
    try:
        batch = ArraysOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except DataError as e:
        raise DataError(f"{path}: {e}") from None
    except Exception as e:  # a malformed pickle can fail in many ways; all are data errors
        raise DataError(f"{path}: not a CIFAR-10 python batch ({type(e).__name__}: {e})") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataError(f"{path}: expected a dict with keys b'data' and b'labels'")
    x = batch[b"data"]
    y = _integer_labels(path, batch[b"labels"])
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.shape[1:] != (CIFAR_PIXELS,) \
            or len(y) != len(x):
        found = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise DataError(f"{path}: data {found} with {len(y)} labels; expected uint8 "
                        f"(N, {CIFAR_PIXELS}) and N labels")
    return _chw_to_hwc(x), y


def _chw_to_hwc(x: np.ndarray) -> np.ndarray:
    """CIFAR rows are three 32x32 planes; Keras's cifar10.load_data gives HWC images, so flatten
    those: pixel (i, j) of channel c lands at index (i * 32 + j) * 3 + c."""
    return x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).reshape(-1, CIFAR_PIXELS)


def _integer_labels(path: Path, labels) -> np.ndarray:
    """Labels as a 1-D integer array, or a DataError."""
    try:
        y = np.asarray(labels)
    except ValueError as e:
        raise DataError(f"{path}: labels are not a flat list of integers ({e})") from None
    if y.ndim != 1 or (y.size and y.dtype.kind not in "iu"):
        raise DataError(f"{path}: labels {y.dtype} {y.shape}, expected a flat list of integers")
    return y


def parse_mnist_npz(path: Path, raw: bytes) -> tuple[np.ndarray, ...]:
    """Keras's mnist.npz: uint8 (N, 28, 28) images and integer labels; never unpickles."""
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            x_tr, y_tr, x_te, y_te = (z[k] for k in ("x_train", "y_train", "x_test", "y_test"))
    except Exception as e:  # not a zip, a missing key, or an object (pickled) array
        raise DataError(f"{path}: not a Keras mnist.npz with arrays x_train, y_train, x_test, "
                        f"y_test and no pickled objects ({type(e).__name__}: {e})") from None
    for x in (x_tr, x_te):
        if x.dtype != np.uint8 or x.shape[1:] != MNIST_IMAGE:
            raise DataError(f"{path}: images {x.dtype} {x.shape}, expected uint8 (N, 28, 28)")
    return x_tr, _integer_labels(path, y_tr), x_te, _integer_labels(path, y_te)


# --- local files -------------------------------------------------------------------------------

def _read_fashion_mnist(read) -> tuple[np.ndarray, ...]:
    x_tr = parse_idx(*read(FILES["fashion_mnist"][0]), IDX_IMAGES, MNIST_IMAGE)
    y_tr = parse_idx(*read(FILES["fashion_mnist"][1]), IDX_LABELS, ())
    x_te = parse_idx(*read(FILES["fashion_mnist"][2]), IDX_IMAGES, MNIST_IMAGE)
    y_te = parse_idx(*read(FILES["fashion_mnist"][3]), IDX_LABELS, ())
    return x_tr, y_tr, x_te, y_te


def _read_cifar10(read) -> tuple[np.ndarray, ...]:
    parts = [parse_cifar_batch(*read(rel)) for rel in FILES["cifar10"]]
    x_tr = np.concatenate([x for x, _ in parts[:5]])
    y_tr = np.concatenate([y for _, y in parts[:5]])
    return x_tr, y_tr, *parts[5]


def _read_mnist(read) -> tuple[np.ndarray, ...]:
    return parse_mnist_npz(*read(FILES["mnist"][0]))


READERS = {"fashion_mnist": _read_fashion_mnist, "cifar10": _read_cifar10, "mnist": _read_mnist}


def load_local(name: str, root: Path, prefix: str = "") -> tuple[tuple[np.ndarray, ...], dict]:
    """Arrays from the files under `root` (each FILES path after `prefix`, a Keras layout), and
    the sha256 of every file read (hashed from the same bytes that were parsed)."""
    hashes = {}

    def read(rel: str) -> tuple[Path, bytes]:
        path = root / (prefix + rel)
        try:
            raw = path.read_bytes()
        except OSError as e:
            raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
        hashes[rel] = hashlib.sha256(raw).hexdigest()
        return path, raw

    arrays = READERS[name](read)
    return arrays, {"source": "local", "path": str(root / prefix), "files": hashes}


# --- splits and the entry point ----------------------------------------------------------------

def check_split(validation_split: float, split: str, split_seed: int) -> None:
    """Raises DataError unless the split arguments are allowed."""
    if isinstance(validation_split, bool) or not isinstance(validation_split, numbers.Real) \
            or not 0.0 <= validation_split < 1.0:
        raise DataError(f"validation_split={validation_split!r}: allowed a number in [0, 1)")
    if split not in SPLITS:
        raise DataError(f"split={split!r}: allowed {', '.join(map(repr, SPLITS))}")
    if isinstance(split_seed, bool) or not isinstance(split_seed, numbers.Integral):
        raise DataError(f"split_seed={split_seed!r}: allowed an integer")


def split_indices(n: int, validation_split: float, split: str = "tail", seed: int = 0):
    """(train, val) index arrays over n training examples.

    'tail' is Keras's `fit(validation_split=...)`: the last fraction, taken before any shuffling.
    Keras 3 (trainers/data_adapters/array_slicing.py, train_validation_split) cuts at
    split_at = int(math.floor(n * (1.0 - validation_split))), float arithmetic included (so n=10,
    0.8 gives 1 train example, not 2), and refuses a split that leaves either part empty.
    'shuffled' picks the same sizes with a seeded permutation; both parts keep their original order.
    """
    check_split(validation_split, split, seed)
    if validation_split == 0:
        return np.arange(n), np.arange(0)
    cut = int(math.floor(n * (1.0 - validation_split)))
    if cut == 0 or cut == n:
        raise DataError(f"validation_split={validation_split} of {n} examples leaves an empty "
                        "training or validation set; allowed: a split that leaves both non-empty")
    if split == "tail":
        return np.arange(cut), np.arange(cut, n)
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[:cut]), np.sort(order[cut:])


def load(name: str, **kwargs) -> Dataset:
    """The built-in dataset `name`: `jaxmlp.datasets.load` (kept here for callers of this name)."""
    from jaxmlp import datasets  # the layer that finds and downloads files sits above this one

    return datasets.load(name, **kwargs)


def assemble(name, arrays, identity, validation_split, split, split_seed,
             pixels: bool = False) -> Dataset:
    """Checks counts and labels, splits off validation, flattens and scales to float32 [0, 1]
    (with `pixels`, leaves uint8 pixels as they are: `Dataset.pixels`)."""
    x_tr, y_tr, x_te, y_te = arrays
    x_tr, x_te = x_tr.reshape(len(x_tr), -1), x_te.reshape(len(x_te), -1)
    for x, y, part in ((x_tr, y_tr, "train"), (x_te, y_te, "test")):
        if len(x) != len(y):
            raise DataError(f"{name} {part}: {len(x)} images but {len(y)} labels")
        if y.size and (y.min() < 0 or y.max() >= NUM_CLASSES):
            raise DataError(f"{name} {part}: labels in [{y.min()}, {y.max()}], allowed "
                            f"0..{NUM_CLASSES - 1}")
    tr, va = split_indices(len(x_tr), validation_split, split, split_seed)
    identity = {
        "name": name, **identity, "n_train": len(tr), "n_val": len(va), "n_test": len(x_te),
        "validation_split": float(validation_split), "split": split,
        "split_seed": int(split_seed) if split == "shuffled" else None,
        "note": JPEG_NOTE if identity["files"].get(FILES["cifar10"][0]) == JPEG_COPY_BATCH_1
        else "",
    }
    pixels = pixels and x_tr.dtype == np.uint8 and x_te.dtype == np.uint8
    scale = (lambda x: x) if pixels else features
    return Dataset(scale(x_tr[tr]), y_tr[tr].astype(np.int32), scale(x_tr[va]),
                   y_tr[va].astype(np.int32), scale(x_te), y_te.astype(np.int32),
                   NUM_CLASSES, identity, pixels)


def features(x: np.ndarray) -> np.ndarray:
    """uint8 pixels to float32 in [0, 1], bit for bit what Keras users write,
    x.astype('float32') / 255, in one pass."""
    return np.divide(x, np.float32(255), dtype=np.float32)


# Every uint8 pixel's feature, computed by `features` itself: indexing this table with pixels
# gives features(pixels) bit for bit on any backend (no division left to a compiler). The
# experiments put uint8 pixels on the device and index it there: a quarter of the bytes to
# move, and no float32 copy of the training set on the host (on a fresh process, writing that
# copy's pages took most of CIFAR-10's load).
PIXEL_FEATURES = features(np.arange(256, dtype=np.uint8))
