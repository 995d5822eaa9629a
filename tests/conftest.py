"""Shared test helpers: tiny learnable synthetic datasets and small run configs."""

import numpy as np
import pytest

from jaxmlp import config as C
from jaxmlp.epoch import Data


def tiny_data(n_train=200, n_val=40, n_test=40, dim=12, classes=4, seed=0) -> Data:
    """A learnable problem: labels are the argmax of a fixed random linear map of the inputs."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(dim, classes))
    n = n_train + n_val + n_test
    x = rng.uniform(size=(n, dim)).astype(np.float32)
    y = np.argmax((x - 0.5) @ w, axis=1).astype(np.int32)
    a, b = n_train, n_train + n_val
    return Data(x[:a], y[:a], x[a:b], y[a:b], x[b:], y[b:])


def tiny_run(name="tiny", *, hidden=(16, 8), epochs=4, batch_size=32, seed=0, lr=1e-2,
             optim="adam", hooks=None, dim=12, classes=4, **model) -> C.RunConfig:
    return C.RunConfig(
        name,
        model=C.ModelConfig(hidden=hidden, input_dim=dim, num_classes=classes, **model),
        optim=C.OptimConfig(optim, lr),
        train=C.TrainConfig("fashion_mnist", epochs=epochs, batch_size=batch_size, seed=seed),
        hooks=hooks or C.HooksConfig())


@pytest.fixture
def data():
    return tiny_data()


# --- Long subprocesses started as soon as the tests are collected -----------------------------
# A test that needs a long, self-contained subprocess (4 forced CPU devices, a pytest of its
# own) registers it at import with `background(key, argv, env)` and marks itself
# `@pytest.mark.background(key)`. After collection every selected one starts at once, so it
# runs on the second core while the other tests run on the first; the test then waits for it
# with `background_result(key)`. Nothing is timed; the 30-minute wait only guards a hang.
# Under pytest-xdist (the README's `-n auto`) the workers already spread the tests over the
# cores: nothing starts at collection (each worker would start every process, all at once),
# a background process starts when its test runs, and a `runs_beside` test is run in its
# worker like any other.

import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
XDIST_WORKER = "PYTEST_XDIST_WORKER" in os.environ  # set in pytest-xdist's workers
_SPECS: dict[str, tuple[list[str], dict]] = {}
_STARTED: dict[str, tuple[subprocess.Popen, object, object]] = {}


def background(key: str, argv: list[str], env: dict) -> None:
    _SPECS[key] = (argv, env)


def _start(key: str) -> None:
    if key in _STARTED:
        return
    argv, env = _SPECS[key]
    out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    _STARTED[key] = (subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=err,
                                      text=True), out, err)


def background_result(key: str) -> subprocess.CompletedProcess:
    """The finished subprocess `key` (started now if collection did not start it)."""
    _start(key)
    proc, out, err = _STARTED[key]
    code = proc.wait(timeout=1800)
    out.seek(0)
    err.seek(0)
    return subprocess.CompletedProcess(proc.args, code, out.read(), err.read())


def pytest_configure(config):
    config.addinivalue_line("markers", "background(key): needs the registered subprocess key")


@pytest.hookimpl(trylast=True)  # after -k/-m deselection: only the selected tests' processes
def pytest_collection_modifyitems(session, config, items):
    if XDIST_WORKER:  # the long ones first, so that the workers end together
        items.sort(key=lambda item: item.get_closest_marker("background") is None)
        return
    for item in items:
        for mark in item.iter_markers("background"):
            if mark.args[0] in _SPECS:  # registered where it can run
                _start(mark.args[0])


# --- One persistent XLA cache for the whole test run ---------------------------------------------
# Many tests build the same small programs again: the same tiny run in another test, in the other
# pytest-xdist worker, or in a subprocess (a CLI run, a 4-device pytest, a distributed process).
# Compiled once, they load from disk after that. One folder for the run: the first process to
# import this (pytest's controller) makes it and names it in the environment, which its
# workers and every subprocess inherit (JAX reads JAX_COMPILATION_CACHE_DIR when it is
# imported); only that process deletes it. JAX writes an entry in place, so processes sharing a
# folder must take its file lock, which JAX does only with a size limit set (its LRU cache,
# `filelock`, a dev dependency): 16 GiB, never reached by the tests' few hundred MB.
# The experiment CLI's subprocesses use it too ($JAXMLP_COMPILE_CACHE, instead of their runs
# folder's); an in-process `cli.run` keeps this one (JAX opens its cache once per process).
# Benchmarks that time compilation start their children without any of these
# (`jaxmlp.bench.without_compile_cache`).
import atexit  # noqa: E402
import shutil  # noqa: E402

import jax  # noqa: E402

_XLA_CACHE = os.environ.get("JAXMLP_TEST_XLA_CACHE")
if not _XLA_CACHE:
    _XLA_CACHE = tempfile.mkdtemp(prefix="jaxmlp-test-xla-")
    atexit.register(shutil.rmtree, _XLA_CACHE, ignore_errors=True)  # the maker only
# JAX's settings, in this process (JAX is imported already) and, as the variables JAX reads at
# import (the names upper-cased), for the workers and subprocesses.
for _name, _value in {"jax_compilation_cache_dir": _XLA_CACHE,
                      "jax_compilation_cache_max_size": 16 << 30,
                      "jax_persistent_cache_min_compile_time_secs": 0,
                      "jax_persistent_cache_min_entry_size_bytes": 0}.items():
    jax.config.update(_name, _value)
    os.environ[_name.upper()] = str(_value)
os.environ.update(JAXMLP_TEST_XLA_CACHE=_XLA_CACHE, JAXMLP_COMPILE_CACHE=_XLA_CACHE)


def pytest_sessionfinish(session, exitstatus):
    for proc, out, err in _STARTED.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        out.close()
        err.close()


IN_BACKGROUND = os.environ.get("JAXMLP_TEST_IN_BACKGROUND") == "1"


def runs_beside(fn):
    """Decorator: a long, self-contained test runs as its own pytest process, started when the
    tests are collected, beside the others; here it only waits for that process and reports
    its result. In that process (JAXMLP_TEST_IN_BACKGROUND=1) it is the test itself."""
    if IN_BACKGROUND:
        return fn
    node = f"{sys.modules[fn.__module__].__file__}::{fn.__name__}"
    if XDIST_WORKER:  # the test itself, marked only to be handed out first
        return pytest.mark.background(node)(fn)
    background(node, [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", node],
               {**os.environ, "JAXMLP_TEST_IN_BACKGROUND": "1"})

    def wait():
        proc = background_result(node)
        assert proc.returncode == 0 and "1 passed" in proc.stdout, \
            proc.stdout[-4000:] + proc.stderr[-2000:]

    wait.__name__, wait.__doc__ = fn.__name__, fn.__doc__
    return pytest.mark.background(node)(wait)


def four_devices_env() -> dict:
    return {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
            "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}


PYTHON = sys.executable
