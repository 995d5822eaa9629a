"""Keras's callback vocabulary for `jaxmlp.fit`: which pure hooks and which observers it means.

`EarlyStopping`, `ReduceLROnPlateau` and `CosineSchedule` are the hook configs themselves
(`jaxmlp.config`: frozen dataclasses, Keras's names and defaults); `LearningRateScheduler` and
`TerminateOnNaN` also become hooks (pure, inside the compiled epoch). `ModelCheckpoint`,
`TensorBoard` and `CSVLogger` write files: they become the observers of `jaxmlp.observers`
(Orbax `CheckpointStore`, `TensorBoardLog`, `HistoryLog`), run on the host after each epoch
and never change the numbers. `plan(callbacks)` is the one place that maps the list.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jax

from jaxmlp import config as C
from jaxmlp import hooks as H
from jaxmlp import observers
from jaxmlp.config import ConfigError, CosineSchedule, EarlyStopping, ReduceLROnPlateau

__all__ = ["EarlyStopping", "ReduceLROnPlateau", "CosineSchedule", "LearningRateScheduler",
           "TerminateOnNaN", "ModelCheckpoint", "TensorBoard", "CSVLogger", "plan", "Effects"]


@dataclass(frozen=True)
class LearningRateScheduler:
    """Keras's LearningRateScheduler: `schedule(epoch, lr) -> new lr` at each epoch start.

    `schedule` must be a jnp function (it runs inside the compiled epoch): epoch is a 0-based
    int32 array, lr the optimizer's current learning rate (float32 array), e.g.
    `lambda epoch, lr: jnp.where(epoch < 10, lr, lr * 0.9)`.
    """

    schedule: Callable


@dataclass(frozen=True)
class TerminateOnNaN:
    """Keras's TerminateOnNaN: stop when the training loss is NaN or +-inf. Keras checks every
    batch; jaxmlp checks the epoch's mean loss (a non-finite batch makes it non-finite too)."""


@dataclass(frozen=True)
class ModelCheckpoint:
    """Keras's ModelCheckpoint as an Orbax checkpoint folder.

    save_best_only=True keeps the weights of the best epoch by `monitor` (Keras's test, see
    `jaxmlp.hooks.best_update`) under `filepath/best/<epoch>`; False (Keras's default) saves
    every epoch's weights under `filepath/latest/<epoch>` (the newest one kept). A NaN or inf
    best value is not written (the store refuses non-finite metrics).
    """

    filepath: str
    monitor: str = "val_loss"
    mode: str = "auto"
    save_best_only: bool = False

    def __post_init__(self):
        C.ModelCheckpoint(self.monitor, self.mode)  # validates monitor and mode


@dataclass(frozen=True)
class TensorBoard:
    """Keras's TensorBoard (epoch scalars): `log_dir/train` and `log_dir/validation`."""

    log_dir: str = "logs"


@dataclass(frozen=True)
class CSVLogger:
    """Keras's CSVLogger: one row per epoch, `epoch` first then the metrics sorted by name."""

    filename: str


HOOKS = {EarlyStopping: "early_stopping", ReduceLROnPlateau: "reduce_lr",
         CosineSchedule: "schedule", LearningRateScheduler: "schedule"}
FILES = (ModelCheckpoint, TensorBoard, CSVLogger)


def plan(callbacks, learning_rate: float) -> tuple[C.HooksConfig, Callable | None, list]:
    """(hooks config, schedule function or None, file callbacks) for a Keras-style list.

    Each kind may appear once (a second EarlyStopping would be a second, independent stopper in
    Keras; jaxmlp has one of each hook), a scheduler is either CosineSchedule or
    LearningRateScheduler, and anything else is a ConfigError naming what is allowed.
    """
    hooks, schedule_fn, files, seen = {}, None, [], set()
    for cb in callbacks or ():
        kind = type(cb)
        if kind not in HOOKS and kind not in FILES and kind is not TerminateOnNaN:
            raise ConfigError(f"callbacks: {cb!r} is not supported; allowed "
                              + ", ".join(__all__[:8]))
        slot = HOOKS.get(kind, kind.__name__)
        if slot in seen and kind not in FILES:
            raise ConfigError(f"callbacks: more than one {slot} callback ({kind.__name__})")
        seen.add(slot)
        if kind is LearningRateScheduler:
            # The hook is switched on by any schedule config; `schedule_fn` replaces its cosine.
            hooks["schedule"] = CosineSchedule(initial_lr=learning_rate)
            schedule_fn = cb.schedule
        elif kind in HOOKS:
            hooks[slot] = cb
        elif kind is ModelCheckpoint and cb.save_best_only:
            hooks["checkpoint"] = C.ModelCheckpoint(cb.monitor, cb.mode)
        if kind in FILES:
            files.append(cb)
    cfg = C.HooksConfig(**hooks, terminate_on_nan=TerminateOnNaN in map(type, callbacks or ()))
    return cfg, schedule_fn, files


class Effects:
    """The file callbacks of one `fit`, as observers: call it with each finished epoch."""

    def __init__(self, files, *, has_val: bool):
        self.csv, self.tb, self.every, self.best = [], [], [], []
        for cb in files:
            if isinstance(cb, CSVLogger):
                self.csv.append(observers.HistoryLog(cb.filename))
            elif isinstance(cb, TensorBoard):
                self.tb.append(observers.TensorBoardLog(cb.log_dir))
            elif cb.save_best_only and (has_val or not cb.monitor.startswith("val_")):
                mode = "min" if C.monitor_sign(cb.monitor, cb.mode) > 0 else "max"
                self.best.append(observers.CheckpointStore(Path(cb.filepath), monitor=cb.monitor,
                                                           mode=mode))
            elif not cb.save_best_only:
                self.every.append(observers.CheckpointStore(Path(cb.filepath), keep_latest=1))
        self.saved_best = -1

    def epoch(self, epoch: int, row: dict, state) -> None:
        """After `epoch` (0-based): its metrics `row` and the state of the group of one."""
        for log in self.csv:
            log.append(epoch, row)
        for tb in self.tb:
            tb.scalars(epoch, row)
        if not (self.every or self.best):
            return
        state = jax.tree.map(lambda a: a[0], state)
        if self.every:
            weights = jax.device_get({"params": state.params, "batch_stats": state.batch_stats})
            for store in self.every:
                store.save_latest(epoch, weights)
        if self.best:
            s = H.summary(state.hooks)
            best_epoch = int(s.checkpoint_best_epoch)
            if best_epoch > self.saved_best:
                params, stats = jax.device_get(s.checkpoint_weights)
                for store in self.best:
                    store.save_best(best_epoch, {"params": params, "batch_stats": stats},
                                    float(s.checkpoint_best))
                self.saved_best = best_epoch

    def close(self) -> None:
        for tb in self.tb:
            tb.close()
        for store in self.every + self.best:
            store.close()
