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



def test_a_bad_processes_count_is_one_line_before_any_announcement(tmp_path):
    proc = cli("jaxmlp.experiments.p8d", "--quick", "--processes", "99", cwd=tmp_path,
               check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: --processes 99: allowed 1 to ")
    assert proc.stderr.count("\n") == 1 and list(tmp_path.iterdir()) == []


def test_unreadable_checkpoints_give_their_error_line_alone(tmp_path):
    """Orbax's restore of a step it cannot read leaves reads running on a closed event loop;
    their echoes (hundreds of "Event loop is closed" tracebacks, a different number each run)
    are not printed: the one error line is the whole output."""
    args = ["jaxmlp.experiments.p8d", "--quick", "--quiet", "--only", "sin_callbacks", "--seeds",
            "2", "--epochs", "4", "--epochs-per-call", "1", "--checkpoint-every", "0",
            "--out", "q"]
    cli(*args, cwd=tmp_path)
    for record in (tmp_path / "q/members").glob("*.json"):
        record.unlink()
    steps = sorted((tmp_path / "q/runs/checkpoints").glob("*/latest/[0-9]*"))
    assert len(steps) == 2
    for manifest in steps[-1].glob("state/**/manifest.ocdbt"):  # garbage where an index was
        manifest.write_bytes(os.urandom(64))
    for chunk in steps[0].glob("state/**/d/*"):  # the arrays' data gone
        chunk.unlink()
    proc = cli(*args, cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: 2 latest checkpoint(s) in ") \
        and proc.stderr.count("\n") == 1, proc.stderr[:3000]


# `python -m jaxmlp.experiments.p8d ARGS`, interrupted (SIGINT, as Ctrl-C sends) right after
# the checkpoint of its first group's second chunk.
INTERRUPTED = """
import os, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
from jaxmlp import observers
from jaxmlp.experiments import cli, p8d
call = observers.GroupObserver.__call__
def observe(self, *a):
    call(self, *a)
    if self.calls == 2:
        self.ckpt.wait()
        os.kill(os.getpid(), signal.SIGINT)
observers.GroupObserver.__call__ = observe
sys.exit(cli.run(p8d.EXPERIMENT, sys.argv[1:]))
"""


def test_ctrl_c_is_one_line_and_exit_130_then_the_same_command_resumes(tmp_path):
    args = ["--quick", "--quiet", "--only", "sin_callbacks", "--seeds", "1", "--epochs", "6",
            "--epochs-per-call", "1", "--checkpoint-every", "0", "--out", "q"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", INTERRUPTED, *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=1800)  # a hang guard
    assert proc.returncode == 130
    assert proc.stderr == "[p8d] interrupted; rerun the same command to resume\n"
    assert not (tmp_path / "q/results.json").exists()
    cli("jaxmlp.experiments.p8d", *args, cwd=tmp_path)
    doc = json.loads((tmp_path / "q/results.json").read_text())
    assert [(s["resumed"], s["epochs_run"]) for s in doc["runs"][0]["seeds"]] == [(True, 6)]


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


# --- python -m jaxmlp run FILE | list ------------------------------------------------------------

OWN = """
from jaxmlp import config as C
from jaxmlp.experiments.cli import Experiment

TRAIN = C.TrainConfig(dataset="fashion_mnist", epochs=2, batch_size=128, validation_split=0.1)
EXPERIMENT = Experiment(name={name!r}, title="Mío", dataset="fashion_mnist", seeds=2, runs=(
    C.RunConfig(name="sin_dropout", train=TRAIN),
    C.RunConfig(name={second!r}, train=TRAIN, model=C.ModelConfig(dropout=0.3))))
"""


def test_an_own_experiment_records_the_command_that_runs_it(tmp_path):
    (tmp_path / "mi exp.py").write_text(OWN.format(name="mi_exp", second="con_dropout"))
    cli("jaxmlp", "run", "mi exp.py", "--quick", "--quiet", "--out", "q", cwd=tmp_path)
    doc = json.loads((tmp_path / "q/results.json").read_text())
    # Runnable as it stands, and what the page's "Reproducir" section shows.
    assert doc["command"] == "python -m jaxmlp run 'mi exp.py' --quick --quiet --out q"
    usage = cli("jaxmlp", "run", "mi exp.py", "--help", cwd=tmp_path).stdout
    assert usage.startswith("usage: python -m jaxmlp run 'mi exp.py' [-h]")


@pytest.mark.parametrize("file, text, says", [
    ("none.py", None, "none.py does not exist; allowed: a Python file that defines EXPERIMENT"),
    ("noexp.py", "x = 1\n", "noexp.py defines no module-level EXPERIMENT; allowed: EXPERIMENT = "
     "Experiment(...)"),
    ("notexp.py", "EXPERIMENT = 3\n", "notexp.py: its EXPERIMENT is not an Experiment (found "
     "int); allowed: EXPERIMENT = Experiment(...)"),
    ("syn.py", "x = 1\ny = (\n", "syn.py:2: SyntaxError: '(' was never closed"),
    ("name.py", "x = 1\ny = undefined\n", "name.py:2: NameError: name 'undefined' is not defined"),
    ("clash.py", OWN.format(name="p8d", second="b"), "clash.py: experiment name 'p8d' is taken "
     "by the built-in python -m jaxmlp.experiments.p8d; allowed: a name of its own"),
    ("bench.py", OWN.format(name="bench", second="b"), "bench.py: experiment name 'bench' is "
     "taken by experiments/bench, the benchmark records"),
    ("evil.py", OWN.format(name="../../evil", second="b"), "experiment name '../../evil': "
     "allowed 1 to 64 letters, digits, '_' and '-'"),
    ("dup.py", OWN.format(name="mi_exp", second="sin_dropout"), "mi_exp: duplicate run name "
     "sin_dropout; allowed: a name of its own for each run"),
])
def test_a_bad_experiment_file_is_one_error_line_exit_2(tmp_path, monkeypatch, capsys, file,
                                                        text, says):
    from jaxmlp import __main__ as entry

    monkeypatch.chdir(tmp_path)
    if text is not None:
        (tmp_path / file).write_text(text)
    before = sorted(tmp_path.iterdir())
    assert entry.main(["run", file, "--quick"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {says}") and err.count("\n") == 1, err
    assert sorted(tmp_path.iterdir()) == before


def test_the_entry_point_says_what_is_wrong_in_one_line(tmp_path, monkeypatch, capsys):
    from jaxmlp import __main__ as entry

    monkeypatch.chdir(tmp_path)
    assert entry.main(["bogus"]) == 2
    assert capsys.readouterr().err == ("error: unknown command 'bogus'; allowed: run, report, "
                                       "list (python -m jaxmlp --help)\n")
    assert entry.main(["list", "nowhere"]) == 2
    assert capsys.readouterr().err == ("error: nowhere does not exist; allowed: a folder of "
                                       "results folders (default experiments)\n")
    assert entry.main(["--help"]) == 0 and "python -m jaxmlp run" in capsys.readouterr().out


def test_list_gives_the_range_of_seeds_when_runs_train_different_numbers(tmp_path, monkeypatch,
                                                                         capsys):
    from jaxmlp import __main__ as entry

    def run(name, seeds):
        return {"name": name, "seeds": [{"seed": s} for s in range(seeds)],
                "summary": {"test_accuracy": {"mean": 0.5, "std": 0.01}}}
    for exp, runs in (("mixed", [run("a", 3), run("b", 10), run("c", 5)]), ("one", [run("a", 1)])):
        (tmp_path / exp).mkdir()
        (tmp_path / exp / "results.json").write_text(json.dumps({"experiment": exp, "runs": runs}))
    monkeypatch.chdir(tmp_path)
    assert entry.main(["list", "."]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:5] == ["mixed", "3", "runs", "x", "3-10"]
    assert lines[1].split()[:5] == ["one", "1", "run", "x", "1"] and " 1 seed " in lines[1]

