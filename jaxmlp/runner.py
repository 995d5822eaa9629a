"""Experiments' runner: members (run x seed), groups, resume, the lock, the member records.

Each group of members that share shapes (`group.group_key`) trains as one compiled program;
`observers.GroupObserver` runs on the host after every chunk of `epochs_per_call` epochs. A
finished member writes `members/<run>__seed<k>.json`; a rerun skips finished groups and resumes
a partial one from its latest checkpoint. `Lock` keeps two invocations off one output root.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import os
import queue
import shutil
import sys
import threading
import time
from concurrent.futures import Future
from contextlib import contextmanager, nullcontext
from pathlib import Path

import jax
import numpy as np

from jaxmlp import atomic, observers
from jaxmlp import config as C
from jaxmlp import hooks as H
from jaxmlp.config import RunConfig
from jaxmlp.epoch import Data
from jaxmlp.group import build_group, compile_final, compile_group, group_key, init_group
from jaxmlp.loop import Result, fit_group, save_all
from jaxmlp.observers import abandoned_read, quiet_abandoned_reads  # noqa: F401 (re-exported)


class Clock:
    """Where an invocation's wall time goes: seconds per phase (load, compile, train, observe,
    eval, io), added up across groups. Thread-safe, since groups compile in parallel threads:
    `compile` sums the threads' compile times (their Python part and XLA's), which overlap each
    other and training; `compile_turns` sums what those threads waited for their turn to run
    the Python part (`Turns`: the earlier groups' Python part), and `compile_wait` is the part
    the main thread spent waiting for a program. Host-side timers only (each phase ends with a
    sync, so device time lands in the phase that waited for it)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._lock = threading.Lock()

    def add(self, phase: str, seconds: float) -> None:
        with self._lock:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds

    @contextmanager
    def __call__(self, phase: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(phase, time.perf_counter() - start)


def _clock(clock: Clock | None) -> Clock:
    return clock if clock is not None else Clock()


class ThreadCPU:
    """The process's CPU seconds by kind of thread, read from Linux's /proc at the end of an
    invocation: what `Clock`'s wall-time split cannot show. The observers' own thread is a small
    part of what checkpoints cost: Orbax hands the writing to TensorStore's pool
    (`ts_pool_worker`) and to threads of its own that have ended by then, and on a CPU every
    such second is taken from the cores that train.

    Kinds: the threads this package `mark`s (main, compile, io), XLA's compute threads
    (`tf_XLAEigen`, the CPU backend's), XLA's compiler threads (`llvm-worker`), TensorStore's
    (`ts_`), `other` live threads (unnamed ones: XLA's parallel compilation uses such threads
    while programs compile), and `ended`: the process total (`os.times`) less the threads
    alive when read and the marked threads that ended (`finish`): Orbax's per-save threads,
    XLA's compile threads that have finished, finished pools."""

    BY_NAME = (("tf_XLAEigen", "xla_compute"), ("llvm-worker", "compile"),
               ("ts_", "tensorstore"))

    def __init__(self, proc: Path = Path("/proc/self/task")):
        self.proc = proc
        self._kinds: dict[int, str] = {}
        self._finished: dict[str, float] = {}
        self._lock = threading.Lock()

    def mark(self, kind: str) -> None:
        """Count the calling thread's CPU under `kind`."""
        with self._lock:
            self._kinds[threading.get_native_id()] = kind

    def finish(self) -> None:
        """A marked thread about to end: keep its CPU seconds under its kind."""
        with self._lock:
            kind = self._kinds.pop(threading.get_native_id(), None)
            if kind is not None:
                self._finished[kind] = self._finished.get(kind, 0.0) + time.thread_time()

    def seconds(self) -> dict[str, float] | None:
        """{kind: CPU seconds, ..., "ended": s, "process": s}, kinds sorted; None where /proc
        has no per-thread times (not Linux)."""
        try:
            tasks = list(self.proc.iterdir())
        except OSError:
            return None
        tick = os.sysconf("SC_CLK_TCK")
        with self._lock:
            kinds, out = dict(self._kinds), dict(self._finished)
        for task in tasks:
            try:
                name = (task / "comm").read_text().strip()
                # Fields after the ")" closing the name: utime and stime are the 12th and 13th.
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # the thread ended meanwhile: its time is in "ended"
                continue
            kind = kinds.get(int(task.name)) or next(
                (k for prefix, k in self.BY_NAME if name.startswith(prefix)), "other")
            out[kind] = out.get(kind, 0.0) + (int(fields[11]) + int(fields[12])) / tick
        times = os.times()
        process = times.user + times.system
        out = dict(sorted(out.items()))
        out["ended"] = max(0.0, process - sum(out.values()))
        out["process"] = process
        return out


@dataclasses.dataclass(frozen=True)
class Member:
    """One run with one seed."""

    run: RunConfig
    seed: int

    @property
    def id(self) -> str:
        return f"{self.run.name}__seed{self.seed}"

    @property
    def fingerprint(self) -> str:
        """Changes whenever what this member trains changes (seed included); presentation
        (label, description, part) is not part of it."""
        return config_fingerprint(self.run, self.id)


PRESENTATION = ("label", "description", "part")


def config_fingerprint(run: RunConfig, member_id: str) -> str:
    """A short hash of what a member trains: its id and every config field but presentation."""
    cfg = {k: v for k, v in C.without_later_defaults(C.to_dict(run)).items()
           if k not in PRESENTATION}
    return hashlib.sha1(repr((member_id, cfg)).encode()).hexdigest()[:12]


class StaleResult(ValueError):
    """A finished member's record was trained with a different configuration."""


def members(runs, seeds) -> list[Member]:
    """Every run with every seed (the seed replaces run.train.seed)."""
    return [Member(dataclasses.replace(r, train=dataclasses.replace(r.train, seed=s)), s)
            for r in runs for s in seeds]


def groups(items: list[Member], engine: str, members: str | None = None) -> list[list[Member]]:
    """Members grouped by shapes (engine 'group') or one by one (engine 'solo'), stable order.
    `members`: the member axis the groups are for (`group.group_key`; default this backend's)."""
    if engine == "solo":
        return [[m] for m in items]
    out: dict[tuple, list[Member]] = {}
    for m in items:
        out.setdefault(group_key(m.run, members) + (m.run.train.epochs,), []).append(m)
    return list(out.values())


def group_id(group: list[Member]) -> str:
    """Stable name of a group: changes whenever any member's configuration changes."""
    text = repr([m.fingerprint for m in group])
    digest = hashlib.sha1(text.encode()).hexdigest()[:10]
    return f"{group[0].run.name}-{len(group)}-{digest}"


def shard_for(group: list[Member], mesh, shard: str) -> str:
    """What a group splits over the devices: its members when asked and they divide evenly,
    else the batch (data parallel)."""
    if shard == "members" and mesh is not None and len(group) % mesh.size == 0:
        return "members"
    return "batch"


class Turns:
    """Lets threads through a section one at a time, in a fixed order: `with turns(k):` waits
    until the sections of 0..k-1 have ended. A sweep's groups build, initialise, trace and
    lower their programs (Python, one thread at a time under its lock) in the order they will
    train, and compile (XLA, in parallel) as soon as that is done: with fifteen groups sharing
    the lock fairly, the first would be ready only when nearly all were; in turns it is ready
    first, and the rest are traced while it trains. Every k from 0 up must be entered (or
    `skip`ped) in turn, or the later ones wait forever: submit them to one FIFO pool in
    order."""

    def __init__(self):
        self._next, self._cond = 0, threading.Condition()

    @contextmanager
    def __call__(self, k: int):
        with self._cond:
            self._cond.wait_for(lambda: self._next >= k)
        try:
            yield
        finally:
            self.skip(k)

    def skip(self, k: int) -> None:
        with self._cond:
            self._next = max(self._next, k + 1)
            self._cond.notify_all()


def prepare(group: list[Member], data: Data, *, epochs_per_call: int, mesh,
            shard: str = "batch", clock: Clock | None = None,
            compiler_options: dict | None = None, unroll: int = 1, final: bool = True,
            turn=None):
    """Build, initialise and compile one group (thread-safe: groups compile in parallel).
    `final=False` leaves its final evaluation to `prepare_final`. `turn`: a context in which
    the Python part runs (a `Turns` slot); the XLA compile follows outside it."""
    clock, asked = _clock(clock), time.perf_counter()
    with turn if turn is not None else nullcontext():
        start = time.perf_counter()
        if turn is not None:
            clock.add("compile_turns", start - asked)  # waiting, not compiling
        built = build_group([m.run for m in group], data, epochs_per_call=epochs_per_call,
                            mesh=mesh, shard=shard_for(group, mesh, shard), unroll=unroll)
        state = init_group(built)
        lowered = built.step.lower(state, data)
    compiled = compile_group(built, state, data, compiler_options, final=final, lowered=lowered)
    jax.block_until_ready(state)
    clock.add("compile", time.perf_counter() - start)
    return compiled, state


def prepare_final(prepared: Future, data: Data, *, clock: Clock | None = None,
                  compiler_options: dict | None = None):
    """The final evaluation of a group, once its `prepare(..., final=False)` (a Future of the
    compiled group and state) is done. Shared with earlier groups of the same model and size."""
    compiled, state = prepared.result()
    with _clock(clock)("compile"):
        return compile_final(compiled, state, data, compiler_options).final


class Once:
    """`fn()` computed once, by whichever thread asks first: a pool thread that reaches the task,
    or the main thread that needs the value before the pool got to it (then it computes it
    itself instead of idling behind the queue). Later calls return the value, or raise the
    error, of that one call."""

    def __init__(self, fn):
        self._fn, self._lock, self._done, self._value, self._error = fn, threading.Lock(), \
            False, None, None

    def __call__(self):
        with self._lock:
            if not self._done:
                try:
                    self._value = self._fn()
                except BaseException as e:  # noqa: BLE001 - re-raised to every caller
                    self._error = e
                self._done = True
        if self._error is not None:
            raise self._error
        return self._value


class IOThread:
    """One host thread for a sweep's files: every group's observers (checkpoints, logs), then
    its closing writes (logs closed, finished models, member records), while the main thread
    goes on to train the next group. One thread, because Orbax saves from several threads at
    once race on their files; a member's record, which marks it done, comes after its model
    and its logs (one closing write does all three, in that order).

    Observers first: a queued observer (`submit`) runs before any queued closing write
    (`write`), each kind in the order it was queued. Training waits for its observers when they
    fall `loop.OBSERVERS_BEHIND` chunks behind, never for the previous group's closing writes,
    which run whenever no observer is waiting. (At 9973fdf, one queue in the order submitted,
    a warm TA8 sweep on an H200 spent 20 s of its 76 s waiting for observers, which could
    queue there behind the previous group's model saves.) The thread is a daemon: `close()`
    must be called, as the experiments' runner does whatever stops the sweep.

    `write(fn)` runs `fn()` there and keeps its future: `check()` raises the error of a write
    that has failed (before more training is spent), `close()` waits for every write and
    raises the first error. `submit` is the executor's (for `loop.fit_group`'s observers, whose
    errors it raises itself)."""

    OBSERVER, WRITE = 0, 1

    def __init__(self, clock: Clock | None = None, cpu: ThreadCPU | None = None):
        self._queue: queue.PriorityQueue = queue.PriorityQueue()
        self._cpu = cpu  # the thread counts its CPU seconds as "io" there
        self._order = itertools.count()  # first in, first out within a kind
        self._writes: list[Future] = []
        self._clock = _clock(clock)
        self._thread = threading.Thread(target=self._work, name="jaxmlp-io", daemon=True)
        self._thread.start()
        self._closed = False

    def _put(self, kind: int, fn, args, kwargs) -> Future:
        if self._closed:
            raise RuntimeError("IOThread: closed")
        future = Future()
        self._queue.put((kind, next(self._order), future, fn, args, kwargs))
        return future

    def _work(self) -> None:
        if self._cpu is not None:
            self._cpu.mark("io")
        while True:
            _, _, future, fn, args, kwargs = self._queue.get()
            if fn is None:
                if self._cpu is not None:
                    self._cpu.finish()
                return
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args, **kwargs)
            except BaseException as e:
                future.set_exception(e)
            else:
                future.set_result(result)

    def submit(self, fn, *args, **kwargs) -> Future:
        return self._put(self.OBSERVER, fn, args, kwargs)

    def write(self, fn) -> Future:
        def timed():
            with self._clock("io_thread"):
                fn()
        future = self._put(self.WRITE, timed, (), {})
        self._writes.append(future)
        return future

    def check(self) -> None:
        for f in self._writes:
            if f.done() and f.exception() is not None:
                raise f.exception()
        self._writes = [f for f in self._writes if not f.done()]

    def close(self, *, raise_errors: bool = True) -> None:
        """Wait for every write (in the main thread's "io"); raise the first error (unless
        another one is on its way already: `raise_errors=False`)."""
        with self._clock("io"):
            if not self._closed:
                self._closed = True
                self._queue.put((self.WRITE + 1, next(self._order), None, None, (), {}))
            self._thread.join()
        errors = [f.exception() for f in self._writes if f.exception() is not None]
        self._writes = []
        if errors and raise_errors:
            raise errors[0]


def run_group(group: list[Member], data: Data, n_train: int, *, out_dir: Path,
              runs_dir: Path, epochs_per_call: int, mesh, label: str, quiet: bool,
              prepared=None, final=None, clock: Clock | None = None,
              checkpoint_every: float | None = None, io: IOThread | None = None) -> list[dict]:
    """Train (or resume) one group; save each member's model, write its result record
    (`members/<id>.json`, after its model) and return the records.

    `prepared`: the group's (compiled group, initial state) from `prepare`; `final`: its final
    evaluation, or a `Once` of it (`prepare_final`), asked for only when training is done.

    `checkpoint_every`: None saves the resume checkpoint after every call; seconds (0 too)
    skip a save while the previous one is still being written or was under that long ago
    (`observers.CheckpointStore(min_interval=...)`). Resume is exact from any saved call.

    `io`: the observers run on that thread, and the closing writes are left to it (the records
    are returned before they are on disk; `io.close()` waits for them). Without it the
    observers have a thread of their own and the writes are done before returning."""
    clock = _clock(clock)
    compiled, state = prepared or prepare(group, data, epochs_per_call=epochs_per_call,
                                          mesh=mesh, clock=clock)
    histories = None
    ckpt = observers.CheckpointStore(checkpoint_dir(group, runs_dir), monitor="val_loss",
                                     mode="min", min_interval=checkpoint_every)
    observer = None

    def close(flush: bool):
        if observer is not None:  # the logs' last rows, the best checkpoints (unless failed)
            observer.close(flush=flush)
        ckpt.close()  # waits for the checkpoint writes still in flight

    try:
        with clock("io"):
            restored = ckpt.restore_latest(state)
        calls, resumed = 0, restored is not None
        if restored is not None:
            _, state, extra = restored
            histories, calls = extra["histories"], extra["calls"]
            if not quiet:
                print(f"{label} resumed after {calls} chunks", file=sys.stderr)
        with clock("io"):
            observer = observers.GroupObserver(group, ckpt, histories, calls,
                                               runs_dir=runs_dir, out_dir=out_dir, label=label,
                                               quiet=quiet)
        start = time.perf_counter()
        # With a writer thread, the last chunks' observers finish there while this thread goes
        # on (final evaluation, the next group); `finish` comes after them on that thread.
        last_observers = [] if io is not None else None
        state, histories = fit_group(compiled, data, state=state, histories=histories,
                                     observe=observer, clock=clock, worker=io,
                                     leave=last_observers)
        wall = time.perf_counter() - start
        if isinstance(final, Once):
            with clock("compile_wait"):
                final = final()
        with clock("eval"):
            kept, scores = jax.device_get((final or compiled.final)(state, data))
    except BaseException:
        with clock("io"):  # on the io thread if there is one: no Orbax saves side by side
            io.submit(close, False).result() if io is not None else close(False)
        raise
    with clock("io"):
        state = jax.device_get(state)
    records = [{**member_result(m, i, state, histories[i], scores, n_train, len(group), wall),
                "resumed": resumed} for i, m in enumerate(group)]

    def finish():
        try:  # done already (observers run first on the writer thread); raise their errors
            for future in last_observers or ():
                future.result()
        except BaseException:
            close(False)  # as when an observer fails during training: no records
            raise
        close(flush=True)
        save_models(runs_dir, group, kept, histories)
        for m, record in zip(group, records):
            write_member(out_dir, m, record)

    if io is None:
        with clock("io"):
            finish()
    else:
        io.write(finish)
    return records


def model_path(runs_dir: Path, m: Member) -> Path:
    """Where a finished member's final weights are, as a model `jaxmlp.load` reads."""
    return runs_dir / "models" / m.id


def save_models(runs_dir: Path, group: list[Member], kept, histories) -> None:
    """Each member's weights as its scores were computed with (the best epoch's where
    EarlyStopping restored them), saved with `jaxmlp.load`'s format (`loop.save_all`)."""
    save_all([(Result(m.run, *jax.tree.map(lambda a, i=i: np.asarray(a[i]), kept),
                      histories[i]), model_path(runs_dir, m)) for i, m in enumerate(group)])


def member_result(m: Member, i: int, state, history: dict, scores, n_train: int,
                  group_size: int, wall: float) -> dict:
    """The result record of one member (JSON-ready)."""
    h = H.summary(state.hooks)
    es_on, ckpt_on = bool(h.early_stopping[i]), bool(h.checkpoint[i])
    if es_on:
        best_epoch = int(h.es_best_epoch[i])
    elif ckpt_on:
        best_epoch = int(h.checkpoint_best_epoch[i])
    else:
        best_epoch = int(np.argmin(history["val_loss"]))
    epochs_run = len(history["epoch"])
    seconds = float(sum(history["epoch_time_s"]))
    split = {k: {"loss": float(v[0][i]), "accuracy": float(v[1][i])} for k, v in scores.items()}
    reason = divergence(bool(h.diverged[i]), history["loss"], m.run.model.num_classes)
    return {
        "seed": m.seed, "epochs_run": epochs_run, "best_epoch": best_epoch,
        "stopped_early": bool(h.stopped_early[i]), "diverged": reason is not None,
        "diverged_reason": reason,
        "final_lr": history["learning_rate"][-1], "lr_reductions": int(h.lr_reductions[i]),
        **split,
        "wall_time_s": seconds, "examples_per_s": epochs_run * n_train / max(seconds, 1e-9),
        "group_size": group_size, "group_wall_time_s": wall,
        "history_csv": f"histories/{m.run.name}/seed{m.seed}.csv",
    }


EXPLOSION = 10.0  # a final training loss above 10 x ln(classes) (uniform guessing) has diverged


def divergence(non_finite: bool, losses, num_classes: int) -> str | None:
    """Why a run counts as diverged, or None: the NaN guard stopped it (a non-finite loss), or
    its last training loss is finite but above EXPLOSION x ln(num_classes), ten times the loss
    of guessing uniformly (23.0 for 10 classes): a model that ends there has learnt nothing,
    however finite its numbers (Adam at lr 1e3 ends near 330)."""
    if non_finite:
        return "non-finite loss (NaN guard)"
    limit = EXPLOSION * math.log(num_classes)
    if losses and losses[-1] > limit:
        return f"training loss exploded to {losses[-1]:.4g} (> {limit:.3g} = {EXPLOSION:g} x " \
               f"ln {num_classes})"
    return None


def member_path(out_dir: Path, m: Member) -> Path:
    return out_dir / "members" / f"{m.id}.json"


def write_member(out_dir: Path, m: Member, record: dict) -> None:
    atomic.write_json(member_path(out_dir, m), {**record, "config_sha1": m.fingerprint})


def done(out_dir: Path, m: Member, *, warn=print) -> bool:
    """Whether `m` has a finished record in `out_dir`. An unreadable record is moved to
    `members/unreadable/` with one line said about it, and the member trains again; a record of
    a different configuration of the same run is an error (StaleResult), never silently reused
    (records without a fingerprint, written before it existed, are trusted)."""
    path = member_path(out_dir, m)
    if not path.exists():
        return False
    try:
        record = json.loads(path.read_text())
        if not isinstance(record, dict):
            raise ValueError(f"a JSON {type(record).__name__}, not an object")
    except (OSError, UnicodeDecodeError, ValueError) as e:
        dest = set_aside(path)
        warn(f"{path}: unreadable member record ({type(e).__name__}: "
             f"{observers.first_line(e, 200)}); moved to {dest}, the run trains again")
        return False
    stored = record.get("config_sha1")
    if stored is not None and stored != m.fingerprint:
        raise StaleResult(
            f"{path} was trained with a different configuration of run {m.run.name!r} (seed "
            f"{m.seed}) than the one asked for now; add --retrain to train it again, or write to "
            "another --out")
    return True


def set_aside(path: Path) -> Path:
    """Move `path` into `unreadable/` beside it, under a name not taken yet."""
    folder = path.parent / "unreadable"
    folder.mkdir(exist_ok=True)
    dest, n = folder / path.name, 0
    while dest.exists():
        n += 1
        dest = folder / f"{path.name}.{n}"
    os.replace(path, dest)
    return dest


def checkpoint_dir(group: list[Member], runs_dir: Path) -> Path:
    """Where `group`'s checkpoints are (`observers.CheckpointStore`'s folder)."""
    return runs_dir / "checkpoints" / group_id(group)


def has_checkpoint(group: list[Member], runs_dir: Path) -> bool:
    """Whether `runs_dir` holds a finished resume checkpoint of `group`."""
    return observers.CheckpointStore.has_latest(checkpoint_dir(group, runs_dir))


def discard_checkpoints(group: list[Member], runs_dir: Path) -> None:
    """Forget `group`'s checkpoints (its partial training), not its members' records."""
    shutil.rmtree(checkpoint_dir(group, runs_dir), ignore_errors=True)


def discard(group: list[Member], out_dir: Path, runs_dir: Path) -> None:
    """Forget everything trained for `group` (--retrain): its checkpoints, its members' records,
    history CSVs, TensorBoard logs and best checkpoints."""
    discard_checkpoints(group, runs_dir)
    for m in group:
        member_path(out_dir, m).unlink(missing_ok=True)
        (out_dir / "histories" / m.run.name / f"seed{m.seed}.csv").unlink(missing_ok=True)
        shutil.rmtree(runs_dir / "tb" / m.run.name / f"seed{m.seed}", ignore_errors=True)
        shutil.rmtree(runs_dir / "best" / m.id, ignore_errors=True)
        shutil.rmtree(model_path(runs_dir, m), ignore_errors=True)


def check_data(runs, x_train, labels, num_classes: int) -> None:
    """Before any training: every run's input_dim matches the features, and every label is an
    integer in [0, num_classes) of every run (out-of-range labels train to NaN silently)."""
    for run in runs:
        if run.model.input_dim != x_train.shape[1]:
            raise ValueError(f"run {run.name!r}: ModelConfig.input_dim={run.model.input_dim} but "
                             f"the data has {x_train.shape[1]} features per example; allowed: "
                             "input_dim equal to the data's")
        if run.model.num_classes < num_classes:
            raise ValueError(f"run {run.name!r}: ModelConfig.num_classes="
                             f"{run.model.num_classes} but the data has {num_classes} classes")
    for part, y in labels.items():
        y = np.asarray(y)
        if y.size and (y.dtype.kind not in "iu" or y.min() < 0 or y.max() >= num_classes):
            bad = y[(y < 0) | (y >= num_classes)] if y.dtype.kind in "iuf" else y
            raise ValueError(f"{part} labels: found {bad.flat[0].item()!r} ({y.dtype}); allowed "
                             f"integers in [0, {num_classes})")


class Locked(RuntimeError):
    """Another live process holds the output root."""


class Lock:
    """`<folder>/lock`, created with O_EXCL and holding the holder's pid, for the life of an
    invocation. A lock whose pid no longer runs (a killed process) is taken over."""

    def __init__(self, folder: Path, name: str = "lock"):
        self.path = Path(folder) / name

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                self.check()
                self._take_over()
                continue
            with os.fdopen(fd, "w") as f:
                f.write(f"{os.getpid()}\n")
            return self
        raise Locked(f"could not take the lock {self.path}; another process keeps taking it")

    def check(self) -> None:
        """Raise Locked if a live process holds the lock (without taking it or making any
        folder: a command refuses early, before the work that comes ahead of taking it)."""
        holder = self._holder()
        if holder is not None and _alive(holder):
            raise Locked(f"{self.path.parent} is in use by process {holder} (lock file "
                         f"{self.path}); wait for it to finish, or use another --out") from None

    def _holder(self) -> int | None:
        try:
            return int(self.path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None  # empty (its writer was killed between create and write) or gone

    def _take_over(self) -> None:
        """Remove a stale lock by renaming it first, so two takers cannot both remove a fresh
        one: only the rename of the stale file succeeds."""
        stale = self.path.with_name(f"{self.path.name}.stale.{os.getpid()}")
        try:
            os.replace(self.path, stale)
        except FileNotFoundError:
            return
        try:  # another taker's fresh lock was renamed in between: give it back
            pid = int(stale.read_text().split()[0])
            if _alive(pid):
                os.link(stale, self.path)
        except (OSError, ValueError, IndexError):
            pass
        stale.unlink(missing_ok=True)

    def __exit__(self, *exc):
        if self._holder() == os.getpid():
            self.path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # our own stale lock (a reused pid); nobody else can hold it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
