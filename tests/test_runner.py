"""The group engine: members trained together equal members trained alone; exact resume."""

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import NamedTuple

import conftest
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_data, tiny_run

from jaxmlp import config as C
from jaxmlp import group as group_module
from jaxmlp import loop, observers, runner
from jaxmlp.epoch import Data, device_data, init_states
from jaxmlp.group import build_group, compile_group, init_group

ROOT = Path(__file__).resolve().parents[1]
# Run again on 4 forced CPU devices by test_equivalence_on_four_devices (data parallel mesh).
MESH = (jax.sharding.Mesh(np.array(jax.devices()), ("data",))
        if jax.device_count() > 1 else None)
METRICS = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")


def members_with_their_own_hooks(epochs=12) -> list[C.RunConfig]:
    """Four runs sharing shapes, each with its own learning rate, patience and callbacks."""
    es = lambda p, d: C.EarlyStopping(patience=p, min_delta=d, restore_best_weights=True)  # noqa
    hooks = [
        C.HooksConfig(early_stopping=es(0, 0.02)),
        C.HooksConfig(early_stopping=es(1, 0.01),
                      reduce_lr=C.ReduceLROnPlateau(factor=0.5, patience=0)),
        C.HooksConfig(early_stopping=es(3, 0.0), schedule=C.CosineSchedule(3e-2, period=5)),
        C.HooksConfig(reduce_lr=C.ReduceLROnPlateau(factor=0.2, patience=1, min_delta=0.01),
                      checkpoint=C.ModelCheckpoint("val_accuracy")),
    ]
    return [tiny_run(f"m{i}", epochs=epochs, lr=lr, seed=i, hooks=h, dropout=0.1)
            for i, (lr, h) in enumerate(zip((3e-2, 1e-2, 3e-2, 5e-3), hooks))]


def fit_group(runs, data, **kw):
    group = build_group(runs, data, mesh=MESH, **kw)
    state, hists = loop.fit_group(group, data)
    _, scores = jax.device_get(group.final(state, data))
    return jax.device_get(state), hists, scores


@pytest.fixture(scope="module")
def dataset():
    return device_data(Data(*tiny_data()), MESH)


@pytest.fixture(scope="module")
def solo(dataset):
    return [fit_group([r], dataset) for r in members_with_their_own_hooks()]


@pytest.mark.parametrize("members, shard", [("map", "batch"), ("vmap", "batch"),
                                            ("vmap", "members")])
def test_each_member_of_a_group_gets_its_solo_results(dataset, solo, members, shard):
    runs = members_with_their_own_hooks()
    state, hists, scores = fit_group(runs, dataset, members=members, shard=shard)
    stops = [len(h["epoch"]) for h in hists]
    assert len(set(stops)) > 1 and min(stops) < 12  # the members really stop at different epochs
    for i, (s_state, s_hists, s_scores) in enumerate(solo):
        # Same epochs, same stop decision: the hooks saw the same numbers.
        assert len(hists[i]["epoch"]) == len(s_hists[0]["epoch"]), f"member {i}"
        assert bool(state.hooks.early_stopping.stop[i]) == bool(
            s_state.hooks.early_stopping.stop[0])
        assert int(state.hooks.plateau.reductions[i]) == int(s_state.hooks.plateau.reductions[0])
        # Members are independent programs; lax.map runs exactly the solo computation, vmap
        # batches the matmuls (other rounding): both within 1e-5.
        for key in METRICS:
            np.testing.assert_allclose(hists[i][key], s_hists[0][key], rtol=1e-5, atol=1e-5,
                                       err_msg=f"member {i} {key}")
        for split in scores:
            np.testing.assert_allclose([v[i] for v in scores[split]],
                                       [v[0] for v in s_scores[split]], rtol=1e-5, atol=1e-5)


def test_a_finished_member_saves_the_weights_its_scores_come_from(dataset, tmp_path):
    # m0 restores its best weights (EarlyStopping restore_best_weights=True): the saved model,
    # evaluated on the validation split, gives the member record's val_loss, i.e. the best
    # epoch's, not the last one's.
    run = members_with_their_own_hooks()[0]
    m = runner.Member(run, 0)
    records = runner.run_group([m], dataset, dataset.x_train.shape[0], out_dir=tmp_path / "out",
                               runs_dir=tmp_path / "runs", epochs_per_call=1, mesh=MESH,
                               label="t", quiet=True)
    model = loop.load(runner.model_path(tmp_path / "runs", m))
    val = model.evaluate(np.asarray(dataset.x_val), np.asarray(dataset.y_val))
    np.testing.assert_allclose(val["loss"], records[0]["val"]["loss"], rtol=1e-5)
    history = model.history["val_loss"]
    assert records[0]["best_epoch"] != len(history) - 1  # restored: not the last epoch
    np.testing.assert_allclose(val["loss"], history[records[0]["best_epoch"]], rtol=1e-5)


def test_io_thread_runs_everything_in_order_and_says_which_write_failed():
    import threading

    io = runner.IOThread()
    done, gate = [], threading.Event()
    io.submit(lambda: (gate.wait(5), done.append("observer")))
    io.write(lambda: done.append("model"))
    io.write(lambda: done.append("record"))
    io.check()  # nothing has failed (nothing has even run yet)
    gate.set()
    io.close()
    assert done == ["observer", "model", "record"]  # in the order submitted, one at a time

    io = runner.IOThread()
    failed = io.write(lambda: 1 / 0)
    failed.exception()  # let it run
    with pytest.raises(ZeroDivisionError):
        io.check()
    io.write(lambda: done.append("after"))  # later writes still run...
    with pytest.raises(ZeroDivisionError):
        io.close()  # ...and close waits for them, then raises the first error
    assert done[-1] == "after"
    io = runner.IOThread()
    io.write(lambda: 1 / 0)
    io.close(raise_errors=False)  # another error is on its way: this one is not raised


def _unraisable(exc, obj=None):
    return type("Unraisable", (), {"exc_value": exc, "exc_traceback": exc.__traceback__,
                                   "object": obj, "err_msg": None})()


def _closed_coroutine(filename: str, from_exit: bool = True):
    """(coroutine, the exception closing it raised), as Orbax's read coroutines raise: their
    `except BaseException` turns GeneratorExit into an Exception."""
    class Pending:
        def __await__(self):
            yield

    source = ("async def read(wait):\n    try:\n        await wait\n"
              "    except BaseException as e:\n        raise Exception('read failed') from e\n")
    if not from_exit:
        source = "async def read(wait):\n    await wait\n    raise Exception('read failed')\n"
    space = {}
    exec(compile(source, filename, "exec"), space)
    coroutine = space["read"](Pending())
    coroutine.send(None)
    try:
        coroutine.close() if from_exit else coroutine.send(None)
    except Exception as e:
        return coroutine, e
    raise AssertionError("the coroutine raised nothing")


def test_asyncio_logs_of_an_abandoned_orbax_read_are_left_out_and_nothing_else():
    import logging

    from jaxmlp import observers

    def raised_in(filename):
        scope = {}
        exec(compile("def read():\n    raise ValueError('NOT_FOUND: .zarray')\n", filename,
                     "exec"), scope)
        try:
            scope["read"]()
        except ValueError as e:
            return e

    def record(msg, exc):
        return logging.LogRecord("asyncio", logging.ERROR, __file__, 1, msg, None,
                                 (type(exc), exc, exc.__traceback__) if exc else None)

    orbax = f"{os.sep}site-packages{os.sep}orbax{os.sep}checkpoint{os.sep}serialization.py"
    never = "Future exception was never retrieved\nfuture: <Future finished exception=...>"
    assert not observers._abandoned_read_log(record(never, raised_in(orbax)))
    assert observers._abandoned_read_log(record(never, raised_in(f"{os.sep}mine.py")))
    assert observers._abandoned_read_log(record("Task was destroyed", raised_in(orbax)))
    assert observers._abandoned_read_log(record(never, None))
    task = "Task exception was never retrieved\nfuture: <Task finished name='Task-9' ...>"
    assert not observers._abandoned_read_log(record(task, raised_in(orbax)))
    assert observers._abandoned_read_log(record(task, raised_in(f"{os.sep}mine.py")))
    # TensorStore hands its error to the future from C++: no Python frames, its spec in the text
    handed = ValueError('DATA_LOSS: Error reading "a/.zarray" [tensorstore_spec=\'{}\']')
    assert not observers._abandoned_read_log(record(never, handed))
    assert observers._abandoned_read_log(record(never, ValueError("DATA_LOSS: mine")))


def test_only_the_echoes_of_an_abandoned_orbax_restore_are_left_out(monkeypatch):
    """runner.abandoned_read: a read handing its result to an event loop Orbax has closed, and
    an Orbax read coroutine closed unfinished; any other unraisable error still reaches the
    hook that was there, and installing twice wraps it once."""
    import asyncio

    loop = asyncio.new_event_loop()
    loop.close()
    try:
        loop.call_soon_threadsafe(print)
    except RuntimeError as e:
        closed_loop = e
    try:
        raise RuntimeError("Event loop is closed")  # the same words from anywhere else
    except RuntimeError as e:
        elsewhere = e
    orbax = f"{os.sep}site-packages{os.sep}orbax{os.sep}checkpoint{os.sep}serialization.py"
    echoes = [_unraisable(closed_loop), _unraisable(*reversed(_closed_coroutine(orbax)))]
    others = [_unraisable(elsewhere), _unraisable(ValueError("x")),
              _unraisable(*reversed(_closed_coroutine(f"{os.sep}mine.py"))),
              _unraisable(*reversed(_closed_coroutine(orbax, from_exit=False)))]
    assert [runner.abandoned_read(u) for u in echoes + others] == [True] * 2 + [False] * 4

    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    runner.quiet_abandoned_reads()
    runner.quiet_abandoned_reads()  # once per process
    for u in echoes + others:
        sys.unraisablehook(u)
    assert seen == others


def _fake_task(proc: Path, tid: int, name: str, utime: int, stime: int) -> None:
    task = proc / str(tid)
    task.mkdir(parents=True)
    (task / "comm").write_text(name + "\n")
    # /proc/<pid>/task/<tid>/stat: pid, (comm), state, then fields; utime and stime are the
    # 12th and 13th after the name. A name may itself hold ") ".
    rest = ["S"] + ["0"] * 10 + [str(utime), str(stime)] + ["0"] * 8
    (task / "stat").write_text(f"{tid} ({name}) " + " ".join(rest) + "\n")


def test_thread_cpu_sorts_the_threads_by_kind_and_counts_the_ended_ones_apart(tmp_path,
                                                                                monkeypatch):
    import threading

    tick = os.sysconf("SC_CLK_TCK")
    proc = tmp_path / "task"
    me = threading.get_native_id()
    _fake_task(proc, me, "python", 2 * tick, tick)            # marked: main
    _fake_task(proc, 11, "tf_XLAEigen", 40 * tick, 2 * tick)  # XLA's compute threads
    _fake_task(proc, 12, "tf_XLAEigen", 38 * tick, 4 * tick)
    _fake_task(proc, 13, "llvm-worker-0", tick, 0)            # XLA's compiler
    _fake_task(proc, 14, "ts_pool_worker", 3 * tick, tick)    # TensorStore: checkpoint writes
    _fake_task(proc, 15, "odd) name", tick, tick)             # unnamed or unknown: other
    cpu = runner.ThreadCPU(proc)
    cpu.mark("main")
    monkeypatch.setattr(os, "times", lambda: os.times_result((90.0, 10.0, 0.0, 0.0, 0.0)))
    out = cpu.seconds()
    assert out == {"compile": 1.0, "main": 3.0, "other": 2.0, "tensorstore": 4.0,
                   "xla_compute": 84.0, "ended": 6.0, "process": 100.0}

    # A marked thread that ends says so first: its seconds stay under its kind.
    def worker():
        cpu.mark("io")
        sum(i * i for i in range(20_000))
        cpu.finish()
    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    again = cpu.seconds()
    assert 0 < again["io"] < 100.0 and again["ended"] == pytest.approx(6.0 - again["io"])
    assert runner.ThreadCPU(tmp_path / "no such folder").seconds() is None  # not Linux


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="Linux's /proc")
def test_thread_cpu_reads_this_process_and_the_io_thread_counts_itself():
    cpu = runner.ThreadCPU()
    cpu.mark("main")
    io = runner.IOThread(cpu=cpu)
    io.write(lambda: sum(i * i for i in range(200_000)))
    io.close()  # the thread has ended: its seconds were kept under "io"
    out = cpu.seconds()
    assert out["io"] > 0 and out["main"] > 0 and out["ended"] >= 0
    assert sum(v for k, v in out.items() if k != "process") == pytest.approx(out["process"])


def test_io_thread_runs_a_queued_observer_before_queued_closing_writes():
    import threading

    io = runner.IOThread()
    done, started, gate = [], threading.Event(), threading.Event()
    io.write(lambda: (started.set(), gate.wait(5), done.append("group 1 closing")))
    started.wait(5)  # running when the rest come
    io.write(lambda: done.append("group 1 records"))
    io.submit(lambda: done.append("group 2 chunk 1"))
    io.write(lambda: done.append("group 2 closing"))
    io.submit(lambda: done.append("group 2 chunk 2"))
    gate.set()
    io.close()
    # The running write ends first; then the observers, in their order; then the writes, in theirs.
    assert done == ["group 1 closing", "group 2 chunk 1", "group 2 chunk 2", "group 1 records",
                    "group 2 closing"]
    with pytest.raises(RuntimeError, match="closed"):
        io.submit(lambda: None)


def test_turns_let_sections_through_in_their_order_whoever_arrives_first():
    import threading
    import time

    turns, order = runner.Turns(), []

    def section(k):
        with turns(k):
            order.append(k)
            time.sleep(0.01)  # a later section that did not wait would overtake this one

    threads = [threading.Thread(target=section, args=(k,)) for k in (3, 1, 2, 0)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert order == [0, 1, 2, 3]
    # A section that raises still hands over its turn; a skipped one too.
    turns = runner.Turns()
    with pytest.raises(ValueError), turns(0):
        raise ValueError
    turns.skip(1)
    with turns(2):
        order.append(2)


def test_prepare_counts_the_wait_for_its_turn_apart_from_compiling(monkeypatch):
    # runner's clock reads: asked for the turn at 0, got it at 100, compiled by 103.
    import types

    ticks = iter([0.0, 100.0, 103.0])
    monkeypatch.setattr(runner, "time", types.SimpleNamespace(perf_counter=lambda: next(ticks)))
    clock, data = runner.Clock(), device_data(tiny_data(), None)
    runner.prepare([runner.Member(tiny_run(), 0)], data, epochs_per_call=1, mesh=None,
                   clock=clock, turn=runner.Turns()(0))
    assert clock.seconds == {"compile_turns": 100.0, "compile": 3.0}
    ticks = iter([0.0, 100.0, 103.0])  # no turn: nothing to wait for
    clock = runner.Clock()
    runner.prepare([runner.Member(tiny_run(), 0)], data, epochs_per_call=1, mesh=None,
                   clock=clock)
    assert clock.seconds == {"compile": 3.0}


def test_run_group_on_an_io_thread_writes_what_it_writes_alone(dataset, tmp_path):
    # The same group, with its observers and closing writes on a runner.IOThread (the
    # experiments' way): the same records, histories, member files and saved model.
    run = members_with_their_own_hooks(epochs=6)[1]
    m = runner.Member(run, 0)
    outs = {}
    for how in ("alone", "io"):
        io = runner.IOThread() if how == "io" else None
        out = tmp_path / how
        records = runner.run_group([m], dataset, dataset.x_train.shape[0], out_dir=out,
                                   runs_dir=out / "runs", epochs_per_call=2, mesh=MESH,
                                   label="t", quiet=True, io=io)
        if io is not None:
            io.close()
        saved = loop.load(runner.model_path(out / "runs", m))
        outs[how] = (records, json.loads(runner.member_path(out, m).read_text()),
                     (out / "histories" / run.name / "seed0.csv").read_text(),
                     jax.tree.leaves(saved.params))
    (r1, f1, h1, w1), (r2, f2, h2, w2) = outs["alone"], outs["io"]
    drop = ("wall_time_s", "examples_per_s", "group_wall_time_s")
    strip = lambda r: {k: v for k, v in r.items() if k not in drop}  # noqa: E731
    assert strip(r1[0]) == strip(r2[0]) and strip(f1) == strip(f2) and f2["config_sha1"]
    def untimed(csv):  # every column but the epoch time
        rows = [line.split(",") for line in csv.splitlines()]
        t = rows[0].index("epoch_time_s")
        return [r[:t] + r[t + 1:] for r in rows]
    assert untimed(h1) == untimed(h2) and len(h1.splitlines()) == 7
    assert all(np.array_equal(a, b) for a, b in zip(w1, w2))


def test_best_checkpoints_spaced_out_end_with_the_same_best_on_disk(dataset, tmp_path,
                                                                     monkeypatch):
    import orbax.checkpoint as ocp

    # ModelCheckpoint on val_loss at a small learning rate: a new best at most epochs
    run = tiny_run("c", epochs=12, lr=3e-3, hooks=C.HooksConfig(
        checkpoint=C.ModelCheckpoint("val_loss")))
    m = runner.Member(run, 0)
    save_best, saved = observers.CheckpointStore.save_best, []

    def counting(self, epoch, state, value):
        done = save_best(self, epoch, state, value)
        saved[-1] += done
        return done

    monkeypatch.setattr(observers.CheckpointStore, "save_best", counting)
    got = {}
    for every in (0.0, 3600.0):  # after every chunk; only close's
        monkeypatch.setattr(observers, "BEST_EVERY", every)
        saved.append(0)
        out = tmp_path / str(every)
        record, = runner.run_group([m], dataset, dataset.x_train.shape[0], out_dir=out,
                                   runs_dir=out / "runs", epochs_per_call=1, mesh=MESH,
                                   label="t", quiet=True)
        best = out / "runs" / "best" / m.id / "best"
        step, = [int(p.name) for p in best.iterdir() if p.name.isdigit()]
        got[every] = (step, record["best_epoch"], jax.tree.leaves(
            ocp.StandardCheckpointer().restore(best / str(step) / "state")))
    (s0, b0, w0), (s1, b1, w1) = got.values()
    assert s0 == s1 == b0 == b1  # the best epoch on disk in the end, and the record's
    assert all(np.array_equal(a, b) for a, b in zip(w0, w1))
    assert saved[1] == 1 < saved[0]  # ...with one save, at the end, instead of one a chunk


@pytest.mark.parametrize("behind", [1, loop.OBSERVERS_BEHIND, 3])
def test_observers_run_in_order_a_few_chunks_behind_and_their_error_stops_training(dataset,
                                                                                    behind):
    import threading

    runs = [tiny_run("r", epochs=12)]
    group = build_group(runs, dataset, mesh=MESH)
    seen, steps, called = [], [], threading.Condition()
    step = group.step

    def counting(state, data):
        with called:
            steps.append(len(seen))  # how many chunks the observers had finished by then
            called.notify_all()
        return step(state, data)

    def observe(state, histories, chunk):
        # The observer of chunk i ends only once training has gone `behind` chunks past it,
        # as far as it may: a slow observer, without timing anything.
        i = len(seen)
        if i == 3:
            return  # queued behind the failing one: training stops without more chunks
        with called:
            assert called.wait_for(lambda: len(steps) >= i + 1 + behind, timeout=60)
        seen.append([e for _, e in chunk])
        assert len(histories[0]["epoch"]) == chunk[-1][1] + 1  # a copy as of its chunk
        if len(seen) == 3:
            raise RuntimeError("disk full")

    group = group._replace(step=counting)
    with pytest.raises(RuntimeError, match="disk full"):
        loop.fit_group(group, dataset, observe=observe, behind=behind)
    assert seen == [[0], [1], [2]]  # every chunk, in order
    # training stopped at most `behind` chunks after the failing (third) observer...
    assert len(steps) <= 3 + behind
    # ...and never ran more than `behind` chunks ahead of the observers
    assert all(i - done <= behind for i, done in enumerate(steps))
    assert any(i - done == behind for i, done in enumerate(steps))  # and did run that far
    with pytest.raises(ValueError, match="behind=0"):
        loop.fit_group(group, dataset, observe=observe, behind=0)


def test_fit_group_can_leave_its_last_observers_running_to_the_caller(dataset):
    import threading
    from concurrent.futures import ThreadPoolExecutor

    # Three chunks of one epoch, with room for three observers behind: none finishes before
    # training has returned, none is waited for.
    group = build_group([tiny_run("r", epochs=3)], dataset, mesh=MESH)
    gate, seen = threading.Event(), []

    def observe(state, histories, chunk):
        assert gate.wait(60)  # held until training has returned
        seen.extend(e for _, e in chunk)

    with ThreadPoolExecutor(1) as worker:
        left = []
        state, histories = loop.fit_group(group, dataset, observe=observe, worker=worker,
                                          behind=3, leave=left)
        assert len(histories[0]["epoch"]) == 3 and seen == []  # returned before any observer
        assert len(left) == 3 and not any(f.done() for f in left)
        gate.set()
        for f in left:
            f.result()
    assert seen == [0, 1, 2]  # every chunk observed, in order
    with pytest.raises(ValueError, match="leave"):
        loop.fit_group(group, dataset, observe=observe, leave=[])  # no worker to leave them on


def test_a_last_observer_that_fails_on_the_io_thread_leaves_no_records(dataset, tmp_path,
                                                                      monkeypatch):
    # The group's last observers finish on the writer thread after run_group has returned;
    # one that fails there fails the group's closing write: no model, no member record.
    m = runner.Member(tiny_run("r", epochs=2), 0)
    calls, call = [], observers.GroupObserver.__call__

    def failing_last(self, state, histories, chunk):
        calls.append(chunk)
        if len(calls) == 2:
            raise OSError("disk full")
        return call(self, state, histories, chunk)

    monkeypatch.setattr(observers.GroupObserver, "__call__", failing_last)
    io = runner.IOThread()
    runner.run_group([m], dataset, dataset.x_train.shape[0], out_dir=tmp_path,
                     runs_dir=tmp_path / "runs", epochs_per_call=1, mesh=MESH, label="t",
                     quiet=True, io=io)
    with pytest.raises(OSError, match="disk full"):
        io.close()
    assert not runner.member_path(tmp_path, m).exists()
    assert not runner.model_path(tmp_path / "runs", m).exists()


def test_a_stopped_member_stops_changing(dataset):
    runs = members_with_their_own_hooks()
    group = build_group(runs, dataset, mesh=MESH)
    state, _ = loop.fit_group(group, dataset)
    first = jax.device_get(state)
    more, rec = group.step(state, dataset)  # every member has stopped: nothing may move
    assert not np.asarray(rec["ran"]).any()
    for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(jax.device_get(more))):
        np.testing.assert_array_equal(a, b)


class _Toy(NamedTuple):
    active: object
    x: object


def test_a_stopped_member_costs_nothing_where_members_run_one_at_a_time():
    # The member loop (lax.map) branches on each member's activity: a stopped member's epoch is
    # never executed (its callback never fires) and its state and record pass through.
    executed = []

    def run_epoch(state, data):
        jax.debug.callback(lambda x: executed.append(float(x)), state.x, ordered=False)
        new = state._replace(x=state.x + data)
        return new, {"metrics": jnp.stack([new.x, new.x]), "ran": state.active}

    one = group_module._skipping_stopped(run_epoch)
    states = _Toy(active=jnp.array([True, False, True]), x=jnp.array([1.0, 2.0, 3.0]))
    out, rec = jax.jit(lambda s: jax.lax.map(lambda m: one(m, 10.0), s))(states)
    jax.effects_barrier()
    assert sorted(executed) == [1.0, 3.0]  # the stopped member never ran
    np.testing.assert_array_equal(out.x, [11.0, 2.0, 13.0])
    np.testing.assert_array_equal(rec["ran"], [True, False, True])
    np.testing.assert_array_equal(rec["metrics"][1], [0.0, 0.0])


@pytest.mark.parametrize("members, n", [("map", 4), ("map", 1), ("vmap", 4)])
def test_the_group_step_branches_on_activity_unless_vmapped(dataset, members, n):
    # Where members run one at a time the step skips stopped ones (a conditional in the
    # program); a vmapped group computes every member and masks the stopped ones.
    group = build_group(members_with_their_own_hooks()[:n], dataset, mesh=MESH, members=members)
    text = group.step.lower(init_group(group), dataset).as_text()
    assert ("stablehlo.case" in text) == (members == "map" or n == 1)


def test_once_computes_its_value_once_whichever_thread_asks_first():
    # A group's final evaluation: the compile pool or the main thread compiles it, never both.
    import threading
    from concurrent.futures import ThreadPoolExecutor

    calls, gate = [], threading.Event()

    def compile_final():
        calls.append(threading.current_thread().name)
        gate.wait(5)
        return "program"

    once = runner.Once(compile_final)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(once)
        while not calls:  # the pool has started it
            threading.Event().wait(0.01)
        second = pool.submit(once)  # asks while it is being computed: waits for that one
        gate.set()
        assert once() == first.result() == second.result() == "program"
    assert len(calls) == 1

    def broken():
        calls.append("broken")
        raise RuntimeError("no such option")

    failing = runner.Once(broken)
    for _ in range(2):  # the error of the one call, to every caller
        with pytest.raises(RuntimeError, match="no such option"):
            failing()
    assert calls.count("broken") == 1


def test_several_epochs_per_call_give_the_same_results_as_one(dataset):
    runs = members_with_their_own_hooks()
    _, one, s1 = fit_group(runs, dataset, epochs_per_call=1)
    _, four, s4 = fit_group(runs, dataset, epochs_per_call=4)
    # Bitwise on one device. On several, XLA partitions the 4-epoch program differently from
    # the 1-epoch one and may reorder a float sum: equal to float32 rounding (rtol 1e-6).
    rtol = 0 if MESH is None else 1e-6
    for h1, h4 in zip(one, four):
        assert h1["epoch"] == h4["epoch"]
        for key in METRICS:
            np.testing.assert_allclose(h1[key], h4[key], rtol=rtol, atol=0)
    for split in s1:
        np.testing.assert_allclose(s1[split], s4[split], rtol=rtol, atol=0)


def test_an_unrolled_loop_over_batches_trains_the_same_computation(dataset):
    runs = members_with_their_own_hooks()
    _, one, s1 = fit_group(runs, dataset)
    _, four, s4 = fit_group(runs, dataset, unroll=4)  # 4 does not divide the 6 batches
    # XLA fuses the unrolled steps differently: equal to float32 rounding, not bit for bit
    # (here up to 2 ulp of the loss), and every hook decides the same.
    for h1, h4 in zip(one, four):
        assert h1["epoch"] == h4["epoch"] and h1["learning_rate"] == h4["learning_rate"]
        for key in METRICS:
            np.testing.assert_allclose(h1[key], h4[key], rtol=1e-6, atol=0)
    for split in s1:
        np.testing.assert_allclose(s1[split], s4[split], rtol=1e-6, atol=0)


if MESH is None:  # this module again on 4 forced devices, started as soon as tests are collected
    conftest.background("runner-four", [
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__,
        "-k", "solo_results or stops_changing or per_call or members_are_split or "
        "several_devices"],
        conftest.four_devices_env())


@pytest.mark.skipif(MESH is not None, reason="already on several devices")
@pytest.mark.background("runner-four")
def test_equivalence_on_four_devices():
    proc = conftest.background_result("runner-four")
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "8 passed" in proc.stdout


@pytest.mark.skipif(MESH is None, reason="needs several devices (run by the test above)")
def test_members_are_split_over_the_devices(dataset):
    runs = members_with_their_own_hooks()
    group = build_group(runs, dataset, mesh=MESH, shard="members")
    state, _ = group.step(init_group(group), dataset)
    kernel = state.params["dense_0"]["kernel"]
    assert kernel.sharding.spec[0] == "data"  # the member axis
    assert {s.data.shape[0] for s in kernel.addressable_shards} == {len(runs) // MESH.size}
    # Compiled ahead of time as a sweep does: the step takes its own output back, and the
    # final evaluation the trained state (both failed on the shardings when compiled for an
    # initial state that was not split by member).
    compiled = compile_group(group, init_group(group), dataset)
    state, _ = compiled.step(init_group(group), dataset)
    state, _ = compiled.step(state, dataset)
    _, scores = jax.device_get(compiled.final(state, dataset))
    assert np.all(np.isfinite(scores["test"][0]))
    with pytest.raises(ValueError, match="cannot be split evenly"):
        build_group(runs[:3], dataset, mesh=MESH, shard="members")


@pytest.mark.skipif(MESH is None, reason="needs several devices (run by the test above)")
def test_a_checkpoint_resumes_on_several_devices(dataset, tmp_path):
    # A restored state lands where the group trains it (Group.state_sharding as the template's
    # placement): restored onto one device, it crashed the step compiled for the mesh.
    for shard in ("batch", "members"):
        group = build_group(members_with_their_own_hooks(), dataset, mesh=MESH, shard=shard)
        compiled = compile_group(group, init_group(group), dataset)
        state, _ = compiled.step(init_group(group), dataset)
        store = observers.CheckpointStore(tmp_path / shard)
        store.save_latest(1, state)
        _, restored, _ = store.restore_latest(init_group(group))
        store.close()
        a, _ = compiled.step(state, dataset)
        b, _ = compiled.step(restored, dataset)
        for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
            assert np.array_equal(x, y), shard


@pytest.mark.skipif(MESH is None, reason="needs several devices (run by the test above)")
def test_an_interrupted_fit_resumes_bit_for_bit_on_several_devices(tmp_path, monkeypatch):
    import jaxmlp
    from jaxmlp import callbacks as CB

    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 10)).astype(np.float32)
    y = np.argmax(x[:, :4], 1)
    kw = dict(model=jaxmlp.MLP(hidden=(16,), dropout=0.2), epochs=6, batch_size=64, verbose=0,
              validation_split=0.2)
    whole = jaxmlp.fit(x, y, **kw)
    written = CB.Effects.epoch

    def interrupted(self, epoch, row, state):
        written(self, epoch, row, state)
        if epoch == 2:
            raise RuntimeError("interrupted")

    backup = [jaxmlp.BackupAndRestore(tmp_path / "bk")]
    with monkeypatch.context() as m:
        m.setattr(CB.Effects, "epoch", interrupted)
        with pytest.raises(RuntimeError, match="interrupted"):
            jaxmlp.fit(x, y, **kw, callbacks=backup)
    assert jaxmlp.fit(x, y, **kw, callbacks=backup).history == whole.history


# --- Exact resume after kill -9 ----------------------------------------------------------------

RESUMABLE = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    sys.path.insert(0, "tests")
    import test_runner as T
    from jaxmlp import observers, runner
    from jaxmlp.epoch import Data, device_data
    out, kill_after = Path(sys.argv[1]), int(sys.argv[2])
    if kill_after and sys.argv[3:] == ["before-logs"]:  # checkpoint saved, logs not yet written
        save = observers.CheckpointStore.save_latest
        def save_latest(self, epoch, *a, **k):
            save(self, epoch, *a, **k)
            if epoch == kill_after:
                self.wait()
                os.kill(os.getpid(), signal.SIGKILL)
        observers.CheckpointStore.save_latest = save_latest
    elif kill_after:  # a real SIGKILL right after the checkpoint of chunk `kill_after`
        call = observers.GroupObserver.__call__
        def observe(self, *a):
            call(self, *a)
            if self.calls == kill_after:
                self.ckpt.wait()
                os.kill(os.getpid(), signal.SIGKILL)
        observers.GroupObserver.__call__ = observe
    group = T.resumable_group()
    data = device_data(Data(*T.tiny_data()))
    records = runner.run_group(group, data, 200, out_dir=out, runs_dir=out / "runs",
                              epochs_per_call=1, mesh=None, label="t", quiet=True)
    for m, r in zip(group, records):
        runner.write_member(out, m, r)
""")


def resumable_group():
    hooks = C.HooksConfig(early_stopping=C.EarlyStopping(patience=10, restore_best_weights=True),
                          reduce_lr=C.ReduceLROnPlateau(factor=0.5, patience=1),
                          checkpoint=C.ModelCheckpoint())
    runs = [tiny_run("r", epochs=6, hooks=hooks, dropout=0.2, batch_norm=True)]
    return runner.members(runs, [0, 1])


def run_script(out: Path, kill_after: int, *mode: str) -> int:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    print(f"training the resumable group in {out.name}"
          + (f", killed after chunk {kill_after} {' '.join(mode)}" if kill_after else ""))
    return subprocess.run([sys.executable, "-c", RESUMABLE, str(out), str(kill_after), *mode],
                          cwd=ROOT, env=env, timeout=1800).returncode  # a hang guard only


def final_state(out: Path):
    group = resumable_group()
    template = init_states([m.run for m in group])
    with observers.CheckpointStore(out / "runs" / "checkpoints" / runner.group_id(group)) as store:
        epoch, state, extra = store.restore_latest(template)
    return epoch, state, extra


@conftest.runs_beside
def test_kill_9_twice_then_resume_is_bitwise_the_uninterrupted_run_and_logged_once(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert run_script(straight, 0) == 0
    # 1. Killed after the checkpoint of epoch 1 but before its logs: the logs are behind.
    assert run_script(killed, 2, "before-logs") == -signal.SIGKILL
    assert not (killed / "members").exists()  # nothing finished before the kill
    assert final_state(killed)[0] == 2
    # 2. Killed after epoch 3 was logged, and its checkpoint lost: the logs are ahead.
    assert run_script(killed, 4) == -signal.SIGKILL
    group_dir = killed / "runs" / "checkpoints" / runner.group_id(resumable_group())
    shutil.rmtree(group_dir / "latest" / "4")
    assert final_state(killed)[0] == 3
    assert run_script(killed, 0) == 0  # the same command again: resumes from epoch 3
    for seed in (0, 1):  # TensorBoard's own reader: every epoch exactly once
        steps = tensorboard_steps(killed / "runs" / "tb" / "r" / f"seed{seed}")
        assert steps[("validation", "epoch_loss")] == [0, 1, 2, 3, 4, 5]
        assert set(map(tuple, steps.values())) == {(0, 1, 2, 3, 4, 5)}, steps
    e1, s1, x1 = final_state(straight)
    e2, s2, x2 = final_state(killed)
    assert e1 == e2 == 6
    assert x1["histories"] == x2["histories"] or _same_but_time(x1, x2)
    for a, b in zip(jax.tree.leaves(s1), jax.tree.leaves(s2)):  # params, opt and hook state
        np.testing.assert_array_equal(a, b)
    for name in ("r__seed0.json", "r__seed1.json"):
        r1 = json.loads((straight / "members" / name).read_text())
        r2 = json.loads((killed / "members" / name).read_text())
        assert r2["resumed"] and not r1["resumed"]
        for key in ("epochs_run", "best_epoch", "final_lr", "lr_reductions", "train", "val",
                    "test"):
            assert r1[key] == r2[key]
    for seed in (0, 1):
        rows = [(p / "histories" / "r" / f"seed{seed}.csv").read_text().splitlines()
                for p in (straight, killed)]
        drop_time = lambda lines: [ln.split(",")[:2] + ln.split(",")[3:] for ln in lines]  # noqa
        assert drop_time(rows[0]) == drop_time(rows[1])


def _same_but_time(x1, x2) -> bool:
    strip = lambda hs: [{k: v for k, v in h.items() if k != "epoch_time_s"} for h in hs]  # noqa
    return strip(x1["histories"]) == strip(x2["histories"])


def tensorboard_steps(logdir: Path) -> dict:
    """{(split, tag): [step, ...]} as TensorBoard itself reads the event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = {}
    for split in ("train", "validation"):
        acc = EventAccumulator(str(logdir / split))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out[(split, tag)] = [e.step for e in acc.Scalars(tag)]
    return out



@pytest.mark.parametrize("name", ["p8d", "ta8"])
def test_committed_records_keep_their_fingerprints(name):
    """Config fields added later (output_clip) at their default leave every committed member's
    fingerprint as it was, so the committed results are not refused as stale."""
    import importlib

    from jaxmlp.experiments.cli import BUILTIN_CLASSES

    exp = importlib.import_module(f"jaxmlp.experiments.{name}").EXPERIMENT
    root = Path(__file__).resolve().parents[1] / "experiments" / name / "members"
    runs = [dataclasses.replace(r, model=dataclasses.replace(
        r.model, input_dim=C.INPUT_DIMS[r.train.dataset],
        num_classes=BUILTIN_CLASSES[r.train.dataset])) for r in exp.runs]
    checked = 0
    for run in runs:
        for m in runner.members([run], range(exp.more_seeds.get(run.name, exp.seeds))):
            record = json.loads((root / f"{m.id}.json").read_text())
            assert record["config_sha1"] == m.fingerprint, m.id
            checked += 1
    assert checked == sum(exp.more_seeds.get(r.name, exp.seeds) for r in exp.runs)
    assert checked == len(list(root.glob("*.json")))  # every committed record was checked
