"""Observers: host-side effects after an epoch (checkpoints, history files, TensorBoard, progress).

They read the state and metrics they are given and never change the numbers. A leading member
axis (a vmapped group of runs) is just part of the pytree they save.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import shutil
import socket
import struct
import sys
import threading
import time
import traceback
import warnings
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxmlp import atomic, records
from jaxmlp import config as C
from jaxmlp import hooks as H


class CheckpointError(RuntimeError):
    """Checkpoints exist but none of them can be restored."""


class CheckpointStore:
    """The latest train state (for resume) and the best one by a metric, as Orbax checkpoints.

    Layout under `directory` (the standard `ocp.CheckpointManager` layout, one manager each):

        latest/<epoch>/state/            the pytree (`ocp.args.StandardSave`)
        latest/<epoch>/extra/metadata    the `extra` dict (`ocp.args.JsonSave`)
        best/<epoch>/state/              the best pytree so far
        best/<epoch>/extra/metadata      {"epoch": <epoch>, <monitor>: <value>}
        best/<epoch>/metrics/metrics     Orbax's copy of {<monitor>: <value>} for `best_fn`
        unreadable/<latest|best>-<epoch> steps moved aside when restore fell back past them

    Plain Orbax reads them back, e.g.
    `ocp.StandardCheckpointer().restore(directory / "latest" / "3" / "state", template)`.

    Two managers on purpose: one manager with `best_fn` and `max_to_keep` ranks every step by the
    metric and would delete the newest step whenever it is not among the best, losing the
    resume point. Each save is atomic: Orbax writes `<epoch>.orbax-checkpoint-tmp` and renames it
    to `<epoch>` only after every item is written, so a killed save leaves a tmp folder that
    `all_steps()` ignores and `cleanup_tmp_directories` removes. Restore still falls back to an
    older step when the newest cannot be read (files lost or truncated after the rename).
    """

    def __init__(self, directory, *, monitor: str = "val_loss", mode: str = "min",
                 keep_latest: int = 2, min_interval: float | None = None):
        if mode not in ("min", "max"):
            raise ValueError(f"mode={mode!r}: allowed 'min' or 'max'")
        if keep_latest < 1:
            raise ValueError(f"keep_latest={keep_latest}: must be at least 1")
        self.directory = Path(directory).absolute()
        self.monitor, self.mode = monitor, mode
        self._best_value: float | None = None
        # min_interval=None: every save_latest saves (waiting for the previous write to end).
        # A number: Orbax's ContinuousCheckpointingPolicy, which skips a save while the previous
        # one is still being written, or if the last was under `min_interval` s ago. Saves are
        # asynchronous either way (Orbax's default); on a GPU, where a chunk of epochs takes
        # less than writing the state, waiting for each write would double a sweep's time.
        policy = None
        if min_interval is not None:
            policy = ocp.checkpoint_managers.ContinuousCheckpointingPolicy(
                minimum_interval_secs=int(min_interval) or None)
        self.latest = ocp.CheckpointManager(
            self.directory / "latest", item_handlers=_item_handlers(),
            options=ocp.CheckpointManagerOptions(max_to_keep=keep_latest,
                                                 cleanup_tmp_directories=True,
                                                 save_decision_policy=policy))
        # best_mode defaults to 'max' in Orbax: always pass it. Only `best_fn` (not a
        # `preservation_policy=BestN`) makes Orbax write the metrics that ranking needs.
        self._set_aside_bad_metrics()
        self.best = ocp.CheckpointManager(
            self.directory / "best", item_handlers=_item_handlers(),
            options=ocp.CheckpointManagerOptions(
                max_to_keep=1, best_fn=lambda metrics: metrics[monitor], best_mode=mode,
                keep_checkpoints_without_metrics=False, cleanup_tmp_directories=True))

    def save_latest(self, epoch: int, state, extra: dict | None = None) -> bool:
        """Save `state` (any pytree) and a small JSON-able `extra` dict as step `epoch`; False
        where the `min_interval` policy skipped it."""
        newest = self.latest.latest_step()
        if newest is not None and epoch <= newest:
            # Orbax would skip this save silently (should_save is False for old steps).
            raise ValueError(f"save_latest(epoch={epoch}): {self.latest.directory} already holds "
                             f"epoch {newest}; restore_latest first or use a fresh directory")
        return bool(self.latest.save(epoch, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), extra=ocp.args.JsonSave(extra or {}))))

    def save_best(self, epoch: int, state, value: float) -> bool:
        """Save `state` if `value` beats the best seen (also across restarts); True if saved."""
        value = float(value)
        if not math.isfinite(value) or not self._improves(value):
            return False
        if epoch in self.best.all_steps():  # a replay after a fallback found a better value
            self.best.delete(epoch)
        # force: Orbax refuses steps older than its newest one, and a replay may produce them.
        self.best.save(epoch, force=True, metrics={self.monitor: value}, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            extra=ocp.args.JsonSave({"epoch": epoch, self.monitor: value})))
        self._best_value = value
        return True

    def _improves(self, value: float) -> bool:
        if self._best_value is None:
            step = self.best.best_step()
            metrics = self.best.metrics(step) if step is not None else None
            self._best_value = metrics[self.monitor] if metrics else None
        best = self._best_value
        return best is None or (value < best if self.mode == "min" else value > best)

    @staticmethod
    def has_latest(directory) -> bool:
        """Whether `directory` holds a finished resume save (Orbax's test: a save still being
        written is not one), without opening a store there (which would create folders)."""
        latest = Path(directory) / "latest"
        return latest.is_dir() and ocp.utils.any_checkpoint_step(latest) is not None

    def restore_latest(self, template):
        """(epoch, state, extra) from the newest readable step; None when there is no step."""
        return self._restore(self.latest, "latest", template)

    def restore_best(self, template):
        """(epoch, state, {"epoch", monitor}) of the best step; None when there is none."""
        return self._restore(self.best, "best", template)

    def _restore(self, manager, kind: str, template):
        manager.wait_until_finished()
        if manager is self.best:
            self._set_aside_bad_metrics()
        manager.reload()
        steps = sorted(manager.all_steps(), reverse=True)
        if not steps:
            return None
        # Abstract arrays: Orbax restores with the template's shapes, dtypes and shardings.
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        failed = []
        for step in steps:
            try:
                out = manager.restore(step, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(target), extra=ocp.args.JsonRestore()))
            except Exception as e:  # any unreadable step falls back to the one before
                failed.append(f"epoch {step}: {type(e).__name__}: {first_line(e)}")
                continue
            if failed:
                moved = self._set_aside(manager.directory, kind, steps[:len(failed)])
                manager.reload()
                warnings.warn(f"{kind} checkpoint(s) in {manager.directory} cannot be restored, "
                              f"restored epoch {step} instead and moved the unreadable ones to "
                              f"{moved}:\n  " + "\n  ".join(failed), stacklevel=3)
            return step, out["state"], dict(out["extra"] or {})
        raise CheckpointError(
            f"{len(steps)} {kind} checkpoint(s) in {manager.directory} and none can be restored "
            "(not starting over silently; delete the folder to start from scratch):\n  "
            + "\n  ".join(failed))

    def _set_aside(self, folder: Path, kind: str, steps) -> Path:
        """Move unreadable steps out of the manager's folder, so their epochs can be re-saved."""
        dest_folder = self.directory / "unreadable"
        dest_folder.mkdir(parents=True, exist_ok=True)
        for step in steps:
            dest, n = dest_folder / f"{kind}-{step}", 0
            while dest.exists():
                n += 1
                dest = dest_folder / f"{kind}-{step}.{n}"
            shutil.move(folder / str(step), dest)
        return dest_folder

    def _set_aside_bad_metrics(self) -> None:
        """Orbax reads every best step's metrics JSON when it opens or reloads the folder and
        raises on a truncated one (only a missing file is tolerated): move such steps aside."""
        bad = []
        for path in sorted((self.directory / "best").glob("*/metrics/metrics")):
            if not path.parent.parent.name.isdigit():  # a tmp folder of an unfinished save
                continue
            try:
                json.loads(path.read_text())
            except (OSError, ValueError) as e:
                bad.append((path.parent.parent.name, f"{type(e).__name__}: {e}"))
        if bad:
            moved = self._set_aside(self.directory / "best", "best", [step for step, _ in bad])
            warnings.warn(f"best checkpoint(s) with unreadable metrics moved to {moved}:\n  "
                          + "\n  ".join(f"epoch {step}: {why}" for step, why in bad),
                          stacklevel=3)

    def wait(self) -> None:
        """Block until async saves are on disk."""
        self.latest.wait_until_finished()
        self.best.wait_until_finished()

    def close(self) -> None:
        self.latest.close()  # close() waits for pending saves
        self.best.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _item_handlers():
    """Registering the handlers lets a fresh manager read metadata and restore by name."""
    return {"state": ocp.StandardCheckpointHandler(), "extra": ocp.JsonCheckpointHandler()}


def first_line(e: Exception, limit: int = 300) -> str:
    """The first line of an exception's message, at most `limit` characters (for one-line
    errors that quote Orbax's, TensorStore's or a file's own)."""
    text = str(e).strip()
    return text.splitlines()[0][:limit] if text else ""


class HistoryLog:
    """The per-epoch history as a Keras CSVLogger-style CSV, plus an optional JSON.

    CSV: first column `epoch` (0-based, as Keras writes it), then the metric names sorted, a
    missing value written `NA` (as Keras). Lines end in `\\n` (Keras uses the csv module's
    `\\r\\n`). JSON: `{"epoch": [...], "<metric>": [...], ...}`, NaN and missing as null. Both
    files are rewritten atomically on every append; they are tiny. `durable=False` skips the
    fsyncs on appends (a sweep's logs are rebuilt from the checkpoint after a crash); `close`
    then writes them durably once. With it, `min_interval` seconds skip the rewrite of an
    append that comes sooner than that after the last one (a GPU sweep's chunks of epochs come
    every fraction of a second); `close` writes what was skipped.
    """

    def __init__(self, csv_path, json_path=None, *, initial: dict | None = None,
                 durable: bool = True, min_interval: float = 0.0,
                 columns: list[str] | None = None, line_end: str = "\n",
                 separator: str = ","):
        """`columns`: the CSV's columns after `epoch` (default: every metric seen, sorted),
        `line_end` its lines' end and `separator` its cells' (`records.history_csv`); the JSON
        holds every metric."""
        self.columns, self.line_end, self.separator = columns, line_end, separator
        self.csv_path = Path(csv_path)
        self.json_path = Path(json_path) if json_path else None
        self.durable, self._unsynced = durable, False
        self.min_interval = 0.0 if durable else min_interval
        self._written = -math.inf
        self.rows: list[dict] = []
        if initial:
            names = [k for k in initial if k != "epoch"]
            for i, epoch in enumerate(initial["epoch"]):
                self.rows.append({"epoch": int(epoch), **{k: initial[k][i] for k in names}})

    def append(self, epoch: int, metrics: dict) -> None:
        """Record `epoch`; rows from this epoch on are replaced (a replay after a resume)."""
        self.extend([(epoch, metrics)])

    def extend(self, rows) -> None:
        """Record several `(epoch, metrics)` in one write of the files (a chunk of epochs)."""
        for epoch, metrics in rows:
            self.rows = [r for r in self.rows if r["epoch"] < epoch]
            self.rows.append({"epoch": int(epoch), **{k: float(v) for k, v in metrics.items()}})
        self._unsynced = not self.durable
        if time.monotonic() - self._written >= self.min_interval:
            self._write(self.durable)
            self._written = time.monotonic()

    def close(self) -> None:
        """Write the files durably if appends skipped the fsyncs."""
        if self._unsynced:
            self._write(True)
            self._unsynced = False

    @property
    def history(self) -> dict:
        """`{"epoch": [...], "<metric>": [...]}`, missing values as NaN (like `load`)."""
        return {k: [r.get(k, math.nan) for r in self.rows] for k in self._columns()}

    def _columns(self) -> list[str]:
        return ["epoch"] + sorted({k for r in self.rows for k in r if k != "epoch"})

    def _write(self, durable: bool = True) -> None:
        atomic.write_text(self.csv_path, records.history_csv(
            self.rows, self.columns, self.line_end, self.separator), durable=durable)
        if self.json_path:
            columns = self._columns()
            atomic.write_json(self.json_path, {k: [r.get(k) for r in self.rows] for k in columns},
                              durable=durable)

    @staticmethod
    def load(csv_path) -> dict:
        """Read a history CSV back as `{"epoch": [int...], "<metric>": [float...]}`."""
        return records.read_history(csv_path)


class TensorBoardLog:
    """Event files in Keras's TensorBoard layout, written with tensorboardX's protos (no
    TensorFlow).

    `val_<name>` goes to `<logdir>/validation` as tag `epoch_<name>`, every other metric to
    `<logdir>/train` as `epoch_<metric>` (`epoch_loss`, `epoch_learning_rate`, ...), so TensorBoard
    draws train and validation curves on one chart. Step = 0-based epoch. Histograms go to
    `train`, one per leaf, tagged with its path (`dense_0/kernel`).

    Each file is an `_EventFile` (synchronous, as tensorboardX's `EventsWriter`), not a
    `SummaryWriter`: that one runs a writer thread and a multiprocessing queue per folder, and
    a sweep of 99 members would run 198 of them (each scalar a lock handoff, ~1 ms apiece).
    """

    def __init__(self, logdir, *, flush_every: float = 0.0):
        """`flush_every`: seconds between flushes of the scalars (0: after every call); a
        sweep's logs are rebuilt from the checkpoint after a crash, so they need not be
        flushed at every chunk of epochs. A flush hands the file to the OS (a killed process
        loses nothing flushed); `close` also makes it durable (fsync)."""
        self.logdir = Path(logdir)
        self._writers = {}
        self.flush_every, self._flushed = flush_every, time.monotonic()

    def _writer(self, split: str):
        if split not in self._writers:
            folder = self.logdir / split
            folder.mkdir(parents=True, exist_ok=True)
            self._writers[split] = _EventFile(folder)
        return self._writers[split]

    def _add(self, split: str, summary, step: int) -> None:
        from tensorboardX.proto import event_pb2

        event = event_pb2.Event(summary=summary, step=int(step), wall_time=time.time())
        self._writer(split).write(event)

    def rewrite(self, history: dict | None) -> None:
        """Replace every event file with the epochs of `history` (`{"epoch": [...], ...}`).

        A resume calls this with the history restored from the checkpoint: epochs logged after
        that checkpoint by a killed process are dropped, and epochs the checkpoint holds but the
        killed process never logged are written, so each epoch is in the logs exactly once.
        """
        self.close()
        shutil.rmtree(self.logdir, ignore_errors=True)
        for i, epoch in enumerate((history or {}).get("epoch", [])):
            self.scalars(epoch, {k: v[i] for k, v in history.items()
                                 if k != "epoch"})

    def restart(self, step: int) -> None:
        """A resumed run's marker: TensorBoard's `SessionLog.START` at `step` in both folders,
        after which its reader (`purge_orphaned_data`, on by default) drops the events of steps
        >= `step` that earlier files hold (what a killed run logged past its last backup)."""
        from tensorboardX.proto import event_pb2

        for split in ("train", "validation"):
            self._writer(split).write(event_pb2.Event(
                step=int(step), wall_time=time.time(),
                session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START)))

    def scalars(self, epoch: int, metrics: dict) -> None:
        """One event per folder holding all of the epoch's values there (Keras writes one event
        per value; TensorBoard reads either the same). tensorboardX's `summary.scalar` is not
        used: its NumPy checks and one event per value made the scalars most of a sweep's
        writer thread (jaxmlp.bench.observer_cost)."""
        from tensorboardX.proto.summary_pb2 import Summary

        values = {}
        for name, value in metrics.items():
            split, base = ("validation", name[4:]) if name.startswith("val_") else ("train", name)
            values.setdefault(split, []).append(
                Summary.Value(tag=f"epoch_{base}", simple_value=float(value)))
        for split, these in values.items():
            self._add(split, Summary(value=these), epoch)
        if time.monotonic() - self._flushed >= self.flush_every:
            self.flush()

    def histograms(self, epoch: int, params) -> None:
        from tensorboardX.summary import histogram

        for path, leaf in jax.tree_util.tree_leaves_with_path(params):
            tag = jax.tree_util.keystr(path, simple=True, separator="/")
            values = np.asarray(leaf).astype(np.float64)  # bfloat16 and friends histogram too
            self._add("train", histogram(tag, values, _TF_BINS), epoch)
        self.flush()

    def flush(self) -> None:
        for writer in self._writers.values():
            writer.flush()
        self._flushed = time.monotonic()

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers = {}


_EVENT_FILES = itertools.count()


class _EventFile:
    """One TensorBoard event file, named and framed as tensorboardX's `EventsWriter` writes it
    (TFRecord: length, its masked CRC32C, the serialized `Event`, its masked CRC32C; a first
    event with the file version). tensorboardX's flush also fsyncs the file; here `flush` only
    hands the bytes to the OS and `close` fsyncs once (on a disk with slow fsyncs, one per file
    per flush made TensorBoard a sizeable share of a sweep's writer thread)."""

    def __init__(self, folder: Path):
        from tensorboardX.proto import event_pb2

        # One file per writer, never reopened: a second writer in the same second (a resumed
        # fit in the same process) got the same name and truncated the first file. The counter
        # keeps a process's files in the order they were made (TensorBoard reads by name).
        name = (f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}."
                f"{os.getpid()}.{next(_EVENT_FILES):06d}")
        self._file = open(folder / name, "xb")  # noqa: SIM115 (closed in close)
        self.write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

    def write(self, event) -> None:
        from tensorboardX.record_writer import masked_crc32c

        data = event.SerializeToString()
        header = struct.pack("Q", len(data))
        self._file.write(header + struct.pack("I", masked_crc32c(header)) + data
                         + struct.pack("I", masked_crc32c(data)))

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()


def _tensorflow_bins() -> list[float]:
    """tensorboardX SummaryWriter's default histogram edges (TensorFlow's): +-1e-12 growing by
    1.1 up to 1e20, and 0."""
    v, edges = 1e-12, []
    while v < 1e20:
        edges.append(v)
        v *= 1.1
    return [-e for e in reversed(edges)] + [0] + edges


_TF_BINS = _tensorflow_bins()


class Progress:
    """One line per epoch, `epoch 3/50  loss 0.4321  ...  val_loss 0.5012  lr 1.0e-03  2.1s`.

    Lines, never carriage returns, on a terminal or not: each epoch stays on screen and logs
    stay readable, and a chunk of k epochs prints k lines at once. `quiet` prints nothing.
    `stream=None` means the current `sys.stderr`.
    """

    def __init__(self, total_epochs: int, *, quiet: bool = False, stream=None, label: str = ""):
        self.total_epochs, self.quiet, self.stream = total_epochs, quiet, stream
        self.label = f"{label} " if label else ""

    def update(self, epoch: int, metrics: dict) -> None:
        """Print the 0-based `epoch` (shown 1-based, like Keras) and its metrics."""
        self.line(format_epoch(epoch, self.total_epochs, metrics))

    def line(self, text: str) -> None:
        if not self.quiet:
            print(f"{self.label}{text}", file=self.stream or sys.stderr, flush=True)


def format_epoch(epoch: int, total: int, metrics: dict) -> str:
    """Training metrics, then `val_*`, then the learning rate and the epoch's seconds."""
    shown = [k for k in metrics if k not in ("learning_rate", "epoch_time_s")]
    shown.sort(key=lambda k: k.startswith("val_"))  # stable: keeps the given order otherwise
    parts = [f"epoch {epoch + 1}/{total}"] + [f"{k} {float(metrics[k]):.4f}" for k in shown]
    if "learning_rate" in metrics:
        parts.append(f"lr {float(metrics['learning_rate']):.1e}")
    if "epoch_time_s" in metrics:
        parts.append(f"{float(metrics['epoch_time_s']):.1f}s")
    return "  ".join(parts)


# Seconds between a sweep group's rounds of best-checkpoint saves (ModelCheckpoint). Each is an
# Orbax save per member whose monitored value improved: on a GPU, where a chunk of P8D epochs
# takes ~0.5 s, saving after every chunk kept the observer thread busier than training (9.2 s
# against 5.1 s on an H200, 15 of its 35 members checkpointing). The best weights themselves are
# kept in the train state by the hooks, every epoch, and resume with it; only their copy on disk
# waits (the first round too: none at the first chunk), and `close` writes the last one. 30 s:
# a GPU sweep's group, which trains for seconds, then saves each best once, at its end (P8D's
# 15 checkpointing members: 15 Orbax saves instead of 15 a round), and a CPU sweep's copy on
# disk is at most half a minute behind. (`jaxmlp.fit` saves every improvement, as Keras does.)
BEST_EVERY = 30.0


class GroupObserver:
    """A sweep group's effects after each chunk of epochs: the group's latest checkpoint (state
    and histories, for exact resume), each member's history CSV, TensorBoard scalars and best
    checkpoint (at most every `best_every` s, default BEST_EVERY, and at `close`), and one
    progress line. `members` have `.run`, `.seed` and `.id`."""

    def __init__(self, members, ckpt: CheckpointStore, histories, calls: int, *, runs_dir: Path,
                 out_dir: Path, label: str, quiet: bool, best_every: float | None = None):
        self.members, self.ckpt = members, ckpt
        self.best_every = BEST_EVERY if best_every is None else best_every
        # The first round of best saves comes `best_every` s in, not at the first chunk, whose
        # every checkpointing member has a "best" that later chunks will replace.
        self._best_at, self._hooks = time.monotonic(), None  # last best-save round; newest hooks
        # Logs are rebuilt from the checkpoint on resume: no fsync or flush at every chunk.
        self.logs = [HistoryLog(out_dir / "histories" / m.run.name / f"seed{m.seed}.csv",
                                initial=histories[i] if histories else None, durable=False,
                                min_interval=5.0)
                     for i, m in enumerate(members)]
        self.tb = [TensorBoardLog(runs_dir / "tb" / m.run.name / f"seed{m.seed}",
                                  flush_every=5.0) for m in members]
        for i, tb in enumerate(self.tb):  # exactly once: the logs hold what the checkpoint holds
            tb.rewrite(histories[i] if histories else None)
        self.best = {i: CheckpointStore(runs_dir / "best" / m.id,
                                        monitor=m.run.hooks.checkpoint.monitor,
                                        mode=_mode(m.run.hooks.checkpoint))
                     for i, m in enumerate(members) if m.run.hooks.checkpoint is not None}
        self.saved_best = {i: -1 for i in self.best}
        self.label, self.quiet, self.calls = label, quiet, calls
        self.reported: set[int] = set()  # members whose divergence was announced
        done = max((len(h["epoch"]) for h in histories), default=0) if histories else 0
        self.heartbeat = Heartbeat(label, f"training epoch {done + 1}", quiet=quiet)

    def __call__(self, state, histories, chunk):
        self.calls += 1
        self.ckpt.save_latest(self.calls, state, extra={"histories": histories,
                                                        "calls": self.calls})
        # Host copies of what the rest reads (device ops here would queue behind the chunk that
        # trains meanwhile, jaxmlp.loop.fit_group); the hooks' copies of the weights only when a
        # best checkpoint is due.
        hooks, active = jax.device_get((H.with_weights(state.hooks, None), state.active))
        epochs = {}
        for m, epoch in chunk:
            epochs.setdefault(m, []).append(epoch)
        for m, those in epochs.items():
            rows = [(e, {k: histories[m][k][e] for k in histories[m] if k != "epoch"})
                    for e in those]
            self.logs[m].extend(rows)
            for epoch, row in rows:
                self.tb[m].scalars(epoch, row)
        self._hooks = state.hooks
        if time.monotonic() - self._best_at >= self.best_every:
            self._save_best(H.summary(hooks), state.hooks)
        self._progress(H.summary(hooks), np.asarray(active), histories, chunk)

    def _save_best(self, s, device_hooks):
        due = [i for i in self.best if int(s.checkpoint_best_epoch[i]) > self.saved_best[i]]
        if not due:
            return
        self._best_at = time.monotonic()
        # Summary.checkpoint_weights, read directly: H.summary would run its arithmetic on the
        # device, behind the chunk in flight.
        weights = jax.device_get(device_hooks.best.best_weights)
        for i in due:
            epoch = int(s.checkpoint_best_epoch[i])
            self.best[i].save_best(epoch, jax.tree.map(lambda a, i=i: a[i], weights),
                                   float(s.checkpoint_best[i]))
            self.saved_best[i] = epoch

    def _progress(self, s, active, histories, chunk):
        if self.quiet or not chunk:
            return
        for i in np.flatnonzero(s.diverged):
            if int(i) not in self.reported:
                self.reported.add(int(i))
                m = self.members[i]
                print(f"{self.label} DIVERGED: {m.run.name} seed {m.seed} (non-finite loss at "
                      f"epoch {len(histories[i]['epoch'])}); it stops here", file=sys.stderr,
                      flush=True)
        text = progress_text(histories, chunk, active, [m.run.train.epochs for m in self.members])
        print(f"{self.label} {text}", file=sys.stderr, flush=True)
        self.heartbeat.beat(next_status(chunk, active))

    def close(self, flush: bool = True):
        """Close the logs and checkpoint stores; with `flush`, first save the best checkpoints
        that the `best_every` spacing left for later (not after a failure)."""
        if flush and self._hooks is not None and self.best:
            hooks = jax.device_get(H.with_weights(self._hooks, None))
            self._save_best(H.summary(hooks), self._hooks)
        self.heartbeat.stop()
        for log in self.logs:
            log.close()
        for tb in self.tb:
            tb.close()
        for store in self.best.values():
            store.close()


class Heartbeat:
    """A line every `every` seconds while nothing else is printed (a long epoch), so a run is
    never silent for long: `[label] training epoch 4 (15 s)`."""

    def __init__(self, label: str, status: str, *, quiet: bool, every: float = 5.0):
        self.label, self.status, self.every = label, status, every
        self.since = self.last = time.monotonic()
        self._stop = threading.Event()
        self._thread = None
        if not quiet:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()

    def beat(self, status: str) -> None:
        """Something was just printed; `status` is what runs next."""
        self.status, self.since = status, time.monotonic()
        self.last = self.since

    def _run(self):
        while not self._stop.wait(1.0):
            now = time.monotonic()
            if now - self.last >= self.every:
                self.last = now
                print(f"{self.label} {self.status} ({now - self.since:.0f} s)", file=sys.stderr,
                      flush=True)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def next_status(chunk, active) -> str:
    """What the group does after this chunk, for the heartbeat: the next epoch while a member
    is active, else the final evaluation and the saving of its models."""
    if not active.any():
        return "final evaluation, saving the models"
    return f"training epoch {max(e for _, e in chunk) + 2}"


def progress_text(histories, chunk, active, max_epochs) -> str:
    """`epoch 3/50: 4/5 active, val_accuracy mean 0.8512, 2.10 s/epoch, at most 1m41s left`;
    `epoch 12/50: done` once every member has stopped (never `0/n active`)."""
    last = max(e for _, e in chunk)
    val_acc = [h["val_accuracy"][-1] for h in histories if h.get("val_accuracy")]
    secs = histories[chunk[-1][0]]["epoch_time_s"][-1]
    head = f"epoch {last + 1}/{max(max_epochs)}:"
    acc = f"val_accuracy mean {np.mean(val_acc):.4f}, " if val_acc else ""
    if not active.any():
        return f"{head} done, {acc}{secs:.2f} s/epoch"
    left = max(n - len(h["epoch"]) for n, h, a in zip(max_epochs, histories, active) if a)
    return (f"{head} {int(active.sum())}/{len(active)} active, {acc}{secs:.2f} s/epoch, "
            f"at most {duration(left * secs)} left")


def duration(seconds: float) -> str:
    """`45s`, `3m05s`, `2h01m`."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    return f"{s // 60}m{s % 60:02d}s" if s < 3600 else f"{s // 3600}h{s % 3600 // 60:02d}m"


def _mode(cfg) -> str:
    return "min" if C.monitor_sign(cfg.monitor, cfg.mode) > 0 else "max"


def abandoned_read(unraisable) -> bool:
    """Whether an error `sys.unraisablehook` got is the echo of an Orbax restore that has already
    failed, with its own error (the steps it could not read) raised to its caller. Orbax runs a
    restore's reads in an event loop it closes as soon as the first read fails
    (`asyncio_utils.run_sync`); the other reads, still in TensorStore's threads, then fail to
    hand their results to the closed loop ("Event loop is closed", one traceback each), and
    their coroutines, closed unfinished when collected, raise from GeneratorExit. A bad
    checkpoint gave hundreds of such tracebacks, more or fewer from one run to the next.
    Nothing waits for those reads, so nothing is lost by not printing them."""
    exc = unraisable.exc_value
    if isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed":
        frames = [f.name for f in traceback.extract_tb(unraisable.exc_traceback)]
        return frames[-2:] == ["call_soon_threadsafe", "_check_closed"]
    code = getattr(unraisable.object, "cr_code", None)  # a coroutine being closed
    return (code is not None and f"{os.sep}orbax{os.sep}" in code.co_filename
            and isinstance(getattr(exc, "__cause__", None) or getattr(exc, "__context__", None),
                           GeneratorExit))


def quiet_abandoned_reads() -> None:
    """Leave out the `abandoned_read` echoes from this process's output (once per process;
    every other unraisable error goes to the hook that was there)."""
    hook = sys.unraisablehook
    if getattr(hook, "jaxmlp_abandoned_reads", False):
        return

    def filtered(unraisable):
        if not abandoned_read(unraisable):
            hook(unraisable)

    filtered.jaxmlp_abandoned_reads = True
    sys.unraisablehook = filtered
    logging.getLogger("asyncio").addFilter(_abandoned_read_log)


def _abandoned_read_log(record) -> bool:
    """The same echoes through asyncio's logger, when the abandoned reads are collected: "Task
    exception was never retrieved" for one of Orbax's read coroutines, "Future exception was never
    retrieved" for an exception raised in Orbax's code or handed over by TensorStore (C++, so no
    Python frames: its error text names the `tensorstore_spec` it failed on). Nothing waits
    for those reads; the restore's own error has gone to its caller."""
    exc = record.exc_info[1] if record.exc_info else None
    if exc is None or not str(record.msg).startswith(("Future exception was never retrieved",
                                                      "Task exception was never retrieved")):
        return True
    frames = traceback.extract_tb(exc.__traceback__)
    from_orbax = any(f"{os.sep}orbax{os.sep}" in f.filename for f in frames)
    from_tensorstore = not frames and "tensorstore_spec" in str(exc)
    return not (from_orbax or from_tensorstore)
