"""Built-in datasets: where their files are (Keras cache layouts), downloading them, tfds.

`load(name)` is the entry point: it finds a complete local copy (a `data_dir`, then
$JAXMLP_DATA_DIR, then Keras's cache: $KERAS_HOME/datasets or ~/.keras/datasets, each in Keras
2's or Keras 3's layout), downloads the official files when asked (`download=True`, the
experiments' `--download`), else tries tfds when TensorFlow is installed, and otherwise says
exactly how to get the data. The file formats and the validation split are `jaxmlp.data`'s.

Downloads are sha256-checked, written to `<file>.part` and renamed only once the hash matches
(atomic), resumed with an HTTP Range request when the server honours it (else restarted in a
separate file that replaces the `.part` only once whole and checked), and show a progress bar
on stderr. One process at a time downloads or extracts a given file (a lock file beside it);
the others wait and use its result. With `download=True`, a cached file whose sha256 is not the
official one is set aside (`<file>.bad`) and downloaded again, as Keras's get_file does.
$JAXMLP_DATA_MIRROR (or `mirror=`) replaces the host: the file name is appended to it.
"""

from __future__ import annotations

import contextlib
import http.client
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

try:
    import fcntl
except ImportError:  # not Linux/macOS: downloads into one cache are not locked
    fcntl = None

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

LAYOUT = """Accepted layout (the Keras cache, ~/.keras/datasets or $KERAS_HOME/datasets):
  DIR/fashion-mnist/train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
                    t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz
  DIR/cifar-10-batches-py/data_batch_1 .. data_batch_5, test_batch
      (or Keras 3's DIR/cifar-10-batches-py-target/cifar-10-batches-py/...)
  DIR/mnist.npz  (arrays x_train, y_train, x_test, y_test)"""


def default_dirs() -> list[Path]:
    """Where local copies are looked for when no data_dir is given: $JAXMLP_DATA_DIR (if set),
    then Keras's cache ($KERAS_HOME/datasets or ~/.keras/datasets, read even where it cannot be
    written), then the folder Keras downloads into when that one cannot be written
    (`keras_cache()`)."""
    env = os.environ.get(ENV_DIR)
    dirs = ([Path(env).expanduser()] if env else []) + [keras_cache(writable=False)]
    return dirs + [d for d in [keras_cache()] if d not in dirs]


def download_dir() -> Path:
    """Where a download goes when no data_dir is given: $JAXMLP_DATA_DIR, else Keras's cache
    as Keras picks it for writing (`keras_cache()`)."""
    env = os.environ.get(ENV_DIR)
    return Path(env).expanduser() if env else keras_cache()


def keras_cache(writable: bool = True) -> Path:
    """The folder Keras 3's load_data caches datasets in: $KERAS_HOME/datasets when KERAS_HOME
    is set, else ~/.keras/datasets; with `writable`, /tmp/.keras/datasets where that folder
    cannot be written (or the home folder is unknown: no $HOME and no passwd entry), as Keras
    falls back when it downloads."""
    fallback = Path("/tmp/.keras")
    try:
        if os.environ.get("KERAS_HOME"):
            base = Path(os.environ["KERAS_HOME"]).expanduser()
        else:
            home = Path.home()
            base = home / ".keras" if not writable or _can_write(home) else fallback
    except RuntimeError:  # "Could not determine home directory"
        base = fallback
    return (base if not writable or _can_write(base) else fallback) / "datasets"


def _can_write(folder: Path) -> bool:
    """Whether `folder`, or the nearest folder above it that exists (it would be created),
    can be written: os.access, as Keras checks."""
    for p in (folder, *folder.parents):
        if p.exists():
            return os.access(p, os.W_OK)
    return False


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
    if download and source == "auto":
        if found is None:
            dest = roots[0] if data_dir is not None else download_dir()
            fetch_official(name, dest, mirror=mirror, stream=stream)
            found = locate(name, [dest])
        elif unofficial(name, *found):  # damaged: set aside and downloaded again, as Keras does
            fetch_official(name, found[0], mirror=mirror, stream=stream)
    if found is not None:
        try:
            return data.load_local(name, found[0], found[1])
        except DataError as e:
            if ": cannot read (" in str(e):  # permissions, not the file's bytes
                raise
            raise DataError(f"{e}; {_remedy(name, *found, download)}") from None
    if source == "local" or data_dir is not None:
        raise no_data(name, _absent(name, roots), data_dir)
    try:  # what tfds already holds (~/tensorflow_datasets); it downloads only with `download`
        return load_tfds(name, download=download)
    except DataError as e:
        raise no_data(name, f"{_absent(name, roots)}; {e}", data_dir) from None


def unofficial(name: str, root: Path, prefix: str = "") -> list[Path]:
    """The files of `name` under `root` whose sha256 is known and differs from the official
    one (CIFAR-10's extracted batches have none: only its archive's is known)."""
    if prefix:
        return []
    return [root / r.dest for r in REMOTES[name] if r.dest in FILES[name]
            and (root / r.dest).is_file() and data.sha256_file(root / r.dest) != r.sha256]


def _remedy(name: str, root: Path, prefix: str, download: bool) -> str:
    """What to do about a local file that cannot be read."""
    bad = unofficial(name, root, prefix)
    if bad and not download:
        return (f"{bad[0]} is not the official file (its sha256 differs): delete it, or run "
                f"again with --download (download=True in Python) to set it aside and fetch it "
                "again")
    return ("delete that file and run again with --download (download=True in Python) to "
            "fetch the official files again")


def no_data(name: str, reason: str, data_dir=None) -> DataError:
    """The error that says exactly how to get the data."""
    dest = Path(data_dir).expanduser() if data_dir is not None else download_dir()
    mb = sum(r.size_mb for r in REMOTES[name])
    return DataError(
        f"no {name} data: {reason}.\nTo get it: add --download (download=True in Python) to "
        f"fetch the official files ({mb:.0f} MB, sha256-checked) into {dest}; or point "
        f"--data-dir DIR (data_dir=DIR in Python, or ${ENV_DIR}) at a folder that holds "
        f"them; or install the optional extra `pip install tensorflow tensorflow-datasets` "
        f"for tfds.\n{LAYOUT}")


# --- downloading -------------------------------------------------------------------------------

TIMEOUT = 30  # seconds without a byte (connecting or reading) before an attempt is given up
TRANSIENT = (408, 425, 429)  # HTTP errors worth retrying, besides 5xx


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
    """Download every official file of `name` into `root` (Keras cache layout), checked. A
    file already there with the right sha256 is kept; one with another is set aside."""
    if mirror:
        check_mirror(mirror, "mirror=")
    elif os.environ.get(ENV_MIRROR):
        check_mirror(os.environ[ENV_MIRROR], f"${ENV_MIRROR}=")
    if root.exists() and not root.is_dir():
        raise DataError(f"cannot download into {root}: it is a file, not a folder")
    mirror = mirror or os.environ.get(ENV_MIRROR) or None
    for remote in REMOTES[name]:
        url = remote.url if not mirror else mirror.rstrip("/") + "/" + remote.url.rsplit("/")[-1]
        fetch(url, root / remote.dest, remote.sha256, stream=stream)
    if name == "cifar10":
        extract_cifar(root / REMOTES[name][0].dest, root / CIFAR_EXTRACT, stream=stream)


def fetch(url: str, dest: Path, sha256: str, *, attempts: int = 3, stream=None) -> None:
    """Make `dest` the file at `url` whose sha256 is `sha256`.

    One process at a time per `dest` (a lock file beside it); a process that waited finds the
    file another one downloaded and uses it. A `dest` already there with the right hash is
    kept; one with another hash is moved to `dest.bad` (said on `stream`) and downloaded again.
    The download goes to `dest.part`, resumed with an HTTP Range request when possible, retried
    `attempts` times and renamed into place only when its hash matches; a file with the wrong
    hash is deleted and refused (DataError)."""
    dest, stream = Path(dest), stream or sys.stderr
    writable(dest.parent)  # before any request
    with _locked(dest, stream):
        if dest.is_file():
            found = data.sha256_file(dest)
            if found == sha256:
                return  # already whole, or downloaded meanwhile by the process we waited for
            bad = dest.with_name(dest.name + ".bad")
            os.replace(dest, bad)
            print(f"{dest}: not the official file (sha256 {found[:12]}..., expected "
                  f"{sha256[:12]}...); moved to {bad}, downloading it again", file=stream,
                  flush=True)
        _download(url, dest, sha256, attempts, stream)


def writable(folder: Path) -> None:
    """Creates `folder` if needed; a DataError naming it unless files can be written there."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        ok, why = os.access(folder, os.W_OK | os.X_OK), "not writable"
    except OSError as e:
        ok, why = False, e.strerror or type(e).__name__
    if not ok:
        raise DataError(f"cannot write into {folder} ({why}); allowed: a writable folder: "
                        f"choose another with --data-dir DIR (data_dir=DIR in Python) or "
                        f"${ENV_DIR}")


@contextlib.contextmanager
def _locked(path: Path, stream):
    """Holds an exclusive lock on `path.lock` (fcntl.flock; where there is no fcntl, or the
    file system refuses locks, nothing is locked). The lock file is removed on release; a
    process that waited on a removed one locks the new one instead."""
    lock = path.with_name(path.name + ".lock")
    while fcntl is not None:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise DataError(f"cannot create {lock} ({e.strerror}); allowed: a writable "
                            f"folder: choose another with --data-dir DIR or ${ENV_DIR}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                print(f"waiting for another process that is writing {path}", file=stream,
                      flush=True)
                fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # e.g. a network file system without locks
            os.close(fd)
            break
        except BaseException:
            os.close(fd)
            raise
        held = os.fstat(fd)
        try:
            now = os.stat(lock)
            current = (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)
        except FileNotFoundError:
            current = False
        if not current:  # released and removed by the process we waited for
            os.close(fd)
            continue
        try:
            yield
        finally:
            try:
                os.unlink(lock)  # while still held: a waiter sees it gone and retries
            except OSError:
                pass
            os.close(fd)
        return
    yield


def _download(url: str, dest: Path, sha256: str, attempts: int, stream) -> None:
    part = dest.with_name(dest.name + ".part")
    error = got = None
    for attempt in range(1, attempts + 1):
        try:
            got = _get(url, part, dest.name, stream)
            break
        except (OSError, http.client.HTTPException) as e:  # URLError and HTTPError included
            error = e
            if isinstance(e, urllib.error.HTTPError):
                e.close()
                if not (e.code >= 500 or e.code in TRANSIENT):
                    break  # not found, forbidden...: asking again gives the same answer
            if attempt < attempts:
                print(f"downloading {url}: {_why(e)}; retrying (attempt {attempt + 1} of "
                      f"{attempts})", file=stream, flush=True)
                time.sleep(0.2)
    if got is None:
        have = part.stat().st_size if part.exists() else 0
        if not have:
            part.unlink(missing_ok=True)  # an empty .part resumes nothing
        if isinstance(error, urllib.error.HTTPError) and not (
                error.code >= 500 or error.code in TRANSIENT):
            todo = (f"the server does not give this file: check that URL (and the mirror, "
                    f"--mirror or ${ENV_MIRROR}, if one is set)")
            kept = f"{have} bytes kept in {part}; {todo}" if have else f"nothing was kept; {todo}"
        else:
            kept = (f"{have} bytes kept in {part}: run the same command again to resume" if have
                    else "nothing was kept: run the same command again to retry")
        raise DataError(f"downloading {url} failed ({_why(error)}); {kept}") from None
    found = data.sha256_file(got)
    if found != sha256:
        got.unlink()
        if got == part:
            raise DataError(f"{url}: sha256 {found}, expected {sha256}; the file was deleted. "
                            f"Check the mirror (${ENV_MIRROR}) or try again later")
        have = part.stat().st_size if part.exists() else 0
        raise DataError(f"{url}: asked to resume, the server sent a whole file instead, whose "
                        f"sha256 is {found}, expected {sha256}; it was deleted and the {have} "
                        f"bytes in {part} kept. Check the mirror (${ENV_MIRROR}) or try again "
                        "later")
    os.replace(got, dest)
    if got != part:
        part.unlink(missing_ok=True)


def _why(e: BaseException) -> str:
    """What went wrong in an attempt, on one line."""
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTPError: HTTP {e.code} {e.reason}"
    reason = e.reason if isinstance(e, urllib.error.URLError) else e
    if isinstance(reason, TimeoutError):
        return f"no data for {TIMEOUT} s (TimeoutError)"
    what = {http.client.IncompleteRead: "the connection closed early",
            http.client.BadStatusLine: "not an HTTP answer"}
    label = next((v for k, v in what.items() if isinstance(e, k)), None)
    text = " ".join(str(reason).split())[:200] or "no details"
    return f"{label}: {type(e).__name__}: {text}" if label else f"{type(e).__name__}: {text}"


def _get(url: str, part: Path, name: str, stream) -> Path:
    """One HTTP request. With no `part`, the answer goes to `part`; with one, a 206 answer to
    the Range request from its size is appended to it, and a 200 answer (the whole file again)
    goes to `part.new`, which replaces nothing until its hash is checked. Returns the file
    holding the whole download. A web page (Content-Type: text/html) is refused (DataError)
    and `part` kept."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # asked past the end: the .part is whole (the hash decides)
            e.close()
            return part
        raise
    with response:
        if response.headers.get_content_type() == "text/html":
            kept = (f"the {have} bytes in {part} are kept" if have else "nothing was kept")
            raise DataError(f"{url}: the server sent a web page, not {name} (a Wi-Fi or proxy "
                            f"sign-in page?); {kept}. Sign in to the network (open any web "
                            f"page) or check the URL and the mirror (--mirror, ${ENV_MIRROR}), "
                            "then run the same command again")
        resumed = have and response.status == 206 and _range_start(response) == have
        length = _length(response)
        total = length + (have if resumed else 0) if length is not None else None
        out = part if resumed or not have else part.with_name(part.name + ".new")
        done = have if resumed else 0
        bar = _Bar(url, total, stream)
        try:
            try:
                f = open(out, "ab" if resumed else "wb")
            except OSError as e:
                raise _unwritable(out, e) from None
            with f:
                bar.update(done)
                while True:
                    try:
                        block, cut = response.read(1 << 16), None
                    except http.client.IncompleteRead as e:  # a chunked answer cut short
                        block, cut = e.partial, e
                    try:
                        f.write(block)
                    except OSError as e:
                        raise _unwritable(out, e) from None
                    done += len(block)
                    bar.update(done)
                    if cut is not None:
                        raise cut  # what came is kept for the next attempt to resume
                    if not block:
                        break
            if total is not None and done < total:
                raise ConnectionError(f"connection closed after {done} of {total} bytes")
        except BaseException:
            if out != part:  # a restart cut short: the .part stays as it was
                out.unlink(missing_ok=True)
            raise
        finally:
            bar.close(done)
    return out


def _unwritable(path: Path, e: OSError) -> DataError:
    return DataError(f"cannot write {path} ({e.strerror or e}); free some space, or choose "
                     f"another folder with --data-dir DIR (data_dir=DIR in Python) or "
                     f"${ENV_DIR}")


def _length(response) -> int | None:
    """The Content-Length, or None when there is none or it is not a number (unknown)."""
    text = (response.headers.get("Content-Length") or "").strip()
    return int(text) if text.isascii() and text.isdigit() else None


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


def extract_cifar(archive: Path, target: Path, *, stream=None) -> None:
    """Extract the CIFAR-10 archive's `cifar-10-batches-py/` into `target` (Keras 3's layout),
    via a temporary folder renamed into place; members outside it, links and devices refused.
    One process at a time (the archive's lock): one that waited finds the files extracted."""
    def whole() -> bool:
        return all((target / "cifar-10-batches-py" / Path(f).name).is_file()
                   for f in FILES["cifar10"])

    if whole():
        return
    with _locked(archive, stream or sys.stderr):
        if whole():
            return  # extracted by the process we waited for
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
