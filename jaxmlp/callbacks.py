"""Keras's callback vocabulary for `jaxmlp.fit`: which pure hooks and which observers it means.

`EarlyStopping` and `ReduceLROnPlateau` are the hook configs (`jaxmlp.config`: frozen
dataclasses, Keras's names and defaults) plus Keras's `verbose`, which only prints (`Messages`);
`CosineSchedule` is its config itself; `LearningRateScheduler` and `TerminateOnNaN` also become
hooks (pure, inside the compiled epoch). `ModelCheckpoint`,
`TensorBoard` and `CSVLogger` write files: they become the observers of `jaxmlp.observers`
(Orbax `CheckpointStore`, `TensorBoardLog`, `HistoryLog`), run on the host after each epoch
and never change the numbers. `plan(callbacks)` is the one place that maps the list.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxmlp import atomic, observers
from jaxmlp import config as C
from jaxmlp import hooks as H
from jaxmlp.config import ANY, ConfigError, CosineSchedule
from jaxmlp.epoch import schedule_fingerprint

__all__ = ["EarlyStopping", "ReduceLROnPlateau", "CosineSchedule", "LearningRateScheduler",
           "TerminateOnNaN", "ModelCheckpoint", "TensorBoard", "CSVLogger", "BackupAndRestore",
           "plan", "Effects"]


def _check_verbose(owner: str, verbose) -> None:
    if verbose not in (0, 1, 2) or isinstance(verbose, bool):
        raise ConfigError(f"{owner}.verbose={verbose!r} is invalid: allowed 0 (silent) or 1 "
                          "(Keras's lines: when it acts)")


def _keras_arguments(**table):
    """Class decorator: Keras 3's arguments of this callback that jaxmlp does not take
    (`config.check_keras_only`'s table: `name=(Keras's default, why not)`, `ANY` for any
    value), taken at their Keras default; unknown names are one ConfigError naming the
    allowed ones."""
    def decorate(cls):
        init, own = cls.__init__, [f.name for f in dataclasses.fields(cls)]

        @functools.wraps(init)
        def __init__(self, *args, **kwargs):
            extra = {k: kwargs.pop(k) for k in [k for k in kwargs if k not in own]}
            C.check_keras_only(cls.__name__, extra, table, own + list(table))
            init(self, *args, **kwargs)

        cls.__init__ = __init__
        cls.KERAS_ONLY = dict(table)
        return cls
    return decorate


@_keras_arguments()
@dataclass(frozen=True)
class EarlyStopping(C.EarlyStopping):
    """Keras 3's EarlyStopping: the hook's config (`jaxmlp.config.EarlyStopping`, same names
    and defaults) and Keras's `verbose`: 1 prints Keras's lines at the end of `fit`,
    `Epoch N: early stopping` and `Restoring model weights from the end of the best epoch: N.`"""

    verbose: int = 0

    def __post_init__(self):
        super().__post_init__()
        _check_verbose("EarlyStopping", self.verbose)


@_keras_arguments()
@dataclass(frozen=True)
class ReduceLROnPlateau(C.ReduceLROnPlateau):
    """Keras 3's ReduceLROnPlateau: the hook's config (`jaxmlp.config.ReduceLROnPlateau`) and
    Keras's `verbose`: 1 prints `Epoch N: ReduceLROnPlateau reducing learning rate to X.` at
    each cut."""

    verbose: int = 0

    def __post_init__(self):
        super().__post_init__()
        _check_verbose("ReduceLROnPlateau", self.verbose)


def _hook_config(cb):
    """The hook's own config of a public callback (without `verbose`, which only prints)."""
    base = {EarlyStopping: C.EarlyStopping, ReduceLROnPlateau: C.ReduceLROnPlateau}.get(type(cb))
    if base is None:
        return cb
    return base(**{f.name: getattr(cb, f.name) for f in dataclasses.fields(base)})


@_keras_arguments()
@dataclass(frozen=True)
class LearningRateScheduler:
    """Keras's LearningRateScheduler: `schedule(epoch, lr) -> new lr` at each epoch start.

    `schedule` must be a jnp function (it runs inside the compiled epoch): epoch is a 0-based
    int32 array, lr the optimizer's current learning rate (float32 array), e.g.
    `lambda epoch, lr: jnp.where(epoch < 10, lr, lr * 0.9)`. As in Keras, a function of one
    argument is called as `schedule(epoch)`. `fit` traces it once before training and says
    what is wrong if it cannot run on arrays (a Python `if` on the epoch, a None returned).
    """

    schedule: Callable
    verbose: int = 0  # Keras's: 1 prints `Epoch N: LearningRateScheduler setting ...`

    def __post_init__(self):
        if not callable(self.schedule):
            raise ConfigError(f"LearningRateScheduler.schedule={self.schedule!r} is invalid: "
                              "allowed a function schedule(epoch, lr) -> learning rate")
        _check_verbose("LearningRateScheduler", self.verbose)


@_keras_arguments(raise_error=(False, "a NaN loss stops the fit, and its history shows the "
                                       "epoch"))
@dataclass(frozen=True)
class TerminateOnNaN:
    """Keras's TerminateOnNaN: stop when the training loss is NaN or +-inf. Keras checks every
    batch; jaxmlp checks the epoch's mean loss (a non-finite batch makes it non-finite too)."""


@_keras_arguments(
    save_weights_only=(ANY, "the folder always holds the weights and the model.json naming "
                            "them, which jaxmlp.load reads"),
    save_freq=("epoch", "saves happen at the end of an epoch"),
    initial_value_threshold=(None, "the first epoch's value is the first best"))
@dataclass(frozen=True)
class ModelCheckpoint:
    """Keras's ModelCheckpoint as an Orbax checkpoint folder.

    save_best_only=True keeps the weights of the best epoch by `monitor` (Keras's test, see
    `jaxmlp.hooks.best_update`) under `filepath/best/<epoch>`; False (Keras's default) saves
    every epoch's weights under `filepath/latest/<epoch>` (the newest one kept). A NaN or inf
    best value is not written (the store refuses non-finite metrics).

    The folder is a model `jaxmlp.load(filepath)` reads back (its `model.json` says which run
    wrote it). Keras overwrites its file at each save; here a previous fit's checkpoints in
    `filepath` are replaced at this fit's first save. A folder holding anything else is refused
    before training, and so is a Keras filename template (`{epoch}`): the epoch is the step's
    folder name.
    """

    filepath: str
    monitor: str = "val_loss"
    mode: str = "auto"
    save_best_only: bool = False
    verbose: int = 0  # Keras's: 1 prints each save (and, best only, each epoch without one)

    def __post_init__(self):
        _check_verbose("ModelCheckpoint", self.verbose)
        _check_path("ModelCheckpoint", "filepath", self.filepath)
        if "{" in str(self.filepath) or "}" in str(self.filepath):
            raise ConfigError(
                f"ModelCheckpoint.filepath={str(self.filepath)!r}: Keras's filename templates "
                "({epoch}, {val_loss}) are not supported; allowed a folder name: each save goes "
                "to <folder>/best/<epoch> or <folder>/latest/<epoch>")
        if not isinstance(self.save_best_only, bool):
            raise ConfigError(f"ModelCheckpoint.save_best_only={self.save_best_only!r} is "
                              "invalid: allowed True or False")
        C.ModelCheckpoint(self.monitor, self.mode)  # validates monitor and mode


@_keras_arguments(
    write_graph=(ANY, "no graph is written (the model is a jitted function, not a Keras "
                      "graph)"),
    write_images=(False, "weights are not written as images; histogram_freq writes their "
                         "histograms"),
    write_steps_per_second=(False, "the logs hold the epoch's metrics and learning rate"),
    update_freq=("epoch", "the logs are written once an epoch"),
    profile_batch=(0, "profile with jax.profiler.trace instead"),
    embeddings_freq=(0, "an MLP has no embedding layer"),
    embeddings_metadata=(None, "an MLP has no embedding layer"))
@dataclass(frozen=True)
class TensorBoard:
    """Keras's TensorBoard: the epoch's metrics and learning rate as scalars in `log_dir/train`
    and `log_dir/validation`; with `histogram_freq=N`, every N epochs (from the first), a
    histogram of each weight (BatchNorm's moving statistics too, as Keras's model.weights) in
    `log_dir/train`, tagged with its path (`params/dense_0/kernel`, `batch_stats/norm_0/mean`)."""

    log_dir: str = "logs"
    histogram_freq: int = 0

    def __post_init__(self):
        _check_path("TensorBoard", "log_dir", self.log_dir)
        if isinstance(self.histogram_freq, np.integer):  # NumPy integers, as fit's arguments
            object.__setattr__(self, "histogram_freq", int(self.histogram_freq))
        if not isinstance(self.histogram_freq, int) or isinstance(self.histogram_freq, bool) \
                or self.histogram_freq < 0:
            raise ConfigError(f"TensorBoard.histogram_freq={self.histogram_freq!r} is invalid: "
                              "allowed an integer >= 0 (0: no histograms)")


@_keras_arguments(
    append=(False, "the file is written anew by each fit (with BackupAndRestore, a resumed "
                   "fit's file already holds every epoch)"))
@dataclass(frozen=True)
class CSVLogger:
    """Keras's CSVLogger: one row per epoch, `epoch` first then the metrics sorted by name,
    cells separated by `separator`."""

    filename: str
    separator: str = ","

    def __post_init__(self):
        _check_path("CSVLogger", "filename", self.filename)
        if not isinstance(self.separator, str) or len(self.separator) != 1 \
                or self.separator in "\r\n\"":
            raise ConfigError(f"CSVLogger.separator={self.separator!r} is invalid: allowed one "
                              "character other than a quote or a line end")


@_keras_arguments(
    save_freq=("epoch", "the backup is saved at the end of every epoch"),
    double_checkpoint=(ANY, "each backup is written whole before it replaces the last one, so "
                            "a crash while saving leaves the last one"))
@dataclass(frozen=True)
class BackupAndRestore:
    """Keras's BackupAndRestore: the whole train state saved in `backup_dir` after every epoch,
    so that the same `fit` call run again after an interruption (Ctrl-C, a crash, kill -9)
    resumes where the last backup was, and ends exactly as an uninterrupted fit would.

    Beyond Keras: the backup holds the callbacks' state too (EarlyStopping's wait and best,
    the plateau's counters, the best weights), the shuffling and dropout keys derive from the
    seed and the epoch, so the resumed fit's numbers are bit for bit the uninterrupted one's;
    and `history` (and a CSVLogger's file) hold every epoch, not only those after the resume.
    A backup of a fit with other settings is refused, not resumed. `delete_checkpoint=True`
    (Keras's default) removes the backup when the fit ends normally.
    """

    backup_dir: str
    delete_checkpoint: bool = True

    def __post_init__(self):
        _check_path("BackupAndRestore", "backup_dir", self.backup_dir)
        if not isinstance(self.delete_checkpoint, bool):
            raise ConfigError(f"BackupAndRestore.delete_checkpoint={self.delete_checkpoint!r} is "
                              "invalid: allowed True or False")


def _check_path(owner: str, field: str, value) -> None:
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise ConfigError(f"{owner}.{field}={value!r} is invalid: allowed a path (a str or a "
                          "pathlib.Path)")


HOOKS = {EarlyStopping: "early_stopping", ReduceLROnPlateau: "reduce_lr",
         C.EarlyStopping: "early_stopping", C.ReduceLROnPlateau: "reduce_lr",
         CosineSchedule: "schedule", LearningRateScheduler: "schedule"}
FILES = (ModelCheckpoint, TensorBoard, CSVLogger, BackupAndRestore)


def plan(callbacks, learning_rate: float) -> tuple[C.HooksConfig, Callable | None, list]:
    """(hooks config, schedule function or None, file callbacks) for a Keras-style list.

    Each kind may appear once (a second EarlyStopping would be a second, independent stopper in
    Keras; jaxmlp has one of each hook), a scheduler is either CosineSchedule or
    LearningRateScheduler, and anything else is a ConfigError naming what is allowed.
    """
    if callbacks is not None and not isinstance(callbacks, (list, tuple)):
        raise ConfigError(f"fit: callbacks={callbacks!r} is invalid: allowed a list of callbacks, "
                          "e.g. [jaxmlp.EarlyStopping(patience=5)]")
    hooks, schedule_fn, files, seen = {}, None, [], set()
    for cb in callbacks or ():
        kind = type(cb)
        if kind not in HOOKS and kind not in FILES and kind is not TerminateOnNaN:
            raise ConfigError(f"callbacks: {cb!r} is not supported; allowed "
                              + ", ".join(__all__[:9]))
        slot = HOOKS.get(kind, kind.__name__)
        if slot in seen and (kind not in FILES or kind is BackupAndRestore):
            raise ConfigError(f"callbacks: more than one {slot} callback ({kind.__name__})")
        seen.add(slot)
        if kind is LearningRateScheduler:
            # The hook is switched on by any schedule config; `schedule_fn` replaces its cosine.
            hooks["schedule"] = CosineSchedule(initial_lr=learning_rate)
            schedule_fn = _traced_schedule(cb.schedule)
        elif kind in HOOKS:
            hooks[slot] = _hook_config(cb)
        elif kind is ModelCheckpoint and cb.save_best_only:
            best = C.ModelCheckpoint(cb.monitor, cb.mode)
            if "checkpoint" in hooks and _best_key(hooks["checkpoint"]) != _best_key(best):
                # One best-tracking hook: a second monitor would get the first one's values.
                first = hooks["checkpoint"]
                raise ConfigError(
                    f"callbacks: two ModelCheckpoint(save_best_only=True) watch different "
                    f"things ({first.monitor!r} mode {first.mode!r}, {cb.monitor!r} mode "
                    f"{cb.mode!r}); allowed several only with the same monitor and direction")
            hooks["checkpoint"] = best
        if kind in FILES:
            files.append(cb)
    _check_targets(files)
    cfg = C.HooksConfig(**hooks, terminate_on_nan=TerminateOnNaN in map(type, callbacks or ()))
    return cfg, schedule_fn, files


def _best_key(cfg: C.ModelCheckpoint) -> tuple:
    """What a best checkpoint keeps: its metric and direction (mode "auto" resolved)."""
    return cfg.monitor, C.monitor_sign(cfg.monitor, cfg.mode)


def _traced_schedule(schedule: Callable) -> Callable:
    """`schedule` as `fn(epoch, lr)`, checked by tracing it once on the arrays the compiled
    epoch gives it, so that a schedule that cannot run there fails here, in one sentence,
    instead of deep inside the trace of the epoch."""
    fn = schedule
    try:
        params = inspect.signature(schedule).parameters.values()
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if len(positional) == 1 and not any(p.kind == p.VAR_POSITIONAL for p in params):
            def fn(epoch, lr):  # Keras's older one-argument schedule(epoch)
                return schedule(epoch)
    except (TypeError, ValueError):  # no signature (some builtins): call it as Keras does
        pass
    try:
        out = jax.eval_shape(lambda e, lr: jnp.asarray(fn(e, lr), jnp.float32),
                             jax.ShapeDtypeStruct((), jnp.int32),
                             jax.ShapeDtypeStruct((), jnp.float32))
    except Exception as e:
        first = observers.first_line(e, 200)
        raise ConfigError(
            f"LearningRateScheduler: schedule(epoch, lr) cannot run inside the compiled epoch "
            f"({type(e).__name__}: {first}). epoch and lr are JAX arrays there: write conditions "
            "with jnp.where, e.g. lambda epoch, lr: jnp.where(epoch < 10, lr, lr * 0.9), and "
            "return a number") from None
    if out.shape != ():
        raise ConfigError(f"LearningRateScheduler: schedule(epoch, lr) returned shape "
                          f"{out.shape}; allowed one number (the learning rate)")
    return fn


CHECKPOINT_FORMAT = "jaxmlp.checkpoint/1"
BACKUP_FORMAT = "jaxmlp.backup/1"
BACKUP_ENTRIES = ("latest", "best", "unreadable", "backup.json")
CHECKPOINT_ENTRIES = ("latest", "best", "unreadable", "model.json")


def target(cb) -> Path:
    """Where a file callback writes (absolute)."""
    path = {CSVLogger: "filename", TensorBoard: "log_dir", ModelCheckpoint: "filepath",
            BackupAndRestore: "backup_dir"}[type(cb)]
    return Path(getattr(cb, path)).absolute()


def _check_targets(files) -> None:
    """Before anything is compiled: every file callback can write where it was pointed."""
    seen = {}
    cleared = [target(cb) for cb in files if isinstance(cb, (ModelCheckpoint, BackupAndRestore))]
    for cb in files:
        kind = type(cb).__name__
        path = target(cb)
        if any(c != path and (c in path.parents or path in c.parents) for c in cleared):
            raise ConfigError(f"{kind}: {path} and another callback's folder are one inside the "
                              "other; a ModelCheckpoint or BackupAndRestore folder is replaced or "
                              "deleted as a whole, so allowed: folders side by side")
        if path in seen:
            raise ConfigError(f"{kind} and {seen[path]} both write to {path}; allowed one "
                              "callback per path")
        seen[path] = kind
        parent = next((p for p in path.parents if p.exists()), None)
        if parent is not None and not parent.is_dir():
            raise ConfigError(f"{kind}: {parent} is a file, so {path} cannot be created")
        if isinstance(cb, CSVLogger):
            if path.is_dir():
                raise ConfigError(f"CSVLogger: {path} is a folder; allowed a file name")
        elif path.exists() and not path.is_dir():
            raise ConfigError(f"{kind}: {path} is a file; allowed a folder (new or existing)")
        elif isinstance(cb, ModelCheckpoint) and path.is_dir():
            _check_checkpoint_folder(path)
        elif isinstance(cb, BackupAndRestore) and path.is_dir():
            others = _foreign(path, BACKUP_ENTRIES)
            if others:
                raise ConfigError(f"BackupAndRestore: {path} holds other files ({others}); "
                                  "allowed a new or empty folder, or the backup of this same fit")


def _check_checkpoint_folder(path: Path) -> None:
    """A ModelCheckpoint folder is new, empty, or a previous ModelCheckpoint's (replaced at
    this fit's first save); anything else in it would be lost, so it is refused."""
    others = _foreign(path, CHECKPOINT_ENTRIES)
    if not others and (path / "model.json").exists():
        try:
            doc = json.loads((path / "model.json").read_text())
            ours = isinstance(doc, dict) and doc.get("format") == CHECKPOINT_FORMAT
        except (ValueError, OSError):
            ours = False
        others = "" if ours else "model.json (not a ModelCheckpoint's)"
    if others:
        raise ConfigError(
            f"ModelCheckpoint: {path} holds other files ({others}); allowed a new or empty "
            "folder, or one a previous ModelCheckpoint wrote (this fit then replaces its "
            "checkpoints)")


def _foreign(path: Path, ours) -> str:
    """The entries of folder `path` not named in `ours`, for a message ("" when none)."""
    others = sorted(set(os.listdir(path)) - set(ours))
    return ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")


def _remove(path: Path, names) -> None:
    """Remove the entries `names` of folder `path` (folders and files; missing ones skipped)."""
    for name in names:
        if (path / name).is_dir():
            shutil.rmtree(path / name)
        else:
            (path / name).unlink(missing_ok=True)


def keras_csv_columns(keys, lr_logged: bool) -> list[str]:
    """The columns Keras 3's CSVLogger writes after `epoch`: the logs' keys sorted, where the
    learning rate is in the logs only when a callback before the CSVLogger in the list sets it
    (ReduceLROnPlateau or a scheduler, at the epoch's end, when the CSVLogger fixes its columns);
    without any `val_` key, one `val_` column per key is added (written `NA`), as Keras does
    for a validation that may come later (keras/src/callbacks/csv_logger.py)."""
    logged = sorted(k for k in keys if k != "learning_rate" or lr_logged)
    if not any(k.startswith("val_") for k in logged):
        logged += [f"val_{k}" for k in logged]
    return logged


class Effects:
    """The file callbacks of one `fit` (`run`), as observers: call it with each finished epoch."""

    def __init__(self, files, *, has_val: bool, run: C.RunConfig, keys=C.METRICS,
                 data: dict | None = None, schedule_fn: Callable | None = None,
                 callbacks=()):
        """`keys`: the history's columns a row of the CSV logs holds; `data`: the data's
        `data_fingerprint`, and `schedule_fn` a LearningRateScheduler's function (not in the
        config): a backup must match both to be resumed."""
        self.csv, self.tb, self.every, self.best = [], [], [], []
        self.backup, self.keys, self.idle, self.histogram_freq = None, tuple(keys), [], []
        order = list(callbacks or files)
        for cb in files:
            if isinstance(cb, CSVLogger):
                before = order[:order.index(cb)] if cb in order else order
                lr_logged = any(HOOKS.get(type(b)) in ("reduce_lr", "schedule")
                                for b in before)
                self.csv.append(observers.HistoryLog(
                    cb.filename, columns=keras_csv_columns(self.keys, lr_logged),
                    line_end="\r\n", separator=cb.separator))
            elif isinstance(cb, TensorBoard):
                self.tb.append(observers.TensorBoardLog(cb.log_dir))
                self.histogram_freq.append(cb.histogram_freq)
            elif isinstance(cb, BackupAndRestore):
                self.backup = _Backup(cb, run, data, schedule_fn)
            elif cb.save_best_only and (has_val or not cb.monitor.startswith("val_")):
                self.best.append(_Checkpoints(cb, run))
            elif not cb.save_best_only:
                self.every.append(_Checkpoints(cb, run))
            else:  # idle without validation data (the warning says so): it saves nothing
                self.idle.append(_Checkpoints(cb, run))
        self.saved_best = -1

    def restore(self, template):
        """Before training: (state, histories) from this fit's backup, or None to start afresh.

        Resumed: the CSV logs get the restored epochs, so that they hold the whole history, and
        each TensorBoard log a restart marker at the first epoch to run again (TensorBoard's own
        `SessionLog.START`: its reader drops what a killed process logged from that epoch on,
        so no epoch is shown twice). Afresh: what earlier fits left in the ModelCheckpoint
        folders goes now, so that the folder is never an earlier fit's model while this one
        has saved nothing yet."""
        restored = self.backup.restore(template) if self.backup else None
        if restored is not None:
            history = restored[1][0]
            done = len(history["epoch"])
            for ckpt in self.every + self.best:
                kept = ckpt.resume(done)
                if ckpt in self.best:
                    self.saved_best = max(self.saved_best, kept)
            for log in self.csv:
                log.extend([(e, {k: history[k][e] for k in self.keys}) for e in history["epoch"]])
            for tb in self.tb:
                tb.restart(len(history["epoch"]))
        else:
            for ckpt in self.every + self.best:
                ckpt.store()
            for ckpt in self.idle:
                ckpt.clear()
        return restored

    def chunk(self, state, histories) -> None:
        """After each chunk of epochs, the epochs' own files written: the backup."""
        if self.backup:
            self.backup.save(state, histories)

    def finish(self) -> None:
        """The fit ended normally (not called when it failed)."""
        if self.backup:
            self.backup.finish()

    def epoch(self, epoch: int, row: dict, state) -> None:
        """After `epoch` (0-based): its metrics `row` and the state of the group of one."""
        for log in self.csv:
            log.append(epoch, row)
        for tb in self.tb:
            tb.scalars(epoch, row)
        histograms = [tb for tb, freq in zip(self.tb, self.histogram_freq)
                      if freq and epoch % freq == 0]  # Keras: epochs 0, N, 2N, ...
        if not (self.every or self.best or histograms):
            return
        state = jax.tree.map(lambda a: a[0], state)
        if histograms or self.every:  # the epoch's weights, fetched once for both
            weights = jax.device_get({"params": state.params, "batch_stats": state.batch_stats})
        for tb in histograms:
            tb.histograms(epoch, weights)
        for ckpt in self.every:
            ckpt.store().save_latest(epoch, weights)
        if self.best:
            s = H.summary(state.hooks)
            best_epoch = int(s.checkpoint_best_epoch)
            if best_epoch > self.saved_best:
                params, stats = jax.device_get(s.checkpoint_weights)
                for ckpt in self.best:
                    ckpt.store().save_best(best_epoch, {"params": params, "batch_stats": stats},
                                           float(s.checkpoint_best))
                self.saved_best = best_epoch

    def close(self) -> None:
        for tb in self.tb:
            tb.close()
        for ckpt in self.every + self.best:
            ckpt.close()
        if self.backup:
            self.backup.close()


class Messages:
    """Keras's `verbose=1` lines of the callbacks that asked for them (same words, numbers and
    epochs as Keras 3 prints them), on `stream` after each epoch and at the end of `fit`, read
    from the epoch's history row and the hooks' state (they never change them)."""

    def __init__(self, callbacks, stream, *, member: int = 0, prefix: str = ""):
        """`member`: whose lines, in a group's state (fit_many's fits are its members);
        `prefix` starts each line."""
        self.member, self.prefix = member, prefix
        loud = [cb for cb in callbacks or () if getattr(cb, "verbose", 0)]
        self.es = next((cb for cb in loud if isinstance(cb, EarlyStopping)), None)
        self.scheduler = next((cb for cb in loud if isinstance(cb, LearningRateScheduler)), None)
        # Keras calls on_epoch_end in the list's order: the plateau's and the checkpoints'
        # lines come in that order too.
        self.at_end = [cb for cb in loud if isinstance(cb, (ReduceLROnPlateau, ModelCheckpoint))]
        self.stream, self.reductions, self.best = stream, 0, None

    def __bool__(self) -> bool:
        return bool(self.es or self.scheduler or self.at_end)

    def _say(self, text: str) -> None:
        print(self.prefix + text, file=self.stream, flush=True)

    def _summary(self, state) -> H.Summary:
        """The member's hooks, on the host, without their copies of the weights."""
        return jax.device_get(H.summary(H.with_weights(
            jax.tree.map(lambda a: a[self.member], state.hooks), None)))

    def resumed(self, state) -> None:
        """A fit resumed from a backup (`state`: the group of one's, restored): the plateau's
        cuts and the best value so far go on from it, as the hooks do."""
        s = self._summary(state)
        self.reductions = int(s.lr_reductions)
        if bool(s.checkpoint) and int(s.checkpoint_best_epoch) >= 0:
            self.best = float(s.checkpoint_best)

    def begin(self, epoch: int, row: dict) -> None:
        """The line Keras prints as `epoch` (0-based) begins, before the epoch's own line; `row`
        is its history row (the learning rate it trained with)."""
        if self.scheduler:
            self._say(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to "
                      f"{row['learning_rate']}.")

    def epoch(self, epoch: int, row: dict, state) -> None:
        """After `epoch` (0-based): its history row and the group state after it (the lines
        Keras prints at the epoch's end, after the epoch's own line)."""
        if not self.at_end:
            return
        s = self._summary(state)
        cut = int(s.lr_reductions) > self.reductions
        self.reductions = int(s.lr_reductions)
        improved = bool(s.checkpoint) and int(s.checkpoint_best_epoch) == epoch
        best = "None" if self.best is None else f"{self.best:.5f}"
        for cb in self.at_end:  # a checkpoint's save: Effects.epoch has made it by now
            if isinstance(cb, ReduceLROnPlateau):
                if cut:  # Keras: new_lr = max(float(old_lr) * factor, min_lr), Python floats
                    new = max(float(np.float32(row["learning_rate"])) * cb.factor, cb.min_lr)
                    self._say(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate "
                              f"to {new}.")
                continue
            if not cb.save_best_only:
                self._say(f"Epoch {epoch + 1}: saving model to {cb.filepath}")
            elif cb.monitor not in row:
                continue
            elif improved:
                self._say(f"Epoch {epoch + 1}: {cb.monitor} improved from {best} to "
                          f"{row[cb.monitor]:.5f}, saving model to {cb.filepath}")
            else:
                self._say(f"Epoch {epoch + 1}: {cb.monitor} did not improve from {best}")
                continue
            self._say(f"Epoch {epoch + 1}: finished saving model to {cb.filepath}")
        if improved:
            self.best = float(s.checkpoint_best)

    def end(self, state) -> None:
        """At the end of `fit` (`state`: the run's, no member axis): EarlyStopping's lines
        (Keras's on_train_end)."""
        if not self.es:
            return
        es = jax.device_get(H.with_weights(state.hooks, None).early_stopping)
        if bool(es.stop) and int(es.stopped_epoch) > 0:
            self._say(f"Epoch {int(es.stopped_epoch) + 1}: early stopping")
        if self.es.restore_best_weights and bool(es.has_best):
            self._say("Restoring model weights from the end of the best epoch: "
                      f"{int(es.best_epoch) + 1}.")


class _Checkpoints:
    """One ModelCheckpoint's folder, opened at its first save: what a previous fit left there
    (checked by `_check_checkpoint_folder`) is removed then, as Keras overwrites its file (a
    resumed fit keeps its own epochs': `resume`), and a `model.json` names the run, so that
    `jaxmlp.load(folder)` rebuilds the model."""

    def __init__(self, cb: ModelCheckpoint, run: C.RunConfig):
        self.cb, self.run, self._store, self.resumed = cb, run, None, False

    def clear(self) -> None:
        """Remove what an earlier ModelCheckpoint left (`_check_checkpoint_folder` made sure
        the folder holds nothing else)."""
        _remove(target(self.cb), CHECKPOINT_ENTRIES)

    def resume(self, done: int) -> int:
        """A fit resumed after `done` epochs keeps this folder's checkpoints of those epochs
        (emptying it, a kill before the first new save lost them all) and drops what the
        killed fit saved of later ones, which the resumed fit saves again. Returns the best
        epoch kept (-1: none)."""
        self.resumed = True
        kept = -1
        for kind in ("latest", "best"):
            folder = target(self.cb) / kind
            for step in (folder.iterdir() if folder.is_dir() else ()):
                number = step.name.split(".")[0]
                if not number.isdigit():
                    continue  # not a step: Orbax's own
                if int(number) >= done or not step.name.isdigit():
                    shutil.rmtree(step, ignore_errors=True)  # later, or a save cut short
                elif kind == "best":
                    kept = max(kept, int(number))
        return kept

    def store(self) -> observers.CheckpointStore:
        if self._store is None:
            if not self.resumed:
                self.clear()
            path = target(self.cb)
            mode = "min" if C.monitor_sign(self.cb.monitor, self.cb.mode) > 0 else "max"
            self._store = observers.CheckpointStore(path, monitor=self.cb.monitor, mode=mode,
                                                    keep_latest=1)
            atomic.write_json(path / "model.json", {
                "format": CHECKPOINT_FORMAT, "config": C.to_dict(self.run),
                "kind": "best" if self.cb.save_best_only else "latest",
                "monitor": self.cb.monitor if self.cb.save_best_only else None})
        return self._store

    def close(self) -> None:
        if self._store is None:
            return
        self._store.close()
        unused = "latest" if self.cb.save_best_only else "best"
        try:  # the store makes both folders; the one this callback never writes stays empty
            (target(self.cb) / unused).rmdir()
        except OSError:
            pass


class _Backup:
    """BackupAndRestore's folder: the group-of-one train state after each chunk of epochs
    (`CheckpointStore.save_latest`, with the histories) and `backup.json`: the run and the data
    (`data_fingerprint`) it is a backup of."""

    def __init__(self, cb: BackupAndRestore, run: C.RunConfig, data: dict | None,
                 schedule_fn: Callable | None = None):
        self.cb, self.path, self._store = cb, target(cb), None
        doc = {"format": BACKUP_FORMAT, "config": C.to_dict(run), "data": data}
        if schedule_fn is not None:  # the config holds only a placeholder for it
            doc["schedule_function"] = schedule_fingerprint(schedule_fn)
        self.doc = json.loads(json.dumps(doc))  # as backup.json holds it (tuples as lists)
        self.resumed = self.started = False

    def store(self) -> observers.CheckpointStore:
        if self._store is None:
            self._store = observers.CheckpointStore(self.path)
        return self._store

    def restore(self, template):
        if not observers.CheckpointStore.has_latest(self.path):
            return None  # nothing finished: this fit starts afresh (see `save`)
        try:
            doc = json.loads((self.path / "backup.json").read_text())
        except (OSError, ValueError):
            doc = None
        if not isinstance(doc, dict) or doc.get("format") != BACKUP_FORMAT:
            raise ConfigError(f"BackupAndRestore: {self.path} holds checkpoints without a "
                              "readable backup.json; allowed the backup of this same fit (delete "
                              "the folder to start over)")
        changed = _differences(doc, self.doc)
        if changed:
            raise ConfigError(f"BackupAndRestore: {self.path} is the backup of another fit "
                              f"({'; '.join(changed[:4])}{'; ...' if len(changed) > 4 else ''}); "
                              "allowed the same call on the same data, another backup_dir, or "
                              "deleting this one to start over")
        restored = self.store().restore_latest(template)
        if restored is None:
            return None
        _, state, extra = restored
        self.resumed = True
        return state, extra["histories"]

    def save(self, state, histories) -> None:
        if not (self.resumed or self.started):
            # A fresh start: whatever an earlier fit left (a save killed before it finished,
            # its backup.json) goes, so that this backup is this fit's alone.
            self.close()
            _remove(self.path, BACKUP_ENTRIES)
            self.path.mkdir(parents=True, exist_ok=True)
            atomic.write_json(self.path / "backup.json", self.doc)
        self.started = True
        self.store().save_latest(len(histories[0]["epoch"]), state,
                                 extra={"histories": histories})

    def finish(self) -> None:
        self.close()
        if self.cb.delete_checkpoint:
            shutil.rmtree(self.path, ignore_errors=True)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


def data_fingerprint(*arrays) -> dict:
    """Shapes, dtypes and a hash of about a thousand rows of each array: enough to tell another
    dataset (or validation data where there was none) from the one a backup was made on,
    without hashing all of a large one."""
    digest = hashlib.sha1()
    for a in arrays:
        digest.update(np.ascontiguousarray(a[::max(1, len(a) // 1024)]).tobytes())
    return {"arrays": [f"{str(arr.dtype)}{list(arr.shape)}" for arr in arrays],
            "sha1": digest.hexdigest()}


def _differences(old, new, prefix: str = "") -> list[str]:
    """Where two JSON documents differ, as `path: old -> new` (dotted paths)."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for k in sorted(set(old) | set(new))
                for d in _differences(old.get(k), new.get(k), f"{prefix}{k}.")]
    if old != new:
        show = (lambda v: v if len(repr(v)) < 40 else repr(v)[:37] + "...")  # noqa: E731
        return [f"{prefix[:-1]}: {show(old)!r} -> {show(new)!r}"]
    return []
