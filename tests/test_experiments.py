"""The experiment commands end to end: listing, --quick, bad input, and kill -9 resume."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import conftest
import pytest
from test_failures import compile_cache  # noqa: F401  (one XLA cache for the module's runs)

ROOT = Path(__file__).resolve().parents[1]
TIMING = {"wall_time_s", "examples_per_s", "group_wall_time_s", "resumed"}


def cli(*args, cwd, timeout=1800, check=True):  # the timeout is a hang guard only
    print("running python -m", " ".join(args))
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, timeout=timeout,
                          capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def without_timing(doc: dict) -> dict:
    """results.json minus what depends on the clock (and so differs between two runs)."""
    runs = []
    for run in doc["runs"]:
        seeds = [{k: v for k, v in s.items() if k not in TIMING} for s in run["seeds"]]
        summary = {k: v for k, v in run["summary"].items() if k not in TIMING}
        runs.append({**run, "seeds": seeds, "summary": summary})
    return {**{k: v for k, v in doc.items() if k not in ("created", "settings", "command")},
            "runs": runs, "seeds": doc["settings"]["seeds"]}


def histories(out: Path) -> dict:
    rows = {}
    for path in sorted(out.glob("histories/*/*.csv")):
        with open(path) as f:
            rows[str(path.relative_to(out))] = [
                {k: v for k, v in r.items() if k != "epoch_time_s"} for r in csv.DictReader(f)]
    return rows


def test_ta8_list_shows_27_runs_with_keras_parameter_counts(tmp_path):
    out = cli("jaxmlp.experiments.ta8", "--list", cwd=tmp_path).stdout
    rows = {line.split()[0]: line for line in out.splitlines()[2:]}
    assert len(rows) == 27  # the seed's 26 and our 50-epoch control, cb_none
    # Keras count_params for these architectures (3072 inputs, 10 classes).
    assert rows["baseline"].split()[-2] == "99,722"
    assert rows["wide"].split()[-2] == "427,658"
    assert rows["combined"].split()[-2:] == ["830,282", "829,386"]
    assert rows["deep"].split()[-2] == "209,802"  # 3072*64+64 + 3*(64*64+64) + 64*10+10
    assert rows["pyramid"].split()[-2] == "828,490"  # the seed's table says 362,378
    # Every run's output layer is Keras's Dense default, even where hidden layers use he_normal.
    assert all(row.split()[-4] == "glorot_uniform" for row in rows.values())
    assert rows["cb_cosine"].split()[11] == "30"  # the seed's cosine budget
    # 5 seeds where the stop epoch or the plateau's cuts are compared with Keras, 10 where that
    # comparison was near the noise with fewer (cb_reduce_lr, lr_0.01), else 3.
    assert {n: r.split()[-3] for n, r in rows.items() if r.split()[-3] != "3"} == {
        "cb_early_stopping": "5", "cb_reduce_lr": "10", "cb_combined": "5", "lr_0.01": "10"}


def test_ta8_groups_on_the_cpu_split_runs_that_use_other_parts_and_vmapped_they_share():
    """docs/guide/gpu-and-devices.md: on the CPU, a run shares a program only with runs that
    use the same dropout layers and L2 term; vmapped, the four pyramid-shaped runs and the 28
    combined-shaped members share theirs."""
    from jaxmlp import runner
    from jaxmlp.experiments import cli, ta8

    exp = ta8.EXPERIMENT
    args = cli.parse(exp, [])
    items = cli.experiment_members(exp, args, cli.select(exp, args))

    def names(axis):
        return {tuple(sorted({m.run.name for m in g}))
                for g in runner.groups(items, "group", axis)}

    cpu, gpu = names("map"), names("vmap")
    assert (len(cpu), len(gpu)) == (18, 15)
    assert {("he_normal", "pyramid"), ("dropout",), ("l2",), ("batchnorm",)} <= cpu
    assert ("dropout", "he_normal", "l2", "pyramid") in gpu
    assert ("batch_64", "batchnorm", "combined", "lr_0.0001", "lr_0.001", "lr_0.01",
            "opt_adam") in gpu
    assert ("batch_64", "combined", "lr_0.0001", "lr_0.001", "lr_0.01", "opt_adam") in cpu


def test_p8d_list_shows_the_lr_composition_of_runs_with_schedule_and_plateau(tmp_path):
    out = cli("jaxmlp.experiments.p8d", "--list", cwd=tmp_path).stdout
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:]}
    assert rows["con_callbacks"][-5] == "keras"
    assert rows["con_callbacks_escalado"][-5] == "scale"
    assert rows["solo_cosine"][-5] == "-"
    assert {r[-3] for r in rows.values()} == {"5"}


def test_p8d_quick_writes_results_for_every_run_and_seed(tmp_path):
    cli("jaxmlp.experiments.p8d", "--quick", "--quiet", "--seeds", "2", "--out", "q",
        cwd=tmp_path)
    doc = json.loads((tmp_path / "q" / "results.json").read_text())
    assert [r["name"] for r in doc["runs"]] == [
        "sin_callbacks", "con_callbacks", "con_callbacks_escalado", "solo_early_stopping",
        "solo_reduce_lr", "solo_checkpoint", "solo_cosine"]
    for run in doc["runs"]:
        assert [s["seed"] for s in run["seeds"]] == [0, 1]
        for s in run["seeds"]:
            assert (tmp_path / "q" / s["history_csv"]).exists()
    assert doc["dataset"]["name"] == "synthetic"
    assert doc["environment"]["platform"] == "cpu"
    # where the time went: the data load, then the wait for the backend started beside it
    split = doc["settings"]["this_invocation"]["time_split_s"]
    assert list(split)[:2] == ["load", "backend"] and split["backend"] >= 0
    # and the process's CPU by kind of thread (Linux)
    cpu = doc["settings"]["this_invocation"].get("cpu_s")
    if Path("/proc/self/task").is_dir():
        assert cpu["main"] > 0 and cpu["io"] > 0 and cpu["process"] >= cpu["main"]


def test_the_backend_starts_in_its_own_thread_and_its_errors_reach_the_caller(monkeypatch):
    import threading

    import jax

    from jaxmlp.experiments import cli as experiment_cli

    seen = []
    monkeypatch.setattr(jax, "devices", lambda: seen.append(threading.current_thread().name)
                        or ["dev"])
    assert experiment_cli._start_backend().result() == ["dev"]
    assert seen[0].startswith("jaxmlp-backend") and seen[0] != threading.current_thread().name

    def broken():
        raise RuntimeError("no driver")
    monkeypatch.setattr(jax, "devices", broken)
    with pytest.raises(RuntimeError, match="no driver"):
        experiment_cli._start_backend().result()


# TA8 runs that differ in what the runner handles differently (activation, BatchNorm with
# dropout, an optimizer with another state, every callback at once); each is its own group.
TA8_KINDS = ("baseline", "gelu", "batchnorm", "opt_sgd_nesterov", "cb_combined")


def test_ta8_quick_trains_one_run_of_every_kind(tmp_path):
    cli("jaxmlp.experiments.ta8", "--quick", "--quiet", "--seeds", "1", "--out", "q",
        "--only", *TA8_KINDS, cwd=tmp_path)
    doc = json.loads((tmp_path / "q" / "results.json").read_text())
    assert [r["name"] for r in doc["runs"]] == list(TA8_KINDS)


def test_unknown_only_name_lists_the_valid_names(tmp_path):
    proc = cli("jaxmlp.experiments.ta8", "--only", "nope", "--quick", cwd=tmp_path,
               check=False)
    assert proc.returncode == 2
    assert "unknown run name(s) nope" in proc.stderr
    assert "baseline" in proc.stderr and "cb_combined" in proc.stderr


def test_data_dir_without_files_names_the_missing_file_and_layout(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = cli("jaxmlp.experiments.p8d", "--data-dir", "empty", "--out", "o", cwd=tmp_path,
               check=False)
    assert proc.returncode == 2
    assert "train-images-idx3-ubyte.gz" in proc.stderr
    assert "layout" in proc.stderr
    assert not (tmp_path / "o" / "results.json").exists()


def test_unwritable_out_fails_before_training(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    proc = cli("jaxmlp.experiments.p8d", "--quick", "--out", "file/results", cwd=tmp_path,
               check=False)
    assert proc.returncode == 2
    assert "cannot write results to file/results" in proc.stderr
    assert not (tmp_path / "runs").exists()



def test_rerun_with_a_changed_config_refuses_the_stale_results(tmp_path):
    args = ["jaxmlp.experiments.p8d", "--quick", "--quiet", "--only", "sin_callbacks",
            "--seeds", "1", "--out", "q"]
    cli(*args, "--epochs", "2", cwd=tmp_path)
    record = tmp_path / "q" / "members" / "sin_callbacks__seed0.json"
    before = record.read_text()
    assert json.loads(before)["epochs_run"] == 2
    cli(*args, "--epochs", "2", cwd=tmp_path)  # same config: finished, skipped, untouched
    assert record.read_text() == before
    proc = cli(*args, "--epochs", "3", cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert "different configuration of run 'sin_callbacks'" in proc.stderr
    assert "sin_callbacks__seed0.json" in proc.stderr and "--retrain" in proc.stderr
    assert record.read_text() == before
    cli(*args, "--epochs", "3", "--retrain", cwd=tmp_path)  # as the message says
    assert json.loads(record.read_text())["epochs_run"] == 3

def _wait_for_checkpoint(runs: Path, at_least: int, proc, timeout=1800) -> None:  # hang guard
    deadline = time.time() + timeout
    while time.time() < deadline:
        steps = [int(p.name) for p in runs.glob("checkpoints/*/latest/*") if p.name.isdigit()]
        if steps and max(steps) >= at_least:
            return
        if proc.poll() is not None:
            raise AssertionError("the run finished before it could be killed")
        time.sleep(0.05)
    raise AssertionError("no checkpoint appeared")


@conftest.runs_beside
def test_kill_9_twice_then_rerun_gives_the_uninterrupted_results(tmp_path):
    args = ["jaxmlp.experiments.p8d", "--quick", "--quiet", "--seeds", "2", "--epochs", "8",
            "--epochs-per-call", "1", "--checkpoint-every", "0",  # a checkpoint every epoch
            "--only", "sin_callbacks", "con_callbacks"]
    cli(*args, "--out", "straight", cwd=tmp_path)

    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    runs = tmp_path / "killed" / "runs"
    for step in (2, 5):
        print(f"killing the run after checkpoint {step}")
        proc = subprocess.Popen([sys.executable, "-m", *args, "--out", "killed"], cwd=tmp_path,
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for_checkpoint(runs, step, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not (tmp_path / "killed" / "results.json").exists()
    final = cli(*args, "--out", "killed", cwd=tmp_path)
    assert final.returncode == 0

    straight = json.loads((tmp_path / "straight" / "results.json").read_text())
    resumed = json.loads((tmp_path / "killed" / "results.json").read_text())
    assert any(s["resumed"] for r in resumed["runs"] for s in r["seeds"])
    assert without_timing(resumed) == without_timing(straight)
    assert histories(tmp_path / "killed") == histories(tmp_path / "straight")
