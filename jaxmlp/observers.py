"""Observers: host-side effects after an epoch (checkpoints, history files, TensorBoard, progress).

They read the state and metrics and never change the numbers.
"""

from __future__ import annotations

import csv
import io
import math
import sys
import warnings
from pathlib import Path

import orbax.checkpoint as ocp

from jaxmlp import atomic


class CheckpointError(RuntimeError):
    """Checkpoints exist but none of them can be restored."""


class CheckpointStore:
    """The latest train state (for resume) and the best weights, as standard Orbax checkpoints.

    Layout: `<dir>/latest/<step>/{state,extra}` and `<dir>/best/<step>/{state,extra}`, one
    `ocp.CheckpointManager` each. Two managers on purpose: one manager with `best_fn` and
    `max_to_keep` keeps the best steps and may delete the latest one, which resume needs.
    Orbax writes each step into a temporary folder and renames it when complete, so a killed
    save leaves no half-written step behind; `restore_latest` still falls back to the previous
    step if the newest cannot be read (two latest steps are kept for that).
    """

    def __init__(self, directory, *, monitor: str = "val_loss", mode: str = "min",
                 keep_latest: int = 2):
        if mode not in ("min", "max"):
            raise ValueError(f"mode={mode!r}: allowed 'min' or 'max'")
        self.directory = Path(directory).absolute()
        self.monitor, self.mode = monitor, mode
        self.latest = ocp.CheckpointManager(
            self.directory / "latest",
            options=ocp.CheckpointManagerOptions(max_to_keep=keep_latest, create=True,
                                                 cleanup_tmp_directories=True))
        # Orbax's best_mode defaults to 'max': say the direction explicitly.
        self.best = ocp.CheckpointManager(
            self.directory / "best",
            options=ocp.CheckpointManagerOptions(
                max_to_keep=1, create=True, best_fn=lambda m: m[monitor], best_mode=mode,
                keep_checkpoints_without_metrics=False, cleanup_tmp_directories=True))
        self._best_value = None

    def save_latest(self, step: int, state, extra: dict | None = None) -> None:
        self.latest.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), extra=ocp.args.JsonSave(extra or {})))

    def save_best(self, step: int, weights, value: float) -> bool:
        """Save `weights` if `value` beats the best seen by this store; returns whether saved."""
        if self._best_value is None and self.best.latest_step() is not None:
            self._best_value = self._read_best_value()
        better = self._best_value is None or (
            value < self._best_value if self.mode == "min" else value > self._best_value)
        if not better or not math.isfinite(value):
            return False
        self._best_value = value
        self.best.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(weights),
            extra=ocp.args.JsonSave({"epoch": step, self.monitor: value})),
            metrics={self.monitor: value})
        return True

    def _read_best_value(self):
        step = self.best.latest_step()
        extra = self.best.restore(step, args=ocp.args.Composite(extra=ocp.args.JsonRestore()))
        return extra["extra"].get(self.monitor)

    def restore_latest(self, template):
        """(step, state, extra) from the newest readable checkpoint; None if there is none."""
        return self._restore(self.latest, template)

    def restore_best(self, template):
        return self._restore(self.best, template)

    def _restore(self, manager, template):
        manager.reload()
        steps = sorted(manager.all_steps(), reverse=True)
        if not steps:
            return None
        errors = []
        for step in steps:
            try:
                out = manager.restore(step, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(template), extra=ocp.args.JsonRestore()))
                return step, out["state"], dict(out["extra"] or {})
            except Exception as e:  # noqa: BLE001 - any unreadable step falls back
                errors.append(f"step {step}: {type(e).__name__}: {e}")
                warnings.warn(f"checkpoint {manager.directory}/{step} unreadable, falling "
                              f"back to an older one ({type(e).__name__})", stacklevel=2)
        raise CheckpointError(f"no checkpoint in {manager.directory} can be restored; delete "
                              "the folder to start over:\n  " + "\n  ".join(errors))

    def wait(self) -> None:
        self.latest.wait_until_finished()
        self.best.wait_until_finished()

    def close(self) -> None:
        self.wait()
        self.latest.close()
        self.best.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class HistoryLog:
    """A Keras CSVLogger-style history (epoch first, then sorted keys) plus an optional JSON."""

    def __init__(self, csv_path, json_path=None, initial: dict | None = None):
        self.csv_path = Path(csv_path)
        self.json_path = Path(json_path) if json_path else None
        self.rows: list[dict] = []
        if initial:
            keys = [k for k in initial if k != "epoch"]
            for i, epoch in enumerate(initial["epoch"]):
                self.rows.append({"epoch": epoch, **{k: initial[k][i] for k in keys}})

    def append(self, epoch: int, metrics: dict) -> None:
        self.rows = [r for r in self.rows if r["epoch"] < epoch]
        self.rows.append({"epoch": epoch, **metrics})
        self._write()

    def _write(self) -> None:
        keys = ["epoch"] + sorted({k for r in self.rows for k in r if k != "epoch"})
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic.write_text(self.csv_path, buf.getvalue())
        if self.json_path:
            atomic.write_json(self.json_path, {k: [r.get(k) for r in self.rows] for k in keys})

    @staticmethod
    def load(csv_path) -> dict:
        with open(csv_path, newline="") as f:
            rows = list(csv.DictReader(f))
        keys = rows[0].keys() if rows else ["epoch"]
        return {k: [int(r[k]) if k == "epoch" else float(r[k]) for r in rows] for k in keys}


class TensorBoardLog:
    """Scalars per epoch (tag = metric name, step = 0-based epoch) and optional histograms."""

    def __init__(self, logdir):
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(str(logdir))

    def scalars(self, epoch: int, metrics: dict) -> None:
        for name, value in metrics.items():
            self.writer.add_scalar(name, float(value), epoch)
        self.writer.flush()

    def histograms(self, epoch: int, params) -> None:
        import jax
        import numpy as np

        for path, leaf in jax.tree_util.tree_leaves_with_path(params):
            tag = "/".join(str(getattr(k, "key", k)) for k in path)
            self.writer.add_histogram(tag, np.asarray(leaf), epoch)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class Progress:
    """One line per epoch (or chunk) on stderr; nothing when quiet."""

    def __init__(self, *, quiet: bool = False, stream=None, label: str = ""):
        self.quiet, self.stream, self.label = quiet, stream or sys.stderr, label

    def line(self, text: str) -> None:
        if not self.quiet:
            print(f"{self.label}{text}", file=self.stream, flush=True)

    def epoch(self, epoch: int, total: int, metrics: dict) -> None:
        parts = " ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        self.line(f"epoch {epoch + 1}/{total} {parts}")


