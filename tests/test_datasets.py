"""jaxmlp.datasets: Keras cache layouts and the downloader, against a real local HTTP server.

The server (http.server in a thread, 127.0.0.1 only) serves bytes the tests write; no network.
"""

import hashlib
import http.server
import importlib.util
import io
import shutil
import tarfile
import threading
from pathlib import Path

import pytest
from test_data import write_cifar10, write_fashion_mnist, write_mnist

from jaxmlp import data, datasets


@pytest.fixture(autouse=True)
def no_real_data_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("JAXMLP_DATA_DIR", raising=False)
    monkeypatch.delenv("JAXMLP_DATA_MIRROR", raising=False)


class Server(http.server.ThreadingHTTPServer):
    """Serves `files` (name -> bytes); `ranges` says whether Range requests get a 206;
    `cut[name] = n` sends only n bytes of the next answer for that name, then hangs up."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.files, self.ranges, self.cut, self.log = {}, True, {}, []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        srv, name = self.server, self.path.lstrip("/")
        srv.log.append((name, self.headers.get("Range")))
        if name not in srv.files:
            self.send_error(404)
            return
        body, start = srv.files[name], 0
        rng = self.headers.get("Range")
        if rng and srv.ranges:
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        n = srv.cut.pop(name, None)
        self.wfile.write(body[start:] if n is None else body[start:start + n])
        if n is not None:
            self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = Server()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def sha(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def test_a_good_file_is_downloaded_checked_and_renamed_into_place(tmp_path, server):
    body = bytes(range(256)) * 1000
    server.files["f.bin"] = body
    err = io.StringIO()
    datasets.fetch(f"{server.url}/f.bin", tmp_path / "d" / "f.bin", sha(body), stream=err)
    assert (tmp_path / "d" / "f.bin").read_bytes() == body
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["f.bin"]  # no .part left
    assert "downloading" in err.getvalue() and "100%" in err.getvalue()  # the progress bar


def test_a_corrupted_file_is_refused_on_its_checksum_and_deleted(tmp_path, server):
    body = b"x" * 5000
    server.files["f.bin"] = body
    with pytest.raises(data.DataError, match="sha256 .*, expected 00+; the file was deleted"):
        datasets.fetch(f"{server.url}/f.bin", tmp_path / "f.bin", "0" * 64, stream=io.StringIO())
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_download_resumes_with_a_range_request(tmp_path, server):
    body = bytes(range(256)) * 400
    server.files["f.bin"], server.cut["f.bin"] = body, 30_000
    datasets.fetch(f"{server.url}/f.bin", tmp_path / "f.bin", sha(body), stream=io.StringIO())
    assert (tmp_path / "f.bin").read_bytes() == body
    assert server.log == [("f.bin", None), ("f.bin", "bytes=30000-")]


def test_a_server_without_ranges_restarts_the_file_instead(tmp_path, server):
    body = bytes(range(256)) * 400
    server.files["f.bin"], server.cut["f.bin"], server.ranges = body, 30_000, False
    datasets.fetch(f"{server.url}/f.bin", tmp_path / "f.bin", sha(body), stream=io.StringIO())
    assert (tmp_path / "f.bin").read_bytes() == body  # not the first 30,000 bytes twice
    assert server.log[1] == ("f.bin", "bytes=30000-")


def test_a_part_file_left_by_a_killed_process_is_resumed_by_the_next(tmp_path, server):
    body = bytes(range(256)) * 400
    server.files["f.bin"] = body
    (tmp_path / "f.bin.part").write_bytes(body[:12_345])
    datasets.fetch(f"{server.url}/f.bin", tmp_path / "f.bin", sha(body), stream=io.StringIO())
    assert (tmp_path / "f.bin").read_bytes() == body
    assert server.log == [("f.bin", "bytes=12345-")]


def test_a_download_that_keeps_failing_says_what_is_kept_and_how_to_resume(tmp_path, server):
    # Refused outright (404): no byte came, so no .part is kept and the message says so.
    with pytest.raises(data.DataError, match=r"failed \(HTTPError.*; nothing was kept: run the "
                       "same command again to retry$"):
        datasets.fetch(f"{server.url}/absent", tmp_path / "f", "0" * 64, stream=io.StringIO())
    assert list(tmp_path.iterdir()) == []
    # Cut after some bytes every time: they are kept in the .part for the next command.
    body = bytes(range(256)) * 400
    server.files["f.bin"] = body

    class EveryTime(dict):  # Server.cut for every answer: 1,000 bytes, then it hangs up
        def pop(self, name, default=None):
            return 1000
    server.cut = EveryTime()
    with pytest.raises(data.DataError, match=r"; 3000 bytes kept in .*f\.bin\.part: run the same "
                       "command again to resume"):
        datasets.fetch(f"{server.url}/f.bin", tmp_path / "f.bin", sha(body), stream=io.StringIO())
    assert (tmp_path / "f.bin.part").stat().st_size == 3000


@pytest.mark.parametrize("mirror", ["notaurl", "ftp://host/x", "http://", "/some/folder"])
def test_a_mirror_that_is_not_a_download_url_is_refused_before_anything_is_written(
        tmp_path, monkeypatch, mirror):
    with pytest.raises(data.DataError, match=r"^mirror='.*': not a download URL; allowed: "
                       "an http://, https:// or file:// URL"):
        datasets.load("mnist", data_dir=tmp_path / "d", download=True, mirror=mirror)
    monkeypatch.setenv("JAXMLP_DATA_MIRROR", mirror)
    with pytest.raises(data.DataError, match=r"^\$JAXMLP_DATA_MIRROR='.*': not a download URL"):
        datasets.load("mnist", data_dir=tmp_path / "d", download=True)
    assert list(tmp_path.iterdir()) == []
    for good in ("http://127.0.0.1:8000/", "https://example.org/keras", "file:///srv/mirror"):
        datasets.check_mirror(good)


def test_a_mirror_without_download_is_refused_not_ignored(tmp_path, server):
    with pytest.raises(data.DataError, match="nothing is downloaded without download=True"):
        datasets.load("mnist", data_dir=tmp_path / "d", mirror=server.url)
    assert server.log == [] and not (tmp_path / "d").exists()


def test_a_data_dir_that_is_a_file_is_named_as_one(tmp_path):
    (tmp_path / "f").write_text("not a folder")
    with pytest.raises(data.DataError, match=f"{tmp_path / 'f'} is a file, not a folder"):
        datasets.load("fashion_mnist", data_dir=tmp_path / "f")
    with pytest.raises(data.DataError, match="cannot download into .*: it is a file"):
        datasets.load("fashion_mnist", data_dir=tmp_path / "f", download=True)


def test_a_valid_file_of_another_part_is_named_with_both_counts(tmp_path):
    """The train labels copied over the test labels: each file is a good IDX file, only their
    counts disagree; the message names the two files."""
    write_fashion_mnist(tmp_path)
    folder = tmp_path / "fashion-mnist"
    shutil.copy(folder / "train-labels-idx1-ubyte.gz", folder / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(data.DataError) as e:
        datasets.load("fashion_mnist", data_dir=tmp_path)
    n_train, n_test = (len(a) for a in (data.load_local("fashion_mnist", tmp_path)[0][0],
                                        data.load_local("fashion_mnist", tmp_path)[0][2]))
    assert str(e.value) == (
        f"fashion_mnist test: {folder / 't10k-images-idx3-ubyte.gz'} holds {n_test} images but "
        f"{folder / 't10k-labels-idx1-ubyte.gz'} holds {n_train} labels; allowed: as many labels "
        "as images (a file of another part in its place?)")


# --- the official files through a mirror, into the Keras cache layout ---------------------------

def serve_official(server, monkeypatch, name: str, files: dict) -> None:
    """Serve `files` (basename -> bytes) as the mirror of `name`, with their hashes official."""
    remotes = []
    for r in datasets.REMOTES[name]:
        base = r.url.rsplit("/")[-1]
        server.files[base] = files[base]
        remotes.append(datasets.Remote(r.url, sha(files[base]), r.dest, r.size_mb))
    monkeypatch.setitem(datasets.REMOTES, name, tuple(remotes))
    monkeypatch.setenv("JAXMLP_DATA_MIRROR", server.url + "/")


def test_download_fashion_mnist_through_a_mirror_then_load_it_offline(tmp_path, server,
                                                                      monkeypatch):
    write_fashion_mnist(tmp_path / "src")
    serve_official(server, monkeypatch, "fashion_mnist",
                   {p.name: p.read_bytes() for p in (tmp_path / "src/fashion-mnist").iterdir()})
    ds = datasets.load("fashion_mnist", data_dir=tmp_path / "cache", download=True,
                       stream=io.StringIO())
    expected = datasets.load("fashion_mnist", data_dir=tmp_path / "src")
    assert (ds.x_train == expected.x_train).all() and ds.identity["files"] == \
        expected.identity["files"]
    requests = len(server.log)
    datasets.load("fashion_mnist", data_dir=tmp_path / "cache", download=True)
    assert len(server.log) == requests  # present and whole: nothing downloaded again


def test_download_cifar10_extracts_into_keras_3s_layout(tmp_path, server, monkeypatch):
    write_cifar10(tmp_path / "src")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(tmp_path / "src/cifar-10-batches-py", arcname="cifar-10-batches-py")
    serve_official(server, monkeypatch, "cifar10", {"cifar-10-python.tar.gz": buf.getvalue()})
    cache = tmp_path / "home/.keras/datasets"  # the default root
    ds = datasets.load("cifar10", download=True, stream=io.StringIO())
    assert (cache / "cifar-10-batches-py-target/cifar-10-batches-py/test_batch").is_file()
    assert (cache / "cifar-10-batches-py-target_archive").is_file()  # kept, as Keras keeps it
    assert ds.identity["path"] == str(cache / "cifar-10-batches-py-target")
    assert ds.x_train.shape[1] == 3072 and len(ds.x_train) + len(ds.x_val) == 10


def test_a_malicious_archive_member_is_not_extracted(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in ("../evil", "cifar-10-batches-py/../../evil2", "elsewhere/x"):
            info = tarfile.TarInfo(name)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"!"))
    (tmp_path / "a.tgz").write_bytes(buf.getvalue())
    with pytest.raises(data.DataError, match="no cifar-10-batches-py/ files"):
        datasets.extract_cifar(tmp_path / "a.tgz", tmp_path / "out" / "target")
    assert [p.name for p in tmp_path.rglob("*evil*")] == []
    assert not (tmp_path / "out").exists()


def test_keras_3s_cifar_layout_is_found_in_the_keras_cache(tmp_path):
    cache = tmp_path / "home/.keras/datasets"
    write_cifar10(tmp_path / "src")
    shutil.copytree(tmp_path / "src", cache / "cifar-10-batches-py-target")
    ds = datasets.load("cifar10", source="local")
    assert ds.identity["path"] == str(cache / "cifar-10-batches-py-target")


def test_keras_caches_mnist_npz_at_the_root(tmp_path):
    write_mnist(tmp_path / "home/.keras/datasets")
    assert datasets.load("mnist").identity["source"] == "local"


def test_without_download_nothing_is_fetched_and_the_error_says_how(tmp_path, server,
                                                                    monkeypatch):
    monkeypatch.setenv("JAXMLP_DATA_MIRROR", server.url)
    with pytest.raises(data.DataError) as e:
        datasets.load("mnist", data_dir=tmp_path / "nothing")
    msg = str(e.value)
    assert "add --download" in msg and str(tmp_path / "nothing") in msg and "tfds" in msg
    assert "../shared" not in msg and "prepare" not in msg
    assert server.log == []


def test_the_tfds_fallback_downloads_only_with_download(tmp_path, monkeypatch):
    # Where TensorFlow is installed, a dataset found nowhere locally is asked of tfds; tfds.load
    # downloads by default, so the fallback passes download= through (a stand-in tfds records it).
    import sys
    import types
    calls = []

    def tfds_load(name, **kw):
        calls.append(kw["download"])
        raise RuntimeError("not prepared")

    monkeypatch.setitem(sys.modules, "tensorflow", types.ModuleType("tensorflow"))
    monkeypatch.setitem(sys.modules, "tensorflow_datasets",
                        types.SimpleNamespace(load=tfds_load, as_numpy=lambda t: t))
    with pytest.raises(data.DataError, match="not prepared"):
        datasets.load("mnist")  # HOME is an empty folder: no Keras cache
    assert calls == [False]


def test_the_official_hashes_are_the_ones_keras_checks():
    # Keras's source is read, not imported (importing it needs a backend).
    spec = importlib.util.find_spec("keras")
    if spec is None:
        pytest.skip("Keras is only in the bench extra")
    keras_src = Path(spec.origin).parent
    text = "".join(p.read_text() for p in keras_src.glob("src/datasets/*.py"))
    assert datasets.REMOTES["mnist"][0].sha256 in text
    assert datasets.REMOTES["cifar10"][0].sha256 in text
    assert datasets.REMOTES["cifar10"][0].url in text
