"""Failure modes of the experiment command (docs/guide/failures.md), each with its guarantee.

A tiny experiment (two 4-unit runs, 2 epochs) on tiny Fashion-MNIST-format files runs
in-process through `cli.run`, so its programs compile once for the whole module.
"""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_run
from test_data import write_fashion_mnist

from jaxmlp import runner
from jaxmlp.experiments import cli

EPOCHS = 2
EXP = cli.Experiment(
    name="tiny", title="tiny", dataset="fashion_mnist", seeds=2,
    runs=tuple(tiny_run(n, hidden=(4,), epochs=EPOCHS, dim=784, classes=10, batch_size=8)
               for n in ("a", "b")))


@pytest.fixture(scope="module", autouse=True)
def compile_cache(tmp_path_factory):
    """One persistent XLA cache for the module: equal programs compile once."""
    old = os.environ.get("JAXMLP_COMPILE_CACHE")
    os.environ["JAXMLP_COMPILE_CACHE"] = str(tmp_path_factory.mktemp("jax-cache"))
    yield
    os.environ.pop("JAXMLP_COMPILE_CACHE") if old is None else \
        os.environ.__setitem__("JAXMLP_COMPILE_CACHE", old)


@pytest.fixture
def clone(tmp_path, monkeypatch):
    """A working folder with tiny data in `data/`, as the current directory."""
    write_fashion_mnist(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def run(*argv, exp=EXP, capsys=None) -> tuple[int, str]:
    code = cli.run(exp, ["--data-dir", "data", *argv])
    return code, capsys.readouterr().err if capsys else ""


def git(*args, cwd) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_text_edited_in_the_definition_reaches_results_json_without_training(clone, capsys):
    assert run(capsys=capsys)[0] == 0
    path = clone / "experiments/tiny/results.json"
    before = json.loads(path.read_text())
    runs = tuple(dataclasses.replace(r, label=f"Run {r.name}", part=2) for r in EXP.runs)
    edited = cli.Experiment(**{**EXP.__dict__, "title": "Otro título", "runs": runs,
                               "notes": ("una nota",), "objective": "Ver."})
    code, err = run(exp=edited, capsys=capsys)
    assert code == 0 and "nothing to train" in err and "are now the definition's" in err
    after = json.loads(path.read_text())
    assert after["title"] == "Otro título" and after["settings"]["notes"] == ["una nota"]
    assert after["page"]["objective"] == "Ver."
    assert [(r["label"], r["part"]) for r in after["runs"]] == [("Run a", 2), ("Run b", 2)]
    for key in ("created", "command", "environment"):  # the results' provenance is kept
        assert after[key] == before[key]
    assert [r["seeds"] for r in after["runs"]] == [r["seeds"] for r in before["runs"]]
    code, err = run(exp=edited, capsys=capsys)
    assert code == 0 and "are left as they are" in err
    assert json.loads(path.read_text()) == after


def test_epochs_equal_to_every_runs_own_are_the_definition_not_a_variant(clone, capsys):
    code, err = run("--epochs", str(EPOCHS), capsys=capsys)
    assert code == 0 and (clone / "experiments/tiny/results.json").exists()
    assert not (clone / "runs").exists() or not list((clone / "runs").glob("tiny-*"))


def test_a_site_regeneration_cut_short_is_finished_by_the_next_invocation(clone, capsys,
                                                                          monkeypatch):
    from jaxmlp import report

    (clone / "docs").mkdir()
    real = report.generate

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "generate", interrupted)
    code, err = run("--retrain", capsys=capsys)  # Ctrl-C right after results.json
    assert code == 130 and "rerun the same command without --retrain to resume" in err
    assert (clone / "experiments/tiny/results.json").exists()
    assert (clone / "experiments/tiny" / cli.REPORT_PENDING).exists()
    assert not (clone / "docs/experiments/tiny.md").exists()
    monkeypatch.setattr(report, "generate", real)
    code, err = run(capsys=capsys)  # trains nothing, finishes the site
    assert code == 0 and "nothing to train" in err and "regenerating the site" in err
    assert (clone / "docs/experiments/tiny.md").exists()
    assert not (clone / "experiments/tiny" / cli.REPORT_PENDING).exists()
    code, err = run(capsys=capsys)
    assert code == 0 and "regenerating" not in err


def test_the_main_job_twice_in_a_clone_leaves_git_status_clean(clone, capsys):
    print("training the tiny experiment, committing it, then running the same command again")
    (clone / ".gitignore").write_text("/runs/\n/data/\n/home/\n")
    assert run(capsys=capsys)[0] == 0
    # As if written by an older version of the code: the layout around the records differs.
    results = clone / "experiments/tiny/results.json"
    doc = json.loads(results.read_text())
    doc["runs"][0]["summary"]["a_field_of_the_past"] = 1
    results.write_text(json.dumps(doc))
    git("init", "-q", cwd=clone)
    git("add", ".", cwd=clone)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "results", cwd=clone)
    before = snapshot(clone / "experiments")
    # A fresh clone has no dataset (and maybe no internet): a no-op must not need one.
    shutil.rmtree(clone / "data")
    code, err = run(capsys=capsys)
    assert code == 0 and "nothing to train" in err and "loading" not in err
    assert git("status", "--porcelain", cwd=clone) == ""
    assert snapshot(clone / "experiments") == before  # provenance untouched, byte for byte


def test_a_variant_of_the_definition_never_writes_the_committed_results(clone, capsys):
    assert run("--epochs", "1", capsys=capsys)[0] == 0
    err = capsys.readouterr().err
    assert not (clone / "experiments").exists()
    doc = json.loads((clone / "runs/tiny-seeds2-epochs1/results.json").read_text())
    assert {s["epochs_run"] for r in doc["runs"] for s in r["seeds"]} == {1}
    code, err = run("--seeds", "1", "--out", "experiments/tiny", capsys=capsys)
    assert code == 2 and err.count("\n") == 1
    assert "--seeds 1 would overwrite experiments/tiny" in err
    assert not (clone / "experiments").exists()


def test_no_invocation_writes_into_another_experiments_results(clone, capsys):
    """--out inside the committed experiments/ (but the definition's own folder), or in a
    folder that holds another experiment's results.json, is refused; so are an empty path, the
    current folder and a file. One line each, exit 2, nothing written."""
    for folder in ("experiments/other", "kept/other"):
        (clone / folder).mkdir(parents=True)
        (clone / folder / "results.json").write_text(json.dumps({"experiment": "other"}))
    (clone / "afile").write_text("not a folder")
    before = snapshot(clone)
    committed = "inside experiments/, the committed results, where each experiment's folder " \
        "is written only by that experiment's own definition; allowed: a folder outside it"
    for argv, says in [
        (["--epochs", "1", "--out", "experiments/other"], f"--out experiments/other: {committed}"),
        (["--out", "experiments/other"], f"--out experiments/other: {committed}"),
        (["--out", "experiments/tiny/more"], f"--out experiments/tiny/more: {committed}"),
        (["--out", "experiments"], f"--out experiments: {committed}"),
        (["--epochs", "1", "--out", "kept/other"],
         "kept/other holds the results of experiment other"),
        (["--out", "kept/other/deeper"], "kept/other/deeper is inside "),
        (["--out", ""], "--out '': empty; allowed: a folder for the results"),
        (["--out", "."], "--out .: is the current folder"),
        (["--out", ".."], "--out ..: holds the current folder"),
        (["--out", "afile"], "--out afile: is a file, not a folder"),
        (["--quick", "--out", "experiments/tiny"],  # --quick's 1 seed is not a --seeds flag
         "--quick would overwrite experiments/tiny, which only the experiment's own definition "
         "writes"),
    ]:
        code, err = run(*argv, capsys=capsys)
        assert code == 2 and err.startswith("error: " + says) and err.count("\n") == 1, argv
    assert snapshot(clone) == before


@pytest.mark.parametrize("argv, says", [
    (["--seeds", "x"], "argument --seeds: invalid int value: 'x'"),
    (["--engine", "fast"], "argument --engine: invalid choice: 'fast' (choose from 'group', "
     "'solo')"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
def test_a_flag_argparse_refuses_is_one_error_line_too(clone, capsys, argv, says):
    with pytest.raises(SystemExit) as e:
        run(*argv, capsys=capsys)
    assert e.value.code == 2 and capsys.readouterr().err == (
        f"error: {says} (python -m jaxmlp.experiments.tiny --help lists the flags)\n")
    assert sorted(p.name for p in clone.iterdir()) == ["data"]


@pytest.mark.parametrize("name", ["../../evil", "a/b", "..", "", "-x", "x" * 65, "é"])
def test_an_experiment_name_that_cannot_name_its_folders_is_refused(clone, capsys, name):
    exp = cli.Experiment(**{**EXP.__dict__, "name": name})
    code, err = run(exp=exp, capsys=capsys)
    assert code == 2 and err == (
        f"error: experiment name {name!r}: allowed 1 to 64 letters, digits, '_' and '-', starting "
        "with a letter or digit (it names the folders experiments/<name> and runs/<name>)\n")
    assert sorted(p.name for p in clone.iterdir()) == ["data"]


def test_duplicate_run_names_are_refused_before_anything_is_written(clone, capsys):
    twice = cli.Experiment(**{**EXP.__dict__, "runs": EXP.runs + EXP.runs[:1]})
    code, err = run(exp=twice, capsys=capsys)
    assert code == 2 and err == ("error: tiny: duplicate run name a; allowed: a name of its own "
                                 "for each run (it names the run's records and files)\n")
    dots = cli.Experiment(**{**EXP.__dict__, "runs": (EXP.runs[0], tiny_run(".."))})
    code, err = run(exp=dots, capsys=capsys)
    assert code == 2 and err.startswith("error: tiny: run name '..': allowed")
    # A name too long for its files (it failed after training, with a traceback), no runs at
    # all, an Experiment.dataset its runs do not use (it was never read).
    for bad, message in [
            ({"runs": (tiny_run("r" * 65),)}, "has 65 characters; allowed at most 64"),
            ({"runs": ()}, "runs=() is empty"),
            ({"dataset": "cifar10"}, "Experiment(dataset='cifar10') but its runs train on "
                                     "'fashion_mnist'")]:
        code, err = run(exp=cli.Experiment(**{**EXP.__dict__, **bad}), capsys=capsys)
        assert code == 2 and err.startswith("error: tiny: ") and message in err, err
        assert err.count("\n") == 1
    assert sorted(p.name for p in clone.iterdir()) == ["data"]


@pytest.mark.parametrize("case", ["no such folder", "a file", "a truncated file"])
def test_a_start_that_fails_on_its_data_makes_no_folder(clone, capsys, case):
    """The output folders and the lock come after the data has passed its checks."""
    argv = {"no such folder": ["--data-dir", "nowhere"], "a file": ["--data-dir", "afile"],
            "a truncated file": []}[case]
    (clone / "afile").write_text("not a folder")
    labels = clone / "data/fashion-mnist/t10k-labels-idx1-ubyte.gz"
    if case == "a truncated file":
        labels.write_bytes(labels.read_bytes()[:20])
    for out in ([], ["--out", "o"]):
        code, err = run(*argv, *out, capsys=capsys)
        assert code == 2 and len([ln for ln in err.splitlines() if ln.startswith("error:")]) == 1
        assert sorted(p.name for p in clone.iterdir()) == ["afile", "data"]
    if case == "a file":
        assert err == "error: --data-dir afile: is a file, not a folder; allowed: a folder in " \
            "the Keras cache layout\n"


def test_a_checkpoint_restored_from_an_older_step_is_one_warning_line(clone, capsys):
    assert run("--out", "o", "--checkpoint-every", "0", capsys=capsys)[0] == 0
    for p in (clone / "o/members").glob("*.json"):
        p.unlink()
    for latest in (clone / "o/runs/checkpoints").glob("*/latest"):
        steps = sorted((s for s in latest.iterdir() if s.name.isdigit()), key=lambda s: int(s.name))
        assert len(steps) == 2
        for f in (steps[-1] / "state").rglob("*"):  # the newest step unreadable
            if f.is_file():
                f.write_bytes(b"")
    code, err = run("--out", "o", "--checkpoint-every", "0", capsys=capsys)
    assert code == 0
    warned = [ln for ln in err.splitlines() if "arning" in ln]
    assert warned and all(ln.startswith("[tiny] warning: latest checkpoint(s) in ") and
                          "cannot be restored, restored epoch 1 instead" in ln for ln in warned)
    assert "resumed after 1 chunks" in err and "runner.py" not in err


def test_a_derived_output_is_announced_in_one_line(clone, capsys):
    code, err = run("--only", "a", "--epochs", "1", capsys=capsys)
    assert code == 0
    lines = [ln for ln in err.splitlines() if "differs from the experiment's definition" in ln]
    assert lines == ["[tiny] --epochs 1 --only a differs from the experiment's definition: "
                     "results go to runs/tiny-seeds2-epochs1-only-a/ (experiments/tiny/ is "
                     "written only by the definition)"]


def test_retrain_trains_again_where_deleting_records_resumes(clone, capsys):
    assert run(capsys=capsys)[0] == 0
    members = clone / "experiments/tiny/members"
    for p in members.glob("*.json"):
        p.unlink()
    assert run(capsys=capsys)[0] == 0  # records gone, checkpoints kept: resumed, not retrained
    assert all(json.loads(p.read_text())["resumed"] for p in members.glob("*.json"))
    code, err = run("--retrain", capsys=capsys)
    assert code == 0 and "--retrain: discarded" in err
    records = [json.loads(p.read_text()) for p in sorted(members.glob("*.json"))]
    assert len(records) == 4 and not any(r["resumed"] for r in records)
    assert all(r["epochs_run"] == EPOCHS for r in records)


def test_retrain_with_names_trains_only_those_runs_in_place(clone, capsys):
    assert run(capsys=capsys)[0] == 0
    members = clone / "experiments/tiny/members"
    before = {p.name: p.read_bytes() for p in members.glob("*.json")}
    code, err = run("--retrain", "a", capsys=capsys)
    assert code == 0 and "--retrain: discarded the checkpoints and records of 2 member(s)" in err
    after = {p.name: p.read_bytes() for p in members.glob("*.json")}
    assert after.keys() == before.keys() and len(after) == 4
    assert {n for n in after if after[n] != before[n]} == {"a__seed0.json", "a__seed1.json"}
    for name in ("a__seed0.json", "a__seed1.json"):  # trained again, as a group of their own
        old, new = json.loads(before[name]), json.loads(after[name])
        assert not new["resumed"] and new["epochs_run"] == EPOCHS
        assert new["test"]["accuracy"] == pytest.approx(old["test"]["accuracy"], abs=1e-5)
    doc = json.loads((clone / "experiments/tiny/results.json").read_text())
    assert sorted(len(r["seeds"]) for r in doc["runs"]) == [2, 2]  # the main job's results
    code, err = run("--retrain", "nope", capsys=capsys)
    assert code == 2 and err.count("\n") == 1 and "unknown run name(s) nope" in err


def test_a_corrupt_member_record_is_set_aside_named_and_retrained(clone, capsys):
    assert run(capsys=capsys)[0] == 0
    record = clone / "experiments/tiny/members/a__seed1.json"
    record.write_text('{"seed": 1, "epochs_')
    code, err = run(capsys=capsys)
    assert code == 0
    assert f"{Path('experiments/tiny/members/a__seed1.json')}: unreadable member record" in err
    assert (clone / "experiments/tiny/members/unreadable/a__seed1.json").read_text() \
        .startswith('{"seed": 1')
    assert json.loads(record.read_text())["epochs_run"] == EPOCHS


@pytest.mark.parametrize("argv, says", [
    (["--epochs", "99999999999"], "--epochs 99999999999: allowed an integer from 1 to 100,000"),
    (["--seeds", "99999999999"], "--seeds 99999999999: allowed an integer from 1 to 1,000"),
    (["--seeds", "0"], "--seeds 0: allowed an integer from 1 to 1,000"),
    (["--epochs-per-call", "0"], "--epochs-per-call 0: allowed an integer from 1 to 1,000"),
    (["--unroll", "0"], "--unroll 0: allowed an integer from 1 to 64"),
    (["--compile-threads", "0"], "--compile-threads 0: allowed an integer from 1 to 256"),
    (["--checkpoint-every", "-1"], "--checkpoint-every -1.0: allowed seconds from 0 to 86,400"),
    (["--checkpoint-every", "nan"], "--checkpoint-every nan: allowed seconds from 0 to 86,400"),
    (["--out", os.fsdecode(b"out-\xff")], r"--out 'out-\udcff': not valid UTF-8"),
    (["--mirror", "http://127.0.0.1:9/"], "--mirror http://127.0.0.1:9/: nothing is downloaded "
     "without --download, so the mirror would be ignored; allowed: --mirror with --download"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(clone, capsys, argv, says):
    code, err = run(*argv, capsys=capsys)
    assert code == 2
    assert err == f"error: {says}; allowed: a UTF-8 path or URL\n" if "UTF-8" in says \
        else err == f"error: {says}\n"
    assert sorted(p.name for p in clone.iterdir()) == ["data"]


def test_every_latest_checkpoint_unreadable_is_one_line_then_retrain_recovers(clone, capsys):
    assert run("--out", "o", capsys=capsys)[0] == 0
    for p in (clone / "o/members").glob("*.json"):
        p.unlink()
    steps = list((clone / "o/runs/checkpoints").glob("*/latest/*/state"))
    assert steps
    for state in steps:  # every file of every step truncated to nothing
        for f in state.rglob("*"):
            if f.is_file():
                f.write_bytes(b"")
    code, err = run("--out", "o", capsys=capsys)
    assert code == 2
    error = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(error) == 1 and "none can be restored" in error[0] and "--retrain" in error[0]
    assert not list((clone / "o").rglob("*.orbax-checkpoint-tmp"))
    assert not (clone / "o/members").exists() or not list((clone / "o/members").glob("*.json"))
    assert run("--out", "o", "--retrain", capsys=capsys)[0] == 0


def test_labels_and_input_dim_are_checked_before_training():
    run_ = tiny_run("r", dim=3, classes=4)
    x = np.zeros((5, 3), np.float32)
    runner.check_data([run_], x, {"train": np.array([0, 3])}, 4)  # fine
    with pytest.raises(ValueError, match=r"train labels: found 4 .*allowed integers in \[0, 4\)"):
        runner.check_data([run_], x, {"train": np.array([0, 4])}, 4)
    with pytest.raises(ValueError, match=r"found -1"):
        runner.check_data([run_], x, {"test": np.array([-1, 2])}, 4)
    with pytest.raises(ValueError, match="input_dim=3 but the data has 5 features"):
        runner.check_data([run_], np.zeros((5, 5)), {}, 4)


def test_divergence_rule_flags_nan_and_an_exploded_finite_loss():
    # 10 classes: the limit is 10 * ln(10) = 23.03; uniform guessing gives ln(10) = 2.30.
    assert runner.divergence(True, [2.3, float("nan")], 10) == "non-finite loss (NaN guard)"
    assert runner.divergence(False, [300.0, 330.0], 10).startswith(
        "training loss exploded to 330 (> 23 = 10 x ln 10)")
    assert runner.divergence(False, [2.3, 23.0], 10) is None
    assert runner.divergence(False, [2.3, 0.5], 10) is None


def test_adam_at_lr_1e3_is_flagged_diverged_in_results_and_console(clone, capsys):
    hot = tuple(tiny_run(n, hidden=(32,), epochs=3, dim=784, classes=10, batch_size=8, lr=1e3)
                for n in ("hot",))
    exp = cli.Experiment(name="hot", title="hot", dataset="fashion_mnist", seeds=1, runs=hot)
    code, err = run(exp=exp, capsys=capsys)
    assert code == 0
    rec = json.loads((clone / "experiments/hot/members/hot__seed0.json").read_text())
    assert rec["diverged"] and rec["diverged_reason"]
    assert "DIVERGED: hot seed 0" in err


def test_a_live_lock_refuses_with_the_holder_pid_and_a_stale_one_is_taken_over(clone, capsys):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        lock = clone / "runs/tiny/lock"
        lock.parent.mkdir(parents=True)
        lock.write_text(f"{holder.pid}\n")
        code, err = run(capsys=capsys)
        assert code == 3
        assert err == (f"error: {Path('runs/tiny')} is in use by process {holder.pid} (lock file "
                       f"{Path('runs/tiny/lock')}); wait for it to finish, or use another "
                       "--out\n")
        assert not [p for p in clone.rglob("experiments/**/*") if p.is_file()]
    finally:
        holder.kill()
        holder.wait()
    assert run(capsys=capsys)[0] == 0  # the holder is dead: its lock is taken over
    assert not lock.exists()  # and released at the end


def test_two_invocations_at_once_one_trains_the_other_is_refused(clone):
    print("starting two processes on the same output root")
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    cmd = [sys.executable, "-m", "jaxmlp.experiments.p8d", "--quick", "--only", "sin_callbacks",
           "--seeds", "1", "--out", "shared"]
    procs = [subprocess.Popen(cmd, cwd=clone, env=env, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(timeout=1800), p.stderr.read()) for p in procs]  # a hang guard only
    codes = sorted(code for code, _ in results)
    if codes == [0, 0]:  # the first finished before the second started: both legitimate
        pytest.skip("the two processes did not overlap on this machine")
    assert codes == [0, 3]
    refused = next(err for code, err in results if code == 3)
    assert "is in use by process" in refused
    assert not list((clone / "shared").rglob("*.orbax-checkpoint-tmp"))
    assert json.loads((clone / "shared/results.json").read_text())["runs"]



def test_more_seeds_for_some_runs_are_trained_recorded_and_kept(clone, capsys):
    """Experiment.more_seeds: run `a` trains 3 seeds, `b` the experiment's 2; results.json says
    so; adding seeds later trains only the new members and keeps the earlier provenance."""
    assert run(capsys=capsys)[0] == 0
    first = json.loads((clone / "experiments/tiny/results.json").read_text())
    more = cli.Experiment(**{**EXP.__dict__, "more_seeds": {"a": 3}})
    code, err = run(exp=more, capsys=capsys)
    assert code == 0 and "5 member(s) in 2 group(s); 1 to train" in err
    doc = json.loads((clone / "experiments/tiny/results.json").read_text())
    assert doc["runs"][0]["seeds"][:2] == first["runs"][0]["seeds"]  # not trained again
    assert {r["name"]: [s["seed"] for s in r["seeds"]] for r in doc["runs"]} == \
        {"a": [0, 1, 2], "b": [0, 1]}
    assert doc["settings"]["seeds_by_run"] == {"a": 3}
    assert doc["settings"]["this_invocation"]["groups_trained"] == 1
    assert doc["settings"]["earlier_invocations"][0]["command"] == first["command"]
    assert doc["settings"]["earlier_invocations"][0]["groups_trained"] == 1
    assert run("--seeds", "1", "--out", "one", exp=more, capsys=capsys)[0] == 0
    one = json.loads((clone / "one/results.json").read_text())
    assert [len(r["seeds"]) for r in one["runs"]] == [1, 1]
    bad = cli.Experiment(**{**EXP.__dict__, "more_seeds": {"zzz": 3}})
    code, err = run(exp=bad, capsys=capsys)
    assert code == 2 and "more_seeds {'zzz': 3}" in err


@pytest.mark.parametrize("env, says", [
    ({"JAXMLP_NUM_PROCESSES": "2", "JAXMLP_PROCESS_ID": "x"}, "both must be integers"),
    ({"JAXMLP_NUM_PROCESSES": "2", "JAXMLP_PROCESS_ID": "5"}, "JAXMLP_PROCESS_ID=5: must be in"),
    ({"JAXMLP_NUM_PROCESSES": "2", "JAXMLP_PROCESS_ID": "1"}, "JAXMLP_COORDINATOR=''"),
])
def test_bad_multiprocess_environment_is_one_line_exit_2(clone, capsys, monkeypatch, env, says):
    monkeypatch.delenv("JAXMLP_COORDINATOR", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    code, err = run(capsys=capsys)
    assert code == 2 and err.startswith("error: JAXMLP_") and says in err
    assert len(err.splitlines()) == 1
    assert sorted(p.name for p in clone.iterdir()) == ["data"]


@pytest.mark.parametrize("argv, policy", [
    ([], cli.CHECKPOINT_EVERY),           # default: at most every 5 s, none while one is written
    (["--checkpoint-every", "0"], None),  # after every call, waiting for the previous write
    (["--checkpoint-every", "30"], 30.0),  # and at most every 30 s
])
def test_checkpoint_every_selects_the_resume_checkpoint_policy(argv, policy):
    assert cli._checkpoint_policy(cli.parse(EXP, argv)) == policy
