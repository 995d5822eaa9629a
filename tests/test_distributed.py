"""Training across processes: two jax.distributed processes on localhost (CPU, gloo) train one run
data parallel, and share a sweep's groups, with the same numbers as a single process."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import conftest
import numpy as np
import pytest

from jaxmlp import distributed, runner

ROOT = Path(__file__).resolve().parents[1]
HANG_S = 1800  # generous: only a hung process should reach it (a loaded 2-core machine)

# One data-parallel run; prints its history, final parameters and test scores as JSON.
DATA_PARALLEL = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, "tests")
    from jaxmlp import distributed
    procs = distributed.start()  # from JAXMLP_*; a no-op in a single process
    import jax
    from conftest import tiny_data, tiny_run
    from jaxmlp.epoch import device_data
    from jaxmlp.group import build_group, init_group
    from jaxmlp.loop import fit_run
    mesh = distributed.global_mesh()
    data = device_data(tiny_data(n_train=256), mesh)
    run = tiny_run(epochs=3, batch_size=64, dropout=0.2)
    group = build_group([run], data, mesh=mesh)
    hlo = group.step.lower(init_group(group), data).compile().as_text()
    state, hist, scores = fit_run(run, data, mesh=mesh)
    params = [jax.device_get(p).ravel().tolist() for p in jax.tree.leaves(state.params)]
    print(json.dumps({"processes": list(procs), "devices": jax.device_count(),
                      "local_devices": jax.local_device_count(),
                      "hist": {k: v for k, v in hist.items() if k != "epoch_time_s"},
                      "params": params, "test": scores["test"],
                      "all_reduce": "all-reduce" in hlo}))
""")


def env_for(index=None, count=None, port=None, devices=1) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAXMLP_")}
    env.update(JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT),
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    if count is not None:
        env.update({distributed.ENV_COORDINATOR: f"127.0.0.1:{port}",
                    distributed.ENV_NUM_PROCESSES: str(count),
                    distributed.ENV_PROCESS_ID: str(index)})
    return env


def run_together(commands_envs) -> list[str]:
    """Start every (argv, env) at once, wait for all; their stdouts, or fail with stderr."""
    procs = [subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for argv, env in commands_envs]
    outs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=HANG_S)
            assert p.returncode == 0, err[-3000:]
            outs.append(out)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return outs


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


@conftest.runs_beside
def test_two_processes_train_one_run_like_a_single_process():
    port = distributed.free_port()
    script = [sys.executable, "-c", DATA_PARALLEL]
    two = [last_json(o) for o in run_together(
        [(script, env_for(i, 2, port)) for i in range(2)])]
    one_proc_two_devices, one_device = (last_json(o) for o in run_together(
        [(script, env_for(devices=2)), (script, env_for(devices=1))]))

    assert [t["processes"] for t in two] == [[0, 2], [1, 2]]
    assert all(t["devices"] == 2 and t["local_devices"] == 1 for t in two)
    assert all(t["all_reduce"] for t in two)  # the batch really is split across the processes
    assert two[0]["hist"] == two[1]["hist"] and two[0]["params"] == two[1]["params"]

    def close(a, b, atol):
        for key in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"):
            np.testing.assert_allclose(a["hist"][key], b["hist"][key], rtol=0, atol=atol,
                                       err_msg=key)
        for pa, pb in zip(a["params"], b["params"], strict=True):
            np.testing.assert_allclose(pa, pb, rtol=0, atol=atol)
        np.testing.assert_allclose(a["test"], b["test"], rtol=0, atol=atol)

    # Against one process with two devices the program and its partition are the same; only the
    # all-reduce changes hands (gloo instead of in-process), and a sum of two partial sums is the
    # same float either way round, so only rounding-level noise (1e-6) is allowed.
    close(two[0], one_proc_two_devices, atol=1e-6)
    # Against one device the gradient's float sums are ordered differently (per-device partial
    # sums + all-reduce), so 3 epochs agree to float32 rounding, as in test_train's 4 devices.
    close(two[0], one_device, atol=1e-5)


TIMING = {"wall_time_s", "examples_per_s", "group_size", "group_wall_time_s", "resumed"}
SWEEP = ["-m", "jaxmlp.experiments.p8d", "--quick", "--quiet", "--seeds", "2",
         "--only", "sin_callbacks", "solo_early_stopping", "solo_reduce_lr"]


def sweep(out: Path, env) -> tuple[list[str], dict]:
    return [sys.executable, *SWEEP, "--out", str(out)], env


def assert_same_members(merged: dict, single: dict, folder: Path) -> None:
    """Every member of the single-process sweep is in `merged` with the same numbers."""
    assert [r["name"] for r in merged["runs"]] == [r["name"] for r in single["runs"]]
    assert len(merged["runs"]) == 3
    for a, b in zip(merged["runs"], single["runs"]):
        assert a["config"] == b["config"]
        for sa, sb in zip(a["seeds"], b["seeds"], strict=True):
            assert {k for k in sa if k not in TIMING} == {k for k in sb if k not in TIMING}
            for key in sa.keys() - TIMING:
                # Each member trains the same float program alone or in any group (members
                # are looped with lax.map on the CPU), so its numbers agree to rounding.
                if isinstance(sa[key], dict):
                    for k in sa[key]:
                        np.testing.assert_allclose(sa[key][k], sb[key][k], atol=1e-6,
                                                   err_msg=f"{a['name']} {key}.{k}")
                elif isinstance(sa[key], float):
                    np.testing.assert_allclose(sa[key], sb[key], atol=1e-6, err_msg=key)
                else:
                    assert sa[key] == sb[key], (a["name"], key)
        for member in a["seeds"]:  # the history CSVs are there too
            path = folder / member["history_csv"]
            assert path.read_text().splitlines()[0].startswith("epoch,")
    assert merged["settings"]["this_invocation"]["processes"] == 2
    assert single["settings"]["this_invocation"]["processes"] == 1


@conftest.runs_beside
def test_a_sweep_split_over_two_processes_merges_into_one_results_json(tmp_path):
    # Separate results folders, as on hosts without a shared filesystem: process 0's folder
    # can only get process 1's records through the merge.
    port = distributed.free_port()
    run_together([sweep(tmp_path / "single", env_for()),
                  sweep(tmp_path / "p0", env_for(0, 2, port)),
                  sweep(tmp_path / "p1", env_for(1, 2, port))])
    single = json.loads((tmp_path / "single" / "results.json").read_text())
    merged = json.loads((tmp_path / "p0" / "results.json").read_text())
    assert_same_members(merged, single, tmp_path / "p0")
    assert not (tmp_path / "p1" / "results.json").exists()  # process 0 alone writes it
    # 3 runs x 2 seeds listed run by run, one group (--quick): too big for one process of two,
    # it is cut round robin, so process 1 trains every second member.
    trained_by_1 = sorted(p.name for p in (tmp_path / "p1" / "members").iterdir())
    assert trained_by_1 == ["sin_callbacks__seed1.json", "solo_early_stopping__seed1.json",
                            "solo_reduce_lr__seed1.json"]

    # One folder for both, as on a shared filesystem: the members land side by side (and the
    # two processes do not lock each other out of the folder).
    port = distributed.free_port()
    shared = tmp_path / "shared"
    run_together([sweep(shared, env_for(i, 2, port)) for i in range(2)])
    assert_same_members(json.loads((shared / "results.json").read_text()), single, shared)

    # One member per group (--engine solo): six whole groups, each claimed by one process.
    port = distributed.free_port()
    solo = tmp_path / "solo"
    outs = [(argv + ["--engine", "solo"], env) for argv, env in
            [sweep(solo / str(i), env_for(i, 2, port)) for i in range(2)]]
    run_together(outs)
    # Each process saved the models it trained (only the records travel to process 0).
    trained = [{x.name for x in (solo / str(i) / "runs" / "models").glob("*")} for i in range(2)]
    assert not trained[0] & trained[1]
    assert trained[0] | trained[1] == {f"{r}__seed{k}" for r in SWEEP[-3:] for k in (0, 1)}
    merged = json.loads((solo / "0" / "results.json").read_text())
    assert_same_members(merged, single, solo / "0")
    assert {s["group_size"] for r in merged["runs"] for s in r["seeds"]} == {1}

    # As if that sweep had stopped before the merge: process 0's folder lacks process 1's
    # records. Rerun, each host with its own folder: a member finished in either folder is
    # finished for both, so nothing trains again and process 0 gets the records in the merge.
    for name in trained[1]:
        (solo / "0" / "members" / f"{name}.json").unlink()
    (solo / "0" / "results.json").unlink()
    port = distributed.free_port()
    run_together([(argv + ["--engine", "solo"], env) for argv, env in
                  [sweep(solo / str(i), env_for(i, 2, port)) for i in range(2)]])
    assert [{x.name for x in (solo / str(i) / "runs" / "models").glob("*")}
            for i in range(2)] == trained  # no model saved again
    merged = json.loads((solo / "0" / "results.json").read_text())
    assert merged["settings"]["this_invocation"]["groups_trained"] == 0
    assert_same_members(merged, single, solo / "0")


def test_members_for_process_is_a_deterministic_disjoint_cover():
    members = [f"m{i}" for i in range(7)]
    shares = [distributed.members_for_process(members, i, 3) for i in range(3)]
    assert shares == [["m0", "m3", "m6"], ["m1", "m4"], ["m2", "m5"]]
    assert distributed.members_for_process(members, 0, 1) == members
    with pytest.raises(ValueError, match="index=3"):
        distributed.members_for_process(members, 3, 3)


def test_work_units_cut_the_groups_too_big_for_one_process_and_queue_the_rest():
    groups = [["a0", "a1", "a2", "a3", "a4"], ["b0"], ["c0", "c1"], ["d0", "d1", "d2"], ["e0"]]
    cost = {"a": 10, "b": 1, "c": 4, "d": 1, "e": 3}
    units = distributed.work_units(groups, 2, lambda m: cost[m[0]])
    # Total 70, an even share 35: only a (50) costs more than half of one. Its pieces go one to
    # each process; the rest wait for a claim, the costliest first (c 8, e 3, d 3, b 1; d and
    # e tie and keep their order).
    assert units == [(["a0", "a2", "a4"], 0), (["a1", "a3"], 1), (["c0", "c1"], None),
                     (["d0", "d1", "d2"], None), (["e0"], None), (["b0"], None)]
    every = sorted(m for u in units for m in u.members)
    assert every == sorted(m for g in groups for m in g)  # each member once
    # One process: every group, in order, its own.
    assert distributed.work_units(groups, 1, lambda m: 1) == [(g, 0) for g in groups]
    # Big groups with fewer members than processes: their pieces go to the processes in turn.
    units = distributed.work_units([["x0", "x1"], ["y0", "y1"]], 4, lambda m: 1)
    assert [u.owner for u in units] == [0, 1, 2, 3]


def test_two_processes_cut_only_the_big_groups_of_the_two_experiments():
    # What the guide says of TA8 and P8D: on two processes, TA8's callbacks group (23 members,
    # 50 epochs) is cut and its other groups are claimed whole (seventeen on the CPU, where runs
    # that use other dropout layers or L2 terms group apart: group.group_key); P8D's one group
    # is cut.
    from jaxmlp.experiments import cli, p8d, ta8

    def units(exp):
        runs = [dataclasses.replace(r, model=dataclasses.replace(r.model, input_dim=3072,
                                                                 num_classes=10))
                for r in cli.select(exp, cli.parse(exp, []))]
        members = cli.experiment_members(exp, cli.parse(exp, []), runs)
        return distributed.work_units(runner.groups(members, "group"), 2, cli.member_cost)

    cut = [u for u in units(ta8.EXPERIMENT) if u.owner is not None]
    assert [u.owner for u in cut] == [0, 1] and sum(len(u.members) for u in cut) == 23
    assert {m.run.name for u in cut for m in u.members} == {
        "cb_none", "cb_early_stopping", "cb_reduce_lr", "cb_combined"}
    assert all(m.run.train.epochs == 50 for u in cut for m in u.members)
    assert sum(u.owner is None for u in units(ta8.EXPERIMENT)) == 17
    assert [(u.owner, len(u.members)) for u in units(p8d.EXPERIMENT)] == [(0, 18), (1, 17)]


def test_each_unit_is_claimed_by_exactly_one_process():
    # Two sessions of a real coordination service (process 0 hosts it), in two threads.
    from concurrent.futures import ThreadPoolExecutor

    port = distributed.free_port()
    env = [{distributed.ENV_COORDINATOR: f"127.0.0.1:{port}",
            distributed.ENV_NUM_PROCESSES: "2", distributed.ENV_PROCESS_ID: str(i)}
           for i in range(2)]
    keys = [f"unit{k}" for k in range(20)]

    def process(i):
        job = distributed.join_sweep(env[i])
        distributed.gather(job, "start", i)  # both are here before either claims
        taken = [k for k in (keys if i == 0 else keys[::-1]) if distributed.claim(job, k)]
        every = distributed.gather(job, "taken", taken)
        job.session.shutdown()
        return taken, every

    with ThreadPoolExecutor(2) as pool:
        (taken0, every0), (taken1, every1) = pool.map(process, range(2))
    assert sorted(taken0 + taken1) == sorted(keys)  # each unit once
    assert every0 == every1 == [taken0, taken1]  # each process has both lists, in order
    assert distributed.claim(distributed.SweepJob(), "any")  # no job: always this process's
    assert distributed.gather(distributed.SweepJob(), "any", [1]) == [[1]]


def test_a_checkpoint_only_some_processes_hold_is_resumed_by_the_first_of_them():
    held = [["g1", "g2"], ["g2", "g3"], ["g2", "g3", "g4"]]
    # g2 is in every folder (a shared one): nobody's; the others go to the first holder.
    assert distributed.first_holders(held) == {"g1": 0, "g3": 1, "g4": 2}
    assert distributed.first_holders([["g1"], ["g1"]]) == {}
    assert distributed.first_holders([[], []]) == {}
    assert distributed.first_holders([["g1"]]) == {}  # one process holds what there is


def test_the_environment_names_the_job_or_says_what_is_wrong():
    env = {distributed.ENV_COORDINATOR: "10.0.0.1:1234", distributed.ENV_NUM_PROCESSES: "4",
           distributed.ENV_PROCESS_ID: "3"}
    assert distributed.from_env(env) == ("10.0.0.1:1234", distributed.Processes(3, 4))
    assert distributed.from_env({}) is None
    assert distributed.from_env({distributed.ENV_NUM_PROCESSES: "1"}) is None
    assert distributed.start({}) == distributed.Processes(0, 1)
    assert distributed.join_sweep({}) == distributed.SweepJob(0, 1)
    with pytest.raises(ValueError, match="JAXMLP_PROCESS_ID=4"):
        distributed.from_env({**env, distributed.ENV_PROCESS_ID: "4"})
    with pytest.raises(ValueError, match="JAXMLP_COORDINATOR"):
        distributed.from_env({**env, distributed.ENV_COORDINATOR: "10.0.0.1"})
    with pytest.raises(ValueError, match="integers"):
        distributed.from_env({**env, distributed.ENV_PROCESS_ID: "one"})


def test_a_peer_cannot_write_outside_the_results_folder(tmp_path):
    assert distributed._inside(tmp_path, "members/a__seed0.json") == (
        tmp_path / "members" / "a__seed0.json").resolve()
    for name in ("../evil.json", "members/../../evil", "/etc/passwd", "results.json"):
        with pytest.raises(ValueError, match="outside"):
            distributed._inside(tmp_path, name)


def test_core_shares_are_contiguous_blocks_as_even_as_they_go():
    assert distributed.core_shares(2, [0, 1, 2, 3, 4]) == [[0, 1, 2], [3, 4]]
    assert distributed.core_shares(3, [4, 5, 6]) == [[4], [5], [6]]
    assert distributed.core_shares(1, [7]) == [[7]]
    with pytest.raises(ValueError, match=r"--processes 3: allowed 1 to 2 on this machine"):
        distributed.core_shares(3, [0, 1])
    with pytest.raises(ValueError, match=r"--processes 0: allowed 1 to 2"):
        distributed.core_shares(0, [0, 1])


def test_a_local_process_has_its_job_and_one_core_runs_xla_in_its_thread():
    base = {"XLA_FLAGS": "--xla_force_host_platform_device_count=1", "OTHER": "kept"}
    env = distributed.local_env(1, 2, 1234, [3], base)
    assert env[distributed.ENV_COORDINATOR] == "127.0.0.1:1234"
    assert (env[distributed.ENV_NUM_PROCESSES], env[distributed.ENV_PROCESS_ID]) == ("2", "1")
    assert env[distributed.ENV_LOCAL_CORES] == "3" and env["OTHER"] == "kept"
    assert env["XLA_FLAGS"] == ("--xla_force_host_platform_device_count=1 "
                                "--xla_cpu_multi_thread_eigen=false")
    wide = distributed.local_env(0, 2, 1234, [0, 1], base)
    assert wide["XLA_FLAGS"] == base["XLA_FLAGS"] and wide[distributed.ENV_LOCAL_CORES] == "0,1"
    assert base == {"XLA_FLAGS": "--xla_force_host_platform_device_count=1", "OTHER": "kept"}


# A stand-in for a job's process: prints its place, then process 1 fails while process 0 would
# wait for ever (as a real one waits for its peers in the merge).
FAILING = textwrap.dedent("""
    import os, sys, time
    i = os.environ["JAXMLP_PROCESS_ID"]
    print("process", i, "of", os.environ["JAXMLP_NUM_PROCESSES"],
          "cores", os.environ["JAXMLP_LOCAL_CORES"], flush=True)
    if i == "1":
        sys.exit(7)
    time.sleep(3600)
""")


@pytest.mark.skipif(len(distributed.cores()) < 2, reason="needs two CPU cores")
def test_launch_local_stops_the_others_when_one_process_fails():
    import io

    stream = io.StringIO()
    status = distributed.launch_local([sys.executable, "-c", FAILING], 2, stream=stream)
    assert status == 7
    # Process 0, which would have slept for an hour, was stopped before the call returned.
    lines = sorted(x for x in stream.getvalue().splitlines() if " process " in x)
    shares = distributed.core_shares(2)
    assert lines == [f"[{i}/2] process {i} of 2 cores {','.join(map(str, shares[i]))}"
                     for i in range(2)]


# A launcher whose processes write their pids and sleep, ignoring SIGTERM as a process of a
# real job does (JAX's coordination client takes it); the launcher is killed with SIGKILL.
ORPHANS = textwrap.dedent("""
    import sys
    from jaxmlp import distributed
    child = ("import os, signal, time; from pathlib import Path; "
             "signal.signal(signal.SIGTERM, signal.SIG_IGN); "
             "Path(sys.argv[1], os.environ['JAXMLP_PROCESS_ID']).write_text(str(os.getpid())); "
             "time.sleep(3600)")
    distributed.launch_local([sys.executable, "-c", "import sys; " + child, sys.argv[1]], 2)
""")


@pytest.mark.skipif(not sys.platform.startswith("linux") or len(distributed.cores()) < 2,
                    reason="Linux's parent-death signal, two CPU cores")
def test_a_killed_launcher_leaves_no_process_behind(tmp_path):
    import signal
    import time

    launcher = subprocess.Popen([sys.executable, "-c", ORPHANS, str(tmp_path)], cwd=ROOT,
                                env=env_for())
    try:
        deadline = time.monotonic() + HANG_S
        while len(list(tmp_path.iterdir())) < 2 and time.monotonic() < deadline:
            assert launcher.poll() is None
            time.sleep(0.1)
        pids = [int((tmp_path / str(i)).read_text()) for i in range(2)]
        launcher.send_signal(signal.SIGKILL)
        launcher.wait()
        for pid in pids:
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            else:
                raise AssertionError(f"process {pid} outlived its launcher")
    finally:
        launcher.kill()


def local_sweep(out: Path, *more) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *SWEEP, "--out", str(out), *more], cwd=ROOT,
                          env=env_for(), capture_output=True, text=True, timeout=HANG_S)


# A one-process sweep killed (SIGKILL) right after the checkpoint of its first group's second
# chunk, as `python -m jaxmlp.experiments.p8d ARGS` would be.
KILLED_SWEEP = textwrap.dedent("""
    import os, signal, sys
    from jaxmlp import observers
    from jaxmlp.experiments import cli, p8d
    call = observers.GroupObserver.__call__
    def observe(self, *a):
        call(self, *a)
        if self.calls == 2:
            self.ckpt.wait()
            os.kill(os.getpid(), signal.SIGKILL)
    observers.GroupObserver.__call__ = observe
    sys.exit(cli.run(p8d.EXPERIMENT, sys.argv[1:]))
""")


@conftest.runs_beside
@pytest.mark.skipif(len(distributed.cores()) < 2, reason="needs two CPU cores")
def test_a_sweep_killed_in_one_process_resumes_in_two_with_the_same_numbers(tmp_path):
    # One-member groups (--engine solo), each whole in either case, so each is named the same.
    flags = [*SWEEP[2:], "--engine", "solo", "--epochs", "6", "--epochs-per-call", "1",
             "--checkpoint-every", "0"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    done = subprocess.run([sys.executable, "-m", "jaxmlp.experiments.p8d", *flags, "--out",
                           str(straight)], cwd=ROOT, env=env_for(), timeout=HANG_S)
    assert done.returncode == 0
    done = subprocess.run([sys.executable, "-c", KILLED_SWEEP, *flags, "--out", str(killed)],
                          cwd=ROOT, env=env_for(), timeout=HANG_S)
    assert done.returncode == -9 and not (killed / "members").exists()
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(killed, elsewhere / "1")  # for later: a host that holds the checkpoint
    loud = [x for x in flags if x != "--quiet"]
    done = subprocess.run([sys.executable, "-m", "jaxmlp.experiments.p8d", *loud, "--out",
                           str(killed), "--processes", "2"], cwd=ROOT, env=env_for(),
                          capture_output=True, text=True, timeout=HANG_S)
    assert done.returncode == 0, done.stderr[-3000:]
    # The first group (sin_callbacks, seed 0) went on from its checkpoint, in whichever process
    # claimed it; the others trained from the start.
    resumed = [x for x in done.stderr.splitlines() if "resumed after" in x]
    assert len(resumed) == 1 and "(sin_callbacks, 1 member) resumed after 2 chunks" in resumed[0]
    merged = json.loads((killed / "results.json").read_text())
    assert_same_members(merged, json.loads((straight / "results.json").read_text()), killed)
    seeds = {(r["name"], s["seed"]): s["resumed"] for r in merged["runs"] for s in r["seeds"]}
    assert [k for k, v in seeds.items() if v] == [("sin_callbacks", 0)]
    assert not merged["settings"]["this_invocation"]["complete"]  # a resumed group's time is part

    # Hosts without a shared filesystem: the checkpoint is in process 1's folder only, so
    # process 1 resumes that group (process 0, with an empty folder, would start it over).
    port = distributed.free_port()
    run_together([([sys.executable, "-m", "jaxmlp.experiments.p8d", *flags, "--out",
                    str(elsewhere / str(i))], env_for(i, 2, port)) for i in range(2)])
    merged = json.loads((elsewhere / "0" / "results.json").read_text())
    assert_same_members(merged, json.loads((straight / "results.json").read_text()),
                        elsewhere / "0")
    seeds = {(r["name"], s["seed"]): s["resumed"] for r in merged["runs"] for s in r["seeds"]}
    assert [k for k, v in seeds.items() if v] == [("sin_callbacks", 0)]
    assert (elsewhere / "1" / "runs" / "models" / "sin_callbacks__seed0").exists()
    assert not (elsewhere / "0" / "runs" / "models" / "sin_callbacks__seed0").exists()


@conftest.runs_beside
@pytest.mark.skipif(len(distributed.cores()) < 2, reason="needs two CPU cores")
def test_processes_2_trains_the_sweep_as_two_local_processes_with_the_same_numbers(tmp_path):
    single, two = tmp_path / "single", tmp_path / "two"
    assert local_sweep(single).returncode == 0
    done = local_sweep(two, "--processes", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    merged = json.loads((two / "results.json").read_text())
    assert_same_members(merged, json.loads((single / "results.json").read_text()), two)
    inv = merged["settings"]["this_invocation"]
    assert inv["cores_per_process"] == len(distributed.core_shares(2)[0])
    # The group counts are the job's: the same as one process's (one group, cut in two pieces).
    one_inv = json.loads((single / "results.json").read_text())["settings"]["this_invocation"]
    assert (inv["groups_total"], one_inv["groups_total"]) == (2, 1)
    assert inv["groups_trained"] == 2 and inv["groups_trained_by_process_0"] == 1
    assert "--processes 2" in merged["command"]
    # Without --quiet each process's lines carry its number. One member: process 1 has none.
    loud = [sys.executable, "-m", "jaxmlp.experiments.p8d", "--quick", "--seeds", "1", "--only",
            "sin_callbacks", "--processes", "2", "--out", str(tmp_path / "loud")]
    done = subprocess.run(loud, cwd=ROOT, env=env_for(), capture_output=True, text=True,
                          timeout=HANG_S)
    lines = done.stderr.splitlines()
    assert done.returncode == 0 and lines[0].startswith("[p8d] 2 processes on this machine:")
    # One whole group: whichever process claims it first trains it, the other nothing.
    said = [x.split(" ", 1)[0] for x in lines if "] [p8d] group 1/1 (sin_callbacks" in x]
    assert said and set(said) < {"[0/2]", "[1/2]"}, lines
    assert sorted(x.split(" ", 1)[1] for x in lines if "this process trained" in x) == [
        "[p8d] this process trained 0 of the 1 group(s)",
        "[p8d] this process trained 1 of the 1 group(s)"]
    loud_results = tmp_path / "loud" / "results.json"
    assert [len(r["seeds"]) for r in json.loads(loud_results.read_text())["runs"]] == [1]
    # Everything finished: nothing is trained or written (--quick's synthetic data is made
    # in the processes, so they start; a real dataset's committed results start none).
    before = loud_results.read_text()
    again = subprocess.run(loud, cwd=ROOT, env=env_for(), capture_output=True, text=True,
                           timeout=HANG_S)
    assert again.returncode == 0 and "[0/2] [p8d] nothing to train" in again.stderr
    assert loud_results.read_text() == before


def test_processes_beyond_the_cores_or_inside_a_job_is_one_error_and_writes_nothing(tmp_path):
    too_many = len(distributed.cores()) + 1
    done = local_sweep(tmp_path / "a", "--processes", str(too_many))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: --processes {too_many}: allowed 1 to {too_many - 1} on this machine (the CPU "
        "cores this process may use); one process per core at most"]
    assert not (tmp_path / "a" / "results.json").exists()
    assert not (tmp_path / "a" / "members").exists()
    done = subprocess.run([sys.executable, *SWEEP, "--out", str(tmp_path / "b"), "--processes",
                           "2"], cwd=ROOT, env=env_for(0, 2, distributed.free_port()),
                          capture_output=True, text=True, timeout=HANG_S)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "JAXMLP_NUM_PROCESSES already names one" in done.stderr
    assert not (tmp_path / "b" / "members").exists()

