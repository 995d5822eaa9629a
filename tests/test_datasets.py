"""jaxmlp.datasets: Keras cache layouts and the downloader, against a real local HTTP server.

The server (http.server in a thread, 127.0.0.1 only) serves bytes the tests write; no network.
"""

import hashlib
import http.server
import importlib.util
import io
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest
from test_data import write_cifar10, write_fashion_mnist, write_mnist

from jaxmlp import data, datasets


@pytest.fixture(autouse=True)
def no_real_data_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("JAXMLP_DATA_DIR", raising=False)
    monkeypatch.delenv("JAXMLP_DATA_MIRROR", raising=False)
    monkeypatch.delenv("KERAS_HOME", raising=False)


class Server(http.server.ThreadingHTTPServer):
    """Serves `files` (name -> bytes); `ranges` says whether Range requests get a 206;
    `cut[name] = n` sends only n bytes of the next answer for that name, then hangs up;
    `mode[name]` makes its answers misbehave (see Handler.misbehave)."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.files, self.ranges, self.cut, self.log, self.mode = {}, True, {}, [], {}
        self.release = threading.Event()  # ends a "stall"

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
        if self.misbehave(srv.mode.get(name), srv.files[name]):
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

    def misbehave(self, mode, body: bytes) -> bool:
        """"garbage": not HTTP at all; "chunkdie": a chunked answer cut after 3 chunks (the
        next answer is whole); "badcl": `Content-Length: abc`; "html_range": a sign-in web page
        (200, text/html) for Range requests; "other_range": another file (200) for Range
        requests; "stall": headers, then silence until `release`; "slow": the body in 20
        pieces 0.1 s apart."""
        srv, rng = self.server, self.headers.get("Range")
        if mode == "garbage":
            self.wfile.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        elif mode == "chunkdie":
            srv.mode.pop(self.path.lstrip("/"))
            self.protocol_version = "HTTP/1.1"
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(3):
                chunk = body[i * 1000:(i + 1) * 1000]
                self.wfile.write(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        elif mode == "badcl" or (mode in ("html_range", "other_range") and rng):
            page = b"<html><body>Sign in to the hotel Wi-Fi</body></html>"
            out = {"badcl": body, "html_range": page, "other_range": b"y" * 700}[mode]
            self.send_response(200)
            self.send_header("Content-Type", "text/html" if mode == "html_range"
                             else "application/octet-stream")
            self.send_header("Content-Length", "abc" if mode == "badcl" else str(len(out)))
            self.end_headers()
            self.wfile.write(out)
        elif mode == "stall":
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.flush()
            srv.release.wait(30)
        elif mode == "slow":
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            step = -(-len(body) // 20)
            for i in range(0, len(body), step):
                self.wfile.write(body[i:i + step])
                self.wfile.flush()
                time.sleep(0.1)
        else:
            return False
        self.close_connection = True
        return True

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = Server()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.release.set()
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
    # Not retried, and the message points at the URL, not at running it again.
    with pytest.raises(data.DataError, match=r"failed \(HTTPError: HTTP 404 Not Found\); nothing "
                       "was kept; the server does not give this file: check that URL") as e:
        datasets.fetch(f"{server.url}/absent", tmp_path / "f", "0" * 64, stream=io.StringIO())
    assert "again" not in str(e.value) and server.log == [("absent", None)]
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


# --- several processes, damaged caches, misbehaving servers -----------------------------------

CHILD = """
import sys, time
from pathlib import Path
from jaxmlp import datasets
go, ready = Path(sys.argv[1]), Path(sys.argv[2])
ready.touch()
while not go.exists():
    time.sleep(0.01)
try:
    {call}
except datasets.DataError as e:
    sys.exit(f"DataError: {{e}}")
print("OK")
"""


def run_together(tmp_path, call: str, n: int = 2) -> list[subprocess.CompletedProcess]:
    """`call` in `n` Python processes started at the same instant (each waits for a go file)."""
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(call=call))
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, str(script), str(go), str(tmp_path / f"ready{i}")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(n)]
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"ready{i}").exists() for i in range(n)):
        assert time.monotonic() < deadline, "the children did not start"
        time.sleep(0.01)
    go.touch()
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


def test_two_processes_downloading_the_same_file_fetch_it_once(tmp_path, server):
    body = bytes(range(256)) * 2000
    server.files["f.bin"], server.mode["f.bin"] = body, "slow"  # ~2 s: they overlap
    dest = tmp_path / "cache" / "f.bin"
    results = run_together(tmp_path, f"datasets.fetch({server.url + '/f.bin'!r}, "
                           f"Path({str(dest)!r}), {sha(body)!r})")
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    assert dest.read_bytes() == body and server.log == [("f.bin", None)]
    assert any("waiting for another process that is writing" in r.stderr for r in results)
    assert [p.name for p in dest.parent.iterdir()] == ["f.bin"]  # no .part, no lock left


def test_two_processes_downloading_and_extracting_cifar10_both_load_it(tmp_path, server):
    write_cifar10(tmp_path / "src")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(tmp_path / "src/cifar-10-batches-py", arcname="cifar-10-batches-py")
    archive = buf.getvalue()
    server.files["cifar-10-python.tar.gz"] = archive
    cache = tmp_path / "cache"
    call = ("import dataclasses; datasets.REMOTES['cifar10'] = tuple(dataclasses.replace(r, "
            f"sha256={sha(archive)!r}) for r in datasets.REMOTES['cifar10']); "
            f"ds = datasets.load('cifar10', data_dir={str(cache)!r}, download=True, "
            f"mirror={server.url!r}); assert len(ds.x_train) + len(ds.x_val) == 10")
    results = run_together(tmp_path, call)
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    assert server.log == [("cifar-10-python.tar.gz", None)]
    assert sorted(p.name for p in cache.iterdir()) == ["cifar-10-batches-py-target",
                                                       "cifar-10-batches-py-target_archive"]


def test_a_damaged_cached_file_is_set_aside_and_fetched_again_with_download(tmp_path, server,
                                                                            monkeypatch):
    write_mnist(tmp_path / "src")
    good = (tmp_path / "src/mnist.npz").read_bytes()
    serve_official(server, monkeypatch, "mnist", {"mnist.npz": good})
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "mnist.npz").write_bytes(good[:len(good) // 2])  # truncated
    # Without download: the error names the file and says what to do; nothing is fetched.
    monkeypatch.delenv("JAXMLP_DATA_MIRROR")
    with pytest.raises(data.DataError) as e:
        datasets.load("mnist", data_dir=cache)
    assert str(e.value).count("\n") == 0 and str(e.value).endswith(
        f"{cache / 'mnist.npz'} is not the official file (its sha256 differs): delete it, or run "
        "again with --download (download=True in Python) to set it aside and fetch it again")
    assert server.log == []
    # With download: set aside, said on one line, downloaded again and loaded.
    err = io.StringIO()
    ds = datasets.load("mnist", data_dir=cache, download=True, mirror=server.url, stream=err)
    assert ds.identity["files"]["mnist.npz"] == sha(good) and server.log == [("mnist.npz", None)]
    assert f"{cache / 'mnist.npz'}: not the official file (sha256 " in err.getvalue()
    assert f"moved to {cache / 'mnist.npz.bad'}, downloading it again" in err.getvalue()
    assert (cache / "mnist.npz.bad").read_bytes() == good[:len(good) // 2]


def test_a_chunked_answer_cut_short_is_retried_and_resumed(tmp_path, server):
    body = bytes(range(256)) * 100
    server.files["f.bin"], server.mode["f.bin"] = body, "chunkdie"
    err = io.StringIO()
    datasets.fetch(f"{server.url}/f.bin", tmp_path / "f.bin", sha(body), stream=err)
    assert (tmp_path / "f.bin").read_bytes() == body
    assert server.log == [("f.bin", None), ("f.bin", "bytes=3000-")]
    assert "the connection closed early: IncompleteRead" in err.getvalue()


def test_an_answer_that_is_not_http_is_one_error_line(tmp_path, server):
    server.files["f.bin"], server.mode["f.bin"] = b"x", "garbage"
    with pytest.raises(data.DataError, match=r"^downloading .*/f\.bin failed \(not an HTTP "
                       r"answer: BadStatusLine: .*\); nothing was kept: run the same command "
                       "again to retry$"):
        datasets.fetch(f"{server.url}/f.bin", tmp_path / "f.bin", "0" * 64, stream=io.StringIO())
    assert len(server.log) == 3 and list(tmp_path.iterdir()) == []


def test_a_content_length_that_is_not_a_number_is_an_unknown_length(tmp_path, server):
    body = bytes(range(256)) * 100
    server.files["f.bin"], server.mode["f.bin"] = body, "badcl"
    datasets.fetch(f"{server.url}/f.bin", tmp_path / "f.bin", sha(body), stream=io.StringIO())
    assert (tmp_path / "f.bin").read_bytes() == body


def test_a_cache_that_cannot_be_written_is_refused_before_any_request(tmp_path, server,
                                                                      monkeypatch):
    serve_official(server, monkeypatch, "mnist", {"mnist.npz": b"npz"})
    (tmp_path / "f").write_text("a file where a folder should be")
    with pytest.raises(data.DataError, match=rf"^cannot write into {tmp_path / 'f' / 'sub'} "
                       r"\(.*\); allowed: a writable folder: choose another with --data-dir "
                       r"DIR \(data_dir=DIR in Python\) or \$JAXMLP_DATA_DIR$"):
        datasets.load("mnist", data_dir=tmp_path / "f" / "sub", download=True)
    if os.geteuid() != 0:  # root writes into read-only folders
        (tmp_path / "ro").mkdir(mode=0o555)
        with pytest.raises(data.DataError, match=rf"^cannot write into {tmp_path / 'ro'} "):
            datasets.load("mnist", data_dir=tmp_path / "ro", download=True)
    assert server.log == []


def test_a_web_page_answering_a_resume_keeps_the_part_file(tmp_path, server):
    body = bytes(range(256)) * 400
    server.files["f.bin"], server.mode["f.bin"] = body, "html_range"
    (tmp_path / "f.bin.part").write_bytes(body[:12_345])
    with pytest.raises(data.DataError, match=r"/f\.bin: the server sent a web page, not f\.bin "
                       r"\(a Wi-Fi or proxy sign-in page\?\); the 12345 bytes in .* are kept"):
        datasets.fetch(f"{server.url}/f.bin", tmp_path / "f.bin", sha(body), stream=io.StringIO())
    assert (tmp_path / "f.bin.part").read_bytes() == body[:12_345]
    assert server.log == [("f.bin", "bytes=12345-")]  # refused, not retried
    server.mode.clear()  # signed in: the same command resumes
    datasets.fetch(f"{server.url}/f.bin", tmp_path / "f.bin", sha(body), stream=io.StringIO())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_a_whole_other_file_answering_a_resume_does_not_replace_the_part_file(tmp_path, server):
    body = bytes(range(256)) * 400
    server.files["f.bin"], server.mode["f.bin"] = body, "other_range"
    (tmp_path / "f.bin.part").write_bytes(body[:12_345])
    with pytest.raises(data.DataError, match=r"asked to resume, the server sent a whole file "
                       r"instead, whose sha256 is .*; it was deleted and the 12345 bytes in "):
        datasets.fetch(f"{server.url}/f.bin", tmp_path / "f.bin", sha(body), stream=io.StringIO())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin.part"]
    assert (tmp_path / "f.bin.part").read_bytes() == body[:12_345]


def test_a_server_that_stalls_is_given_up_naming_the_file(tmp_path, server, monkeypatch):
    monkeypatch.setattr(datasets, "TIMEOUT", 0.3)
    server.files["f.bin"], server.mode["f.bin"] = b"x" * 1000, "stall"
    err = io.StringIO()
    with pytest.raises(data.DataError, match=r"^downloading .*/f\.bin failed \(no data for 0\.3 "
                       r"s \(TimeoutError\)\); nothing was kept: run the same command again"):
        datasets.fetch(f"{server.url}/f.bin", tmp_path / "f.bin", "0" * 64, stream=err)
    lines = err.getvalue().splitlines()
    assert lines[0].startswith(f"downloading {server.url}/f.bin  0.0/0.0 MB")  # at once
    assert f"downloading {server.url}/f.bin: no data for 0.3 s (TimeoutError); retrying " \
        "(attempt 2 of 3)" in lines
    assert datasets.TIMEOUT <= 60


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


def test_keras_home_is_where_keras_caches_when_set(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    write_mnist(tmp_path / "kh/datasets")
    write_mnist(tmp_path / "home/.keras/datasets")  # not Keras's cache while KERAS_HOME is set
    ds = datasets.load("mnist")
    assert ds.identity["path"] == str(tmp_path / "kh/datasets")
    monkeypatch.setenv("JAXMLP_DATA_DIR", str(tmp_path / "mine"))
    assert datasets.default_dirs() == [tmp_path / "mine", tmp_path / "kh/datasets"]
    with pytest.raises(data.DataError, match=f"into {tmp_path / 'mine'};"):  # downloads go first
        datasets.load("fashion_mnist")


def test_an_unknown_home_folder_is_not_needed_when_a_folder_is_given(tmp_path, monkeypatch):
    """HOME unset and no passwd entry (docker --user): Path.home() raises RuntimeError; Keras
    then caches in /tmp/.keras."""
    def no_home():
        raise RuntimeError("Could not determine home directory.")
    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    write_mnist(tmp_path / "d")
    assert datasets.load("mnist", data_dir=tmp_path / "d").identity["source"] == "local"
    monkeypatch.setenv("JAXMLP_DATA_DIR", str(tmp_path / "d"))
    assert datasets.load("mnist").identity["path"] == str(tmp_path / "d")
    assert datasets.default_dirs() == [tmp_path / "d", Path("/tmp/.keras/datasets")]


def test_a_keras_cache_that_cannot_be_written_is_still_read(tmp_path, monkeypatch):
    # Keras downloads into /tmp/.keras when ~/.keras cannot be written; the copies already in
    # ~/.keras are read all the same (jaxmlp looked only in /tmp/.keras for a while).
    write_mnist(tmp_path / "home/.keras/datasets")
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: False if str(p).startswith(
        str(tmp_path / "home")) and mode & os.W_OK else real(p, mode, **k))
    assert datasets.default_dirs() == [tmp_path / "home/.keras/datasets",
                                       Path("/tmp/.keras/datasets")]
    assert datasets.load("mnist").identity["path"] == str(tmp_path / "home/.keras/datasets")
    assert datasets.download_dir() == Path("/tmp/.keras/datasets")


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
