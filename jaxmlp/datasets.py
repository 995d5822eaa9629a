"""Built-in datasets: where their files are (Keras cache layouts), downloading them, tfds.

`load(name)` is the entry point: it finds a complete local copy (a `data_dir`, then
$JAXMLP_DATA_DIR, then ~/.keras/datasets, each in Keras 2's or Keras 3's layout), downloads the
official files when asked (`download=True`, the experiments' `--download`), else tries tfds
when TensorFlow is installed, and otherwise says exactly how to get the data. The file formats
and the validation split are `jaxmlp.data`'s.

Downloads are sha256-checked, written to `<file>.part` and renamed only once the hash matches
(atomic), resumed with an HTTP Range request when the server honours it (else restarted), and
show a progress bar on stderr. $JAXMLP_DATA_MIRROR (or `mirror=`) replaces the host: the file
name is appended to it.
"""

from __future__ import annotations

import os
import shutil
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jaxmlp import data
from jaxmlp.data import DATASETS, FILES, SOURCES, DataError

ENV_DIR, ENV_MIRROR = "JAXMLP_DATA_DIR", "JAXMLP_DATA_MIRROR"
GCS = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"


@dataclass(frozen=True)
class Remote:
    """One official file: its URL, its sha256 and where it lands under the cache root."""

    url: str
    sha256: str
    dest: str  # relative to the root
    size_mb: float


# Hashes: mnist.npz and the CIFAR-10 archive are the sha256s Keras 3 checks
# (keras/src/datasets/mnist.py, cifar10.py). Keras lists none for Fashion-MNIST; these are the
# sha256s of files whose md5s equal the official ones in zalandoresearch/fashion-mnist's README
# (train-images 8d4fb7e6..., train-labels 25c81989..., t10k-images bef4ecab..., t10k-labels
# bb300cfd...), i.e. of the official bytes.
REMOTES = {
    "fashion_mnist": tuple(Remote(GCS + f, h, f"fashion-mnist/{f}", mb) for f, h, mb in (
        ("train-images-idx3-ubyte.gz",
         "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84", 26.4),
        ("train-labels-idx1-ubyte.gz",
         "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845", 0.03),
        ("t10k-images-idx3-ubyte.gz",
         "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073", 4.4),
        ("t10k-labels-idx1-ubyte.gz",
         "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5", 0.01))),
    "mnist": (Remote(GCS + "mnist.npz",
                     "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1",
                     "mnist.npz", 11.5),),
    # Keras 3 keeps the archive as `<fname>_archive` and extracts it into `<fname>/`.
    "cifar10": (Remote("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                       "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
                       "cifar-10-batches-py-target_archive", 170.5),),
}
# Where a dataset's FILES may sit under a root: Keras 2's layout, then Keras 3's for CIFAR-10.
PREFIXES = {"fashion_mnist": ("",), "mnist": ("",),
            "cifar10": ("", "cifar-10-batches-py-target/")}
CIFAR_EXTRACT = "cifar-10-batches-py-target"

LAYOUT = """Accepted layout (the Keras cache, ~/.keras/datasets):
  DIR/fashion-mnist/train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
                    t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz
  DIR/cifar-10-batches-py/data_batch_1 .. data_batch_5, test_batch
      (or Keras 3's DIR/cifar-10-batches-py-target/cifar-10-batches-py/...)
  DIR/mnist.npz  (arrays x_train, y_train, x_test, y_test)"""


def default_dirs() -> list[Path]:
    """Where local copies are looked for when no data_dir is given: $JAXMLP_DATA_DIR (if set),
    then ~/.keras/datasets (where Keras's load_data caches them)."""
    env = os.environ.get(ENV_DIR)
    return ([Path(env).expanduser()] if env else []) + [Path.home() / ".keras" / "datasets"]


def locate(name: str, roots: list[Path]) -> tuple[Path, str] | None:
    """The first (root, prefix) holding every file of `name`, or None."""
    for root in roots:
        for prefix in PREFIXES[name]:
            if all((root / (prefix + rel)).is_file() for rel in FILES[name]):
                return root, prefix
    return None


def _absent(name: str, roots: list[Path]) -> str:
    """Says which file is missing in each of `roots` (in the first layout)."""
    out = []
    for root in roots:
        if root.exists() and not root.is_dir():
            out.append(f"{root} is a file, not a folder")
            continue
        missing = [root / rel for rel in FILES[name] if not (root / rel).is_file()]
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        out.append(f"missing {missing[0]}{more}")
    return "; ".join(out)


def load(name: str, *, data_dir: str | os.PathLike | None = None, source: str = "auto",
         download: bool = False, mirror: str | None = None, validation_split: float = 0.1,
         split: str = "tail", split_seed: int = 0, stream=None,
         pixels: bool = False) -> data.Dataset:
    """`name` as flattened float32 features in [0, 1] and int32 labels, split as Keras does
    (`pixels=True`: the uint8 pixels those features come from, `data.Dataset.pixels`).

    source='local' reads a local copy; 'tfds' uses tensorflow_datasets (TensorFlow needed);
    'auto' reads a local copy, else downloads it when `download` is set (into `data_dir`, or
    the first default folder), else tries tfds. The identity records the source, the sha256 of
    each file read, the sizes and the split.
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}: allowed {', '.join(DATASETS)}")
    if source not in SOURCES:
        raise DataError(f"source={source!r}: allowed {', '.join(map(repr, SOURCES))}")
    data.check_split(validation_split, split, split_seed)
    if mirror is not None and not download:  # it would be ignored without a word
        raise DataError(f"mirror={mirror!r} is where a download comes from, and nothing is "
                        "downloaded without download=True; allowed: both, or neither")
    arrays, identity = _fetch(name, data_dir, source, download, mirror, stream)
    _check_counts(name, arrays, identity)
    return data.assemble(name, arrays, identity, validation_split, split, split_seed, pixels)


# Which local files hold each part's (images, labels): a count that differs names them.
PARTS = {"fashion_mnist": {"train": FILES["fashion_mnist"][:2], "test": FILES["fashion_mnist"][2:]},
         "mnist": {"train": FILES["mnist"] * 2, "test": FILES["mnist"] * 2}}


def _check_counts(name: str, arrays, identity: dict) -> None:
    """Images and labels of each part in equal numbers, or a DataError naming the files (a
    valid file in the wrong place, e.g. the train labels copied over the test labels)."""
    if identity.get("source") != "local" or name not in PARTS:
        return  # CIFAR-10's batches are checked one by one as they are read
    x_tr, y_tr, x_te, y_te = arrays
    for (x, y), (part, (images, labels)) in zip(((x_tr, y_tr), (x_te, y_te)),
                                                 PARTS[name].items()):
        if len(x) == len(y):
            continue
        root = Path(identity["path"])
        where = (f"{root / images} holds {len(x)} images and {len(y)} labels" if images == labels
                 else f"{root / images} holds {len(x)} images but {root / labels} holds "
                 f"{len(y)} labels")
        raise DataError(f"{name} {part}: {where}; allowed: as many labels as images (a file "
                        "of another part in its place?)")


def _fetch(name, data_dir, source, download, mirror, stream):
    if source == "tfds":
        try:
            return load_tfds(name, data_dir)
        except DataError as e:
            raise no_data(name, str(e), data_dir) from None
    roots = [Path(data_dir).expanduser()] if data_dir is not None else default_dirs()
    found = locate(name, roots)
    if found is None and download and source == "auto":
        fetch_official(name, roots[0], mirror=mirror, stream=stream)
        found = locate(name, roots[:1])
    if found is not None:
        return data.load_local(name, found[0], found[1])
    if source == "local" or data_dir is not None:
        raise no_data(name, _absent(name, roots), data_dir)
    try:  # what tfds already holds (~/tensorflow_datasets); it downloads only with `download`
        return load_tfds(name, download=download)
    except DataError as e:
        raise no_data(name, f"{_absent(name, roots)}; {e}", data_dir) from None


def no_data(name: str, reason: str, data_dir=None) -> DataError:
    """The error that says exactly how to get the data."""
    dest = Path(data_dir).expanduser() if data_dir is not None else default_dirs()[0]
    mb = sum(r.size_mb for r in REMOTES[name])
    return DataError(
        f"no {name} data: {reason}.\nTo get it: add --download (download=True in Python) to "
        f"fetch the official files ({mb:.0f} MB, sha256-checked) into {dest}; or point "
        f"--data-dir DIR (data_dir=DIR in Python, or ${ENV_DIR}) at a folder that holds "
        f"them; or install the optional extra `pip install tensorflow tensorflow-datasets` "
        f"for tfds.\n{LAYOUT}")


# --- downloading -------------------------------------------------------------------------------

def check_mirror(url: str, what: str = "mirror") -> None:
    """A DataError unless `url` is an http://, https:// or file:// URL (`what` names where it
    came from, e.g. "--mirror")."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https", "file") or (parts.scheme != "file"
                                                          and not parts.netloc):
        sep = "" if what.endswith("=") else " "
        raise DataError(f"{what}{sep}{url!r}: not a download URL; allowed: an http://, "
                        "https:// or file:// URL, to which each file's name is appended")


def fetch_official(name: str, root: Path, *, mirror: str | None = None, stream=None) -> None:
    """Download every official file of `name` into `root` (Keras cache layout), checked."""
    if mirror:
        check_mirror(mirror, "mirror=")
    elif os.environ.get(ENV_MIRROR):
        check_mirror(os.environ[ENV_MIRROR], f"${ENV_MIRROR}=")
    if root.exists() and not root.is_dir():
        raise DataError(f"cannot download into {root}: it is a file, not a folder")
    mirror = mirror or os.environ.get(ENV_MIRROR) or None
    for remote in REMOTES[name]:
        url = remote.url if not mirror else mirror.rstrip("/") + "/" + remote.url.rsplit("/")[-1]
        dest = root / remote.dest
        if not (dest.is_file() and data.sha256_file(dest) == remote.sha256):
            fetch(url, dest, remote.sha256, stream=stream)
    if name == "cifar10":
        extract_cifar(root / REMOTES[name][0].dest, root / CIFAR_EXTRACT)


def fetch(url: str, dest: Path, sha256: str, *, attempts: int = 3, stream=None) -> None:
    """Download `url` to `dest` if its sha256 matches: via `dest.part`, resumed with an HTTP
    Range request when possible, retried `attempts` times, renamed into place only when whole.
    A file with the wrong hash is deleted and refused (DataError)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    error = None
    for _ in range(attempts):
        try:
            _get(url, part, stream or sys.stderr)
            error = None
            break
        except (OSError, urllib.error.URLError) as e:  # includes a dropped connection
            error = e
            time.sleep(0.2)
    if error is not None:
        have = part.stat().st_size if part.exists() else 0
        if not have:
            part.unlink(missing_ok=True)  # an empty .part resumes nothing
        kept = (f"{have} bytes kept in {part}: run the same command again to resume" if have
                else "nothing was kept: run the same command again to retry")
        raise DataError(f"downloading {url} failed ({type(error).__name__}: {error}); "
                        f"{kept}") from None
    found = data.sha256_file(part)
    if found != sha256:
        part.unlink()
        raise DataError(f"{url}: sha256 {found}, expected {sha256}; the file was deleted. "
                        f"Check the mirror (${ENV_MIRROR}) or try again later")
    os.replace(part, dest)


def _get(url: str, part: Path, stream) -> None:
    """One HTTP request, appending to `part` from its current size when the server answers a
    Range request with 206; a 200 answer restarts the file."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # asked past the end: the .part is whole (the hash decides)
            return
        raise
    with response:
        resumed = response.status == 206 and _range_start(response) == have
        total = response.headers.get("Content-Length")
        total = int(total) + (have if resumed else 0) if total else None
        done = have if resumed else 0
        bar = _Bar(url, total, stream)
        with open(part, "ab" if resumed else "wb") as f:
            while block := response.read(1 << 16):
                f.write(block)
                done += len(block)
                bar.update(done)
        bar.close(done)
    if total is not None and done < total:
        raise ConnectionError(f"connection closed after {done} of {total} bytes")


def _range_start(response) -> int | None:
    """The first byte of a `Content-Range: bytes a-b/n` answer."""
    text = response.headers.get("Content-Range", "")
    try:
        return int(text.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


class _Bar:
    """`downloading URL  12.3/26.4 MB  47%` on stderr: redrawn in place on a terminal, else a
    line every 5 s."""

    def __init__(self, url: str, total: int | None, stream):
        self.url, self.total, self.stream = url, total, stream
        self.tty = getattr(stream, "isatty", lambda: False)()
        self.last = 0.0

    def _text(self, done: int) -> str:
        size = f"{done / 1e6:.1f}" + (f"/{self.total / 1e6:.1f} MB" if self.total else " MB")
        pct = f"  {100 * done / self.total:3.0f}%" if self.total else ""
        return f"downloading {self.url}  {size}{pct}"

    def update(self, done: int) -> None:
        now = time.monotonic()
        if now - self.last >= (0.2 if self.tty else 5.0):
            self.last = now
            print(("\r" if self.tty else "") + self._text(done), end="" if self.tty else "\n",
                  file=self.stream, flush=True)

    def close(self, done: int) -> None:
        print(("\r" if self.tty else "") + self._text(done), file=self.stream, flush=True)


def extract_cifar(archive: Path, target: Path) -> None:
    """Extract the CIFAR-10 archive's `cifar-10-batches-py/` into `target` (Keras 3's layout),
    via a temporary folder renamed into place; members outside it, links and devices refused."""
    if all((target / "cifar-10-batches-py" / Path(f).name).is_file() for f in FILES["cifar10"]):
        return
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    with tarfile.open(archive, "r:gz") as tar:
        members = [m for m in tar.getmembers() if m.isfile()
                   and m.name.startswith("cifar-10-batches-py/") and ".." not in m.name]
        if not members:
            raise DataError(f"{archive}: no cifar-10-batches-py/ files in this archive")
        tar.extractall(tmp, members=members, filter="data")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)


# --- tfds --------------------------------------------------------------------------------------

def load_tfds(name: str, data_dir=None, *, download: bool = True
              ) -> tuple[tuple[np.ndarray, ...], dict]:
    """Arrays from tensorflow_datasets (the optional extra; it needs TensorFlow). `download`
    is tfds.load's: False reads only a dataset tfds has already prepared."""
    try:
        import tensorflow  # noqa: F401  (tfds.load needs it; say so before tfds fails obscurely)
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise DataError(f"tfds is not usable here (it needs TensorFlow: {type(e).__name__}: "
                        f"{e})") from None
    try:
        train, test = tfds.as_numpy(tfds.load(
            name, split=["train", "test"], batch_size=-1, as_supervised=True,
            data_dir=None if data_dir is None else str(data_dir), download=download))
    except Exception as e:  # no network, no cache, a bad download: tfds raises many kinds
        raise DataError(f"tfds.load({name!r}) failed ({type(e).__name__}: {e})") from None
    (x_tr, y_tr), (x_te, y_te) = train, test
    path = None if data_dir is None else str(data_dir)
    return (x_tr, y_tr, x_te, y_te), {"source": "tfds", "path": path, "files": {}}
