"""The host loop and the public `fit`: train, then a `Result` that evaluates, predicts and saves.

Owns the only loop over epochs (`fit_group`: call a compiled group step until every member has
stopped, append the histories, hand each chunk to an observer), `fit_run` (one RunConfig on
device data, returning the weights training ends with) and the Keras-shaped front door,
`fit(x, y, ...)`, with its `Result` and `load`. The numbers come from `jaxmlp.epoch` and
`jaxmlp.group`; files are written only by observers (`jaxmlp.callbacks`) and `Result.save`.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import inspect
import json
import math
import numbers
import re
import secrets
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from jaxmlp import atomic, models, observers, records
from jaxmlp import callbacks as CB
from jaxmlp import config as C
from jaxmlp.config import ConfigError, RunConfig
from jaxmlp.data import DataError, split_indices
from jaxmlp.epoch import EVAL_CHUNK, Data, device_data, evaluate, schedule_fingerprint
from jaxmlp.group import Group, build_group, group_key, init_group, local_mesh

METRIC_KEYS = C.METRICS
# How many chunks the observers may fall behind training. Two: on a GPU a chunk of TA8 epochs
# takes ~0.5 s, and at 9973fdf a group's first observers queued behind the previous group's
# closing writes on the sweep's one writer thread; with one chunk allowed, training waited 20 s
# for them in a warm TA8 sweep on an H200, 16.5 s in a cold one. (runner.IOThread now runs
# observers ahead of closing writes, and a sweep leaves a group's last observers to it.)
OBSERVERS_BEHIND = 2


def empty_history() -> dict:
    return {"epoch": [], **{k: [] for k in METRIC_KEYS}, "learning_rate": [], "epoch_time_s": []}


def fit_group(group: Group, data: Data, *, state=None, histories=None, observe=None,
              clock=None, worker=None, behind: int = OBSERVERS_BEHIND, leave=None):
    """Train every member until all have stopped; returns (state, histories).

    `state`/`histories` resume a group (from a checkpoint). `observe(state, histories, chunk)`
    is called after every `epochs_per_call` epochs, on a host thread of its own while the next
    chunks train (in order, one chunk at a time, with a copy of the histories); it must not
    change anything. The observers may fall at most `behind` chunks behind training, which
    waits for them past that; an exception one raises stops training within `behind` chunks
    and is raised here. Per-epoch times are the chunk's wall time divided by its epochs (one
    sync per chunk). `clock.add(phase, seconds)`, if given, receives the main thread's seconds
    in "train" (the device step up to its records on the host) and "observe" (waiting for the
    observers), and the observer thread's own seconds in "observe_thread". `worker` (an
    executor with one thread, e.g. `runner.IOThread`) runs the observers instead of a thread of
    their own, after whatever was submitted to it before; it is not shut down here. `leave`
    (a list; only with `worker`): the observers still queued or running when training ends
    are appended to it as futures instead of waited for, so the caller can go on (the next
    group) while they finish; it must see them done, and raise their errors, before it uses
    what they write.
    """
    if leave is not None and worker is None:
        raise ValueError("leave: only with a worker that outlives this call")
    if behind < 1:
        raise ValueError(f"behind={behind}: the observers run beside training, at least 1")
    state = init_group(group) if state is None else state
    histories = histories or [empty_history() for _ in group.runs]

    def observed(state, snapshot, chunk):
        start = time.perf_counter()
        observe(state, snapshot, chunk)
        if clock is not None:
            clock.add("observe_thread", time.perf_counter() - start)

    with (ThreadPoolExecutor(1, thread_name_prefix="jaxmlp-observe") if worker is None
          else contextlib.nullcontext(worker)) as worker:
        pending = collections.deque()
        while bool(jnp.any(state.active)):
            start = time.perf_counter()
            state, rec = group.step(state, data)
            rec = jax.device_get(rec)
            trained = time.perf_counter()
            seconds = (trained - start) / group.epochs_per_call
            chunk = _append(histories, rec, seconds)
            if observe is not None:
                while len(pending) >= behind:
                    pending.popleft().result()  # raises what the observer raised
                snapshot = [{k: list(v) for k, v in h.items()} for h in histories]
                pending.append(worker.submit(observed, state, snapshot, chunk))
            if clock is not None:
                clock.add("train", trained - start)
                clock.add("observe", time.perf_counter() - trained)
        waited = time.perf_counter()
        if leave is not None:
            leave.extend(pending)
            pending.clear()
        while pending:
            pending.popleft().result()
        if clock is not None:
            clock.add("observe", time.perf_counter() - waited)
    return state, histories


def _append(histories, rec, seconds):
    """Add the epochs each member actually ran to its history; returns [(member, epoch), ...]."""
    chunk = []
    ran, metrics, lr = rec["ran"], rec["metrics"], rec["lr"]
    for t in range(ran.shape[0]):
        for m, hist in enumerate(histories):
            if not ran[t, m]:
                continue
            hist["epoch"].append(len(hist["epoch"]))
            for i, k in enumerate(METRIC_KEYS):
                hist[k].append(float(metrics[t, m, i]))
            hist["learning_rate"].append(float(lr[t, m]))
            hist["epoch_time_s"].append(seconds)
            chunk.append((m, hist["epoch"][-1]))
    return chunk


def fit_run(run: RunConfig, data: Data, *, epochs_per_call: int = 1, mesh=None,
            schedule_fn=None, observe=None, resume=None):
    """Train one run (a group of one). Returns (final state, history dict, final scores).

    `resume(initial_state)`, if given, returns the (state, histories) to go on from (a backup)
    or None to start from the initial state.

    The state's params and batch_stats are the weights training ends with, the ones the scores
    were computed with: the best epoch's when EarlyStopping(restore_best_weights=True) brought
    them back (Keras's on_train_end), the last epoch's otherwise.
    """
    group = build_group([run], data, epochs_per_call=epochs_per_call, mesh=mesh,
                        schedule_fn=schedule_fn, reuse=True)
    state, histories = init_group(group), None
    restored = resume(state) if resume is not None else None
    if restored is not None:
        state, histories = restored
    state, histories = fit_group(group, data, state=state, histories=histories, observe=observe)
    (params, batch_stats), scores = group.final(state, data)
    state = jax.tree.map(lambda a: a[0], state)
    state = state._replace(params=jax.tree.map(lambda a: a[0], params),
                           batch_stats=jax.tree.map(lambda a: a[0], batch_stats))
    scores = {k: (float(v[0][0]), float(v[1][0])) for k, v in jax.device_get(scores).items()}
    return state, histories[0], scores


# --- The public front door: fit(x, y, ...) -> Result ------------------------------------------

def fit(x, y, *, model: C.ModelConfig | None = None, optimizer: C.OptimConfig | None = None,
        epochs: int = 1, batch_size: int = 32, validation_split: float = 0.0,
        validation_data=None, callbacks=None, seed: int = 0, verbose: int = 1,
        classes: int | None = None, shuffle: bool = True, **keras_only) -> Result:
    """Train an MLP on arrays, as Keras's `model.fit` does; returns a `Result`.

    x: (n, features...) numbers (trailing axes are flattened); y: (n,) integer class ids in
    [0, classes) (`classes` defaults to the largest label + 1). `validation_split` takes the
    LAST fraction of x, y before any shuffling (Keras); `validation_data=(x_val, y_val)` wins
    over it, as in Keras. Defaults are Keras's (epochs 1, batch 32, no validation); the model
    defaults to `MLP()` and the optimizer to `Adam()`. Runs data-parallel over every local
    device. Bad shapes, labels or non-finite inputs raise DataError, bad settings ConfigError,
    before training.
    """
    _check_keras_only(keras_only, shuffle)
    _check_verbose("fit", verbose)
    settings = _settings("fit", model, optimizer, epochs, batch_size, seed)
    x, y, xv, yv, split = _split(x, y, validation_split, validation_data)
    classes = _classes(classes, y, yv)
    run, schedule_fn, files = _planned(settings, callbacks, x.shape[1], classes, split)
    mesh = local_mesh()
    data = device_data(Data(x, y, xv, yv, x[:0], y[:0]), mesh)
    has_val = len(yv) > 0
    keys = _keras_keys(has_val)
    effects = CB.Effects(files, has_val=has_val, run=run, keys=keys,
                         data=CB.data_fingerprint(x, y, xv, yv) if files else None,
                         schedule_fn=schedule_fn, callbacks=callbacks)
    progress = observers.Progress(epochs, quiet=verbose == 0, stream=sys.stdout)
    messages = CB.Messages(callbacks, sys.stdout)  # the callbacks' own verbose=1 lines

    def observe(state, histories, chunk):
        hist = histories[0]
        for _, e in chunk:
            row = {k: hist[k][e] for k in keys}
            if messages:
                messages.begin(e, row)
            progress.update(e, {**row, "epoch_time_s": hist["epoch_time_s"][e]})
            effects.epoch(e, row, state)
            if messages:
                messages.epoch(e, row, state)
        effects.chunk(state, histories)

    def resume(state):
        restored = effects.restore(state)
        if restored is not None and messages:
            messages.resumed(restored[0])
        if restored is not None and verbose:
            print(f"resumed from {effects.backup.path} after {len(restored[1][0]['epoch'])} "
                  "epochs", file=sys.stdout)
        return restored

    try:
        state, history, _ = fit_run(run, data, mesh=mesh, schedule_fn=schedule_fn,
                                    observe=observe, resume=resume)
        messages.end(state)
        effects.finish()
    finally:
        effects.close()
    params, batch_stats = jax.device_get((state.params, state.batch_stats))
    return Result(run, params, batch_stats, {k: history[k] for k in keys})


# What each of fit_many's configs may set; the rest is shared (one data split, one output).
PER_FIT = ("model", "optimizer", "epochs", "batch_size", "callbacks", "seed")


def fit_many(x, y, configs, *, model: C.ModelConfig | None = None,
             optimizer: C.OptimConfig | None = None, epochs: int = 1, batch_size: int = 32,
             validation_split: float = 0.0, validation_data=None, callbacks=None, seed: int = 0,
             verbose: int = 1, classes: int | None = None, shuffle: bool = True,
             **keras_only) -> list[Result]:
    """Several fits on the same arrays, trained as few compiled programs; one `Result` each.

    `configs`: a list of dicts, each setting some of `PER_FIT` (model, optimizer, epochs,
    batch_size, callbacks, seed) for one fit; what a dict leaves out comes from the arguments
    of the same names here, and everything else is shared, as in `fit`. Three seeds of one
    model: `fit_many(x, y, [dict(seed=s) for s in range(3)], model=..., epochs=...)`.

    Fits whose programs have the same shapes (`jaxmlp.group.group_key`, and the same
    LearningRateScheduler function) train together as the members of one program: looped
    over on the CPU, vmapped on accelerators, each stopping on its own callbacks. The i-th
    Result is the one `fit(x, y, **shared, **configs[i])` returns: bit for bit on the CPU,
    to float rounding where members are vmapped. Callbacks that write files (ModelCheckpoint,
    CSVLogger, TensorBoard, BackupAndRestore) are one fit's: refused here, save a Result with
    `r.save(folder)`. verbose=1: a line per program and epoch; 2: a line per fit and epoch.
    """
    _check_keras_only(keras_only, shuffle, "fit_many")
    _check_verbose("fit_many", verbose)
    if isinstance(configs, dict) or not isinstance(configs, (list, tuple)) or not configs:
        raise ConfigError(f"fit_many: configs={_short(configs)} is invalid: allowed a non-empty "
                          "list of dicts, e.g. [dict(seed=s) for s in range(3)]")
    shared = dict(model=model, optimizer=optimizer, epochs=epochs, batch_size=batch_size,
                  callbacks=callbacks, seed=seed)
    _settings("fit_many", model, optimizer, epochs, batch_size, seed)
    asked = []
    for i, cfg in enumerate(configs):
        where = f"fit_many: configs[{i}]"
        if not isinstance(cfg, dict):
            raise ConfigError(f"{where}={_short(cfg)} is invalid: allowed a dict of "
                              + ", ".join(PER_FIT))
        for name in cfg:
            if name not in PER_FIT:
                shared_only = name in inspect.signature(fit_many).parameters
                raise ConfigError(
                    f"{where}: {name}= " + ("is shared by every fit: pass it to fit_many itself"
                                            if shared_only else "is not a fit argument")
                    + "; allowed in a config: " + ", ".join(PER_FIT))
        args = {**shared, **cfg}
        asked.append((_settings(where, *(args[k] for k in PER_FIT if k != "callbacks")),
                      args["callbacks"], where if "callbacks" in cfg else "fit_many"))
    x, y, xv, yv, split = _split(x, y, validation_split, validation_data)
    classes = _classes(classes, y, yv)
    planned = []
    for settings, cbs, where in asked:  # the shared callbacks are blamed on fit_many itself
        try:
            run, schedule_fn, files = _planned(settings, cbs, x.shape[1], classes, split)
        except ConfigError as e:
            raise ConfigError(f"{where}: {str(e).removeprefix('fit: ')}") from None
        if files:
            raise ConfigError(
                f"{where}: {type(files[0]).__name__} writes one fit's files; fit_many takes "
                "the callbacks that write nothing (EarlyStopping, ReduceLROnPlateau, "
                "LearningRateScheduler, CosineSchedule, TerminateOnNaN): save a Result with "
                "r.save(folder), or use jaxmlp.fit")
        planned.append((run, schedule_fn, cbs))

    # Fits that may share a program, in the order their first fit comes.
    groups: dict[tuple, list[int]] = {}
    for i, (run, schedule_fn, _) in enumerate(planned):
        schedule = None if schedule_fn is None else schedule_fingerprint(schedule_fn)
        groups.setdefault((group_key(run), schedule), []).append(i)
    mesh = local_mesh()
    data = device_data(Data(x, y, xv, yv, x[:0], y[:0]), mesh)
    keys = _keras_keys(len(yv) > 0)
    results: list[Result | None] = [None] * len(planned)
    for idx in groups.values():
        runs = [planned[i][0] for i in idx]
        label = f"[{_which(idx, len(planned))}]"
        group = build_group(runs, data, mesh=mesh, schedule_fn=planned[idx[0]][1], reuse=True)
        prefixes = [f"[config {i}] " if len(planned) > 1 else "" for i in idx]
        messages = [CB.Messages(planned[i][2], sys.stdout, member=j, prefix=prefixes[j])
                    for j, i in enumerate(idx)]
        max_epochs = [r.train.epochs for r in runs]
        each = verbose == 2 or (verbose == 1 and len(idx) == 1)  # fit's lines, one per fit

        def observe(state, histories, chunk, label=label, messages=messages, prefixes=prefixes,
                    max_epochs=max_epochs, each=each):
            for j, e in chunk:
                row = {k: histories[j][k][e] for k in keys}
                if messages[j]:
                    messages[j].begin(e, row)
                if each:
                    line = observers.format_epoch(
                        e, max_epochs[j], {**row, "epoch_time_s": histories[j]["epoch_time_s"][e]})
                    print(prefixes[j] + line, file=sys.stdout, flush=True)
                if messages[j]:
                    messages[j].epoch(e, row, state)
            if verbose and not each and chunk:
                active = np.asarray(jax.device_get(state.active))
                print(f"{label} {observers.progress_text(histories, chunk, active, max_epochs)}",
                      file=sys.stdout, flush=True)

        state, histories = fit_group(group, data, observe=observe if verbose or any(messages)
                                     else None)
        (params, batch_stats), _ = group.final(state, data)
        params, batch_stats = jax.device_get((params, batch_stats))
        hooks = state.hooks
        for j, i in enumerate(idx):
            member = jax.tree.map(lambda a, j=j: a[j], (params, batch_stats))
            if messages[j]:
                messages[j].end(state._replace(hooks=jax.tree.map(lambda a, j=j: a[j], hooks)))
            results[i] = Result(runs[j], *member, {k: histories[j][k] for k in keys})
    return results


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _which(idx: list[int], total: int) -> str:
    """A program's fits for its progress lines: `configs 0-2`, `configs 0, 3, 5`, `fit_many`
    (every one)."""
    if len(idx) == total:
        return "fit_many"
    if idx == list(range(idx[0], idx[-1] + 1)) and len(idx) > 2:
        return f"configs {idx[0]}-{idx[-1]}"
    shown = ", ".join(map(str, idx[:6])) + (f", +{len(idx) - 6} more" if len(idx) > 6 else "")
    return ("config " if len(idx) == 1 else "configs ") + shown


# Keras `fit` arguments jaxmlp does not take, and what to do instead.
KERAS_ONLY = {
    "class_weight": "not supported: every example weighs the same",
    "sample_weight": "not supported: every example weighs the same",
    "initial_epoch": "to go on from an interrupted fit, pass jaxmlp.BackupAndRestore(folder)",
    "validation_freq": "not supported: validation runs after every epoch",
    "steps_per_epoch": "not supported: an epoch is one pass over x in batches of batch_size",
    "validation_steps": "not supported: validation covers all of the validation data",
    "validation_batch_size": "not supported: validation is one pass over all of it",
}


# Keras fit's defaults for those arguments: passing one changes nothing, so it is accepted.
KERAS_DEFAULTS = {"class_weight": None, "sample_weight": None, "initial_epoch": 0,
                  "validation_freq": 1, "steps_per_epoch": None, "validation_steps": None,
                  "validation_batch_size": None}


def _is_default(value, default) -> bool:
    if default is None:
        return value is None
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) \
        and value == default


def _check_keras_only(extra: dict, shuffle, where: str = "fit") -> None:
    """One ConfigError for a Keras-only or unknown argument, and for shuffle=False (jaxmlp
    reshuffles every epoch, Keras's default shuffle=True)."""
    if not (isinstance(shuffle, (bool, np.bool_)) and bool(shuffle)):
        raise ConfigError(f"{where}: shuffle={shuffle!r} is not supported: the training data is "
                          "reshuffled every epoch (Keras's default shuffle=True)")
    for name, value in extra.items():
        if name in KERAS_DEFAULTS and _is_default(value, KERAS_DEFAULTS[name]):
            continue  # Keras's own default: what jaxmlp does anyway
        if name in KERAS_ONLY:
            raise ConfigError(f"{where}: {name}= is a Keras fit argument jaxmlp does not take; "
                              f"{KERAS_ONLY[name]}")
        function = fit_many if where == "fit_many" else fit
        allowed = [p for p in inspect.signature(function).parameters if p != "keras_only"]
        raise ConfigError(f"{where}: unknown argument {name}=; allowed " + ", ".join(allowed))


def _check_inference_args(where: str, batch_size, verbose, extra: dict,
                          return_dict=True) -> None:
    """Keras's evaluate/predict arguments: the ones jaxmlp takes are checked, the others are
    one ConfigError each (None, Keras's default for all of them, is accepted)."""
    if batch_size is not None:
        _count("batch_size", batch_size, 1, where)
    if verbose != "auto":
        _check_verbose(where, verbose)
    if not isinstance(return_dict, (bool, np.bool_)):
        raise ConfigError(f"{where}: return_dict={return_dict!r} is invalid: allowed True (a "
                          "dict, jaxmlp's default) or False (Keras's [loss, accuracy])")
    keras = {"sample_weight": "not supported: every example weighs the same",
             "steps": "not supported: all of x is used",
             "callbacks": "not supported: pass callbacks to fit"}
    for name, value in extra.items():
        if name in keras and value is None:
            continue  # Keras's own default
        if name in keras:
            raise ConfigError(f"{where}: {name}= is a Keras {where} argument jaxmlp does not "
                              f"take; {keras[name]}")
        allowed = [p for p in inspect.signature(getattr(Result, where)).parameters
                   if p not in ("self", "keras_only")]
        raise ConfigError(f"{where}: unknown argument {name}=; allowed " + ", ".join(allowed))


def _keras_keys(has_val: bool) -> tuple[str, ...]:
    """Keras's history keys (val_* only with validation data), then the learning rate."""
    metrics = C.METRICS if has_val else tuple(k for k in C.METRICS if not k.startswith("val_"))
    return (*metrics, "learning_rate")


def _check_type(name, value, kind, example, where: str = "fit"):
    if not isinstance(value, kind):
        raise ConfigError(f"{where}: {name}={value!r} is invalid: allowed {example}")


def _check_verbose(where: str, verbose) -> None:
    if verbose not in (0, 1, 2):
        raise ConfigError(f"{where}: verbose={verbose!r} is invalid: allowed 0, 1 or 2")


def _count(name: str, value, lo: int, where: str = "fit") -> int:
    """An integer argument of `fit` (NumPy integers too, as Keras takes them)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < lo:
        raise ConfigError(f"{where}: {name}={value!r} is invalid: allowed an integer >= {lo}")
    return int(value)


def _settings(where: str, model, optimizer, epochs, batch_size, seed) -> tuple:
    """One fit's own arguments, checked, with fit's defaults: (model, optimizer, epochs,
    batch_size, seed)."""
    model = C.ModelConfig() if model is None else model
    optimizer = C.OptimConfig(keras_epsilon=True) if optimizer is None else optimizer
    _check_type("model", model, C.ModelConfig, "jaxmlp.MLP(...)", where)
    _check_type("optimizer", optimizer, C.OptimConfig, "jaxmlp.Adam(...), SGD(...), ...", where)
    counts = (_count(name, value, lo, where) for name, value, lo in (
        ("epochs", epochs, 1), ("batch_size", batch_size, 1), ("seed", seed, 0)))
    return (model, optimizer, *counts)


def _planned(settings: tuple, callbacks, features: int, classes: int, split: float):
    """(RunConfig, LearningRateScheduler function or None, file callbacks) of one fit."""
    model, optimizer, epochs, batch_size, seed = settings
    hooks, schedule_fn, files = CB.plan(callbacks, optimizer.learning_rate)
    run = RunConfig(
        name="fit", model=dataclasses.replace(model, input_dim=features, num_classes=classes),
        optim=optimizer, hooks=hooks,
        train=C.TrainConfig(dataset=None, epochs=epochs, batch_size=batch_size,
                            validation_split=split, seed=seed))
    return run, schedule_fn, files


def _features(x, what: str = "x", *, empty: bool = False) -> np.ndarray:
    """(n, features) float32; trailing axes flattened (an MLP takes flat inputs). No examples
    is a DataError unless `empty` (predict returns an empty array for them)."""
    x = np.asarray(x)
    if (x.ndim < 2 or not np.issubdtype(x.dtype, np.number)
            or np.issubdtype(x.dtype, np.complexfloating)):
        raise DataError(f"{what}: expected real numbers of shape (examples, features...); got "
                        f"{x.dtype} of shape {x.shape}")
    if not len(x) and not empty:
        raise DataError(f"{what}: no examples (shape {x.shape}); allowed at least one")
    return x.reshape(len(x), math.prod(x.shape[1:])).astype(np.float32, copy=False)


def _finite(x: np.ndarray, what: str = "x") -> np.ndarray:
    """`x` (checked float32 features) if every value is finite, else a DataError naming how
    many are not and where the first is. Keras 3 trains on them, and one NaN or infinity in a
    batch makes every weight NaN from that step on (a NaN loss for the rest of the fit)."""
    bad = ~np.isfinite(x)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise DataError(f"{what}: {int(bad.sum())} values are NaN or infinite (the first in "
                        f"example {row}, feature {col}); training on them makes every weight "
                        "NaN: drop or impute those examples first")
    return x


def _labels(y, n: int, what: str = "y") -> np.ndarray:
    """(n,) int32 class ids; (n, 1) is accepted, one-hot is not (Keras's sparse labels)."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or len(y) != n:
        raise DataError(f"{what}: expected {n} integer class ids of shape ({n},); got shape "
                        f"{y.shape}" + (" (one-hot? pass y.argmax(1))" if y.ndim == 2 else ""))
    if y.dtype == bool:  # binary labels as False/True: classes 0 and 1
        y = y.astype(np.int32)
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)):
        raise DataError(f"{what}: labels must be integer class ids >= 0; got {y.dtype} values "
                        "(map names to ids first, e.g. np.unique(y, return_inverse=True)[1])")
    integral = np.issubdtype(y.dtype, np.integer) or (
        np.all(np.isfinite(y)) and np.all(y == np.round(y)))
    if not integral or (y.size and y.min() < 0):
        raise DataError(f"{what}: labels must be integer class ids >= 0; got {y.dtype} values "
                        f"in [{y.min() if y.size else ''}, {y.max() if y.size else ''}]")
    return y.astype(np.int32)


def _split(x, y, validation_split, validation_data):
    """(x, y, x_val, y_val, validation_split recorded) as checked float32 / int32 arrays."""
    x = _finite(_features(x))
    y = _labels(y, len(x))
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise DataError("validation_data: expected a pair (x_val, y_val)")
        xv = _finite(_features(validation_data[0], "validation_data x", empty=True),
                     "validation_data x")
        if not len(xv):
            raise DataError("validation_data: no examples; allowed at least one (or "
                            "validation_data=None to train without validation)")
        yv = _labels(validation_data[1], len(xv), "validation_data y")
        if xv.shape[1] != x.shape[1]:
            raise DataError(f"validation_data x has {xv.shape[1]} features per example, x has "
                            f"{x.shape[1]}")
        return x, y, xv, yv, 0.0
    train, val = split_indices(len(x), validation_split, "tail")
    return x[train], y[train], x[val], y[val], float(validation_split)


def _classes(classes, y, yv) -> int:
    top = int(max(y.max(initial=0), yv.max(initial=0)))
    if classes is None:
        return max(2, top + 1)
    classes = _count("classes", classes, 2)
    if top >= classes:
        raise DataError(f"labels go up to {top} but classes={classes}: allowed 0..{classes - 1}")
    return classes


# --- The trained model: evaluate, predict, save, load -----------------------------------------

FORMAT = "jaxmlp.fit/2"  # model.json names its weights folder (weights.<id>/)
FORMATS = (FORMAT, "jaxmlp.fit/1")  # /1: weights/ (saves before the folder was named)


@dataclasses.dataclass
class Result:
    """What `fit` returns (and `load` reads back): the run, its final weights and its history.

    `params`/`batch_stats` are the weights training ended with (the best epoch's when
    EarlyStopping restored them); `history` maps Keras's keys (loss, accuracy, and val_loss,
    val_accuracy with validation data) plus learning_rate to one value per epoch run.
    """

    config: RunConfig
    params: Any
    batch_stats: Any
    history: dict

    @functools.cached_property
    def _fns(self):
        fns = models.build(self.config.model)
        score = jax.jit(functools.partial(evaluate, fns))
        probs = jax.jit(lambda p, s, x: jax.nn.softmax(fns.apply(p, s, x, train=False)[0]))
        return score, probs

    def evaluate(self, x, y, batch_size=None, verbose="auto", return_dict=True, **keras_only):
        """{"loss", "accuracy"} in inference mode; the loss includes the L2 term, as Keras's.

        Keras's arguments are taken so that Keras code runs: `return_dict=False` gives Keras's
        default `[loss, accuracy]`; `batch_size` (any positive integer) and `verbose` change
        nothing: the examples are evaluated in chunks of EVAL_CHUNK, as validation is during
        fit (so the loss equals the history's val_loss on the same data), and nothing is
        printed. `sample_weight`, `steps` and `callbacks` are one ConfigError."""
        _check_inference_args("evaluate", batch_size, verbose, keras_only, return_dict)
        x = self._inputs(x)
        y = _labels(y, len(x))
        if y.size and y.max() >= self.config.model.num_classes:
            raise DataError(f"y: labels go up to {y.max()}, this model has "
                            f"{self.config.model.num_classes} classes")
        loss, acc = self._fns[0](self.params, self.batch_stats,
                                 models.l2_coefs(self.config.model), x, y)
        out = {"loss": float(loss), "accuracy": float(acc)}
        return out if return_dict else [out["loss"], out["accuracy"]]

    def predict(self, x, batch_size=None, verbose="auto", **keras_only) -> np.ndarray:
        """Class probabilities (softmax of the logits), shape (n, classes), float32.
        `batch_size` and `verbose` are taken as in Keras and change nothing (chunks of
        EVAL_CHUNK, nothing printed); `steps` and `callbacks` are one ConfigError."""
        _check_inference_args("predict", batch_size, verbose, keras_only)
        x = self._inputs(x, empty=True)
        out = [np.asarray(self._fns[1](self.params, self.batch_stats, x[i:i + EVAL_CHUNK]))
               for i in range(0, len(x), EVAL_CHUNK)]
        return np.concatenate(out) if out else np.zeros((0, self.config.model.num_classes),
                                                        np.float32)

    def summary(self, print_fn=print) -> None:
        """Keras's `model.summary()`: the layers of the Keras model that computes the same
        (`records.keras_layers`), their output shapes and parameter counts, and the totals
        (`records.count_params`) with their float32 size. `print_fn` is called with each line."""
        layers = records.keras_layers(self.config.model)
        rows = [(f"{la.name} ({la.kind})", f"(None, {la.units})", f"{la.params:,}")
                for la in layers]
        head = ("Layer (type)", "Output Shape", "Param #")
        w = [max(len(r[i]) for r in (head, *rows)) + (2 if i < 2 else 0) for i in range(3)]
        line = "─" * sum(w)
        n = records.count_params(self.config.model)
        text = ['Model: "mlp"', line, f"{head[0]:<{w[0]}}{head[1]:<{w[1]}}{head[2]:>{w[2]}}",
                line, *(f"{a:<{w[0]}}{b:<{w[1]}}{c:>{w[2]}}" for a, b, c in rows), line,
                *(f"{what} params: {n[key]:,} ({_memory_size(4 * n[key])})" for what, key in (
                    ("Total", "total"), ("Trainable", "trainable"),
                    ("Non-trainable", "non_trainable")))]
        for t in text:
            print_fn(t)

    def _inputs(self, x, *, empty: bool = False) -> np.ndarray:
        x = _features(x, empty=empty)
        if x.shape[1] != self.config.model.input_dim:
            raise DataError(f"x has {x.shape[1]} features per example; this model takes "
                            f"{self.config.model.input_dim}")
        return x

    def save(self, directory) -> None:
        """Weights as an Orbax checkpoint (`weights.<id>/`) and the config and history as JSON
        (`model.json`, which names that folder). A save into a saved model's folder replaces
        it: the new weights are written beside the old ones, then `model.json` is replaced
        atomically (the one moment the model changes), then the old weights go; killed at any
        point, the folder loads as the old model or the new one."""
        save_all([(self, directory)])

    def _weights(self) -> dict:
        return {"params": self.params, "batch_stats": self.batch_stats}


def _memory_size(size: float) -> str:
    """Bytes as Keras's summary writes them: 1024 a step, two decimals ("3.17 MB")."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024:
            return f"{size:.2f} {unit}"
        size /= 1024
    return f"{size:.2f} PB"


def save_all(models, *, at_once: int = 8) -> None:
    """`Result.save` for several `(result, directory)` pairs. Up to `at_once` Orbax saves are
    in flight together (each its own checkpointer, whose commit runs in the background), then
    each folder gets its `model.json` once its weights are written. One after the other, each
    save waited for its own commit: ~20 ms a model on an idle disk here, far more where every
    fsync is slow, and a sweep saves one model per member."""
    if at_once < 1:
        raise ValueError(f"at_once={at_once}: at least 1")
    models = [(result, Path(directory).absolute()) for result, directory in models]
    for _, path in models:  # all checked before anything is written
        _check_model_folder(path)
    for start in range(0, len(models), at_once):
        batch = models[start:start + at_once]
        with _folder_locks([path for _, path in batch]):
            _save_batch(batch)


def _save_batch(batch) -> None:
    writers, names = [], []
    # The weights folder each replaced model names (None where there is no model yet).
    olds = [(_read_model_json(path, missing=None) or {}).get("weights", "weights")
            if (path / "model.json").is_file() else None for _, path in batch]
    try:
        for result, path in batch:
            names.append(f"weights.{secrets.token_hex(4)}")  # beside the old model's
            writers.append(ocp.StandardCheckpointer())
            writers[-1].save(path / names[-1], result._weights())
        for writer in writers:
            writer.wait_until_finished()
    finally:
        for writer in writers:
            writer.close()
    for (result, path), name, was in zip(batch, names, olds):
        atomic.write_json(path / "model.json", {  # the commit: now the new model
            "format": FORMAT, "weights": name, "config": C.to_dict(result.config),
            "history": result.history})
        _remove_old_weights(path, keep=name, old=was)


@contextlib.contextmanager
def _folder_locks(paths, *, shared: bool = False):
    """A lock on each folder's `.jaxmlp-save.lock`: exclusive while a save writes it (two saves
    into one folder at once would each remove the other's weights as leftovers), shared while
    a load reads it. A load locks only where a save made the file (a read-only folder is read
    without one); without fcntl (Windows) nothing is locked."""
    try:
        import fcntl
    except ImportError:
        fcntl = None
    files = []
    try:
        for path in sorted(set(paths)):
            lock = path / ".jaxmlp-save.lock"
            if shared and not lock.is_file():
                continue
            path.mkdir(parents=True, exist_ok=True)
            if fcntl is not None:
                files.append(open(lock, "r" if shared else "a"))  # noqa: SIM115
                fcntl.flock(files[-1], fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        for f in files:
            f.close()  # releases the lock


# The weights folders Result.save writes: weights.<8 hex> (and Orbax's temporary names for one
# being written); `weights` is an older version's, which model.json names by its absence.
_WEIGHTS = re.compile(r"weights(\.[0-9a-f]{8})?")
_WEIGHTS_TMP = re.compile(r"weights(\.[0-9a-f]{8})?\.orbax-checkpoint-tmp.*")


def _remove_old_weights(path: Path, keep: str, old: str | None) -> None:
    """Every weights folder of ours in `path` but `keep` (the one model.json names now): `old`,
    the one the replaced model.json named, and what a save killed before its model.json left
    (`weights.<id>` names are ours alone; a `weights/` only when it was `old`)."""
    for entry in path.iterdir():
        ours = entry.name == old or (entry.name != "weights" and (
            _WEIGHTS.fullmatch(entry.name) or _WEIGHTS_TMP.fullmatch(entry.name)))
        if entry.name != keep and entry.is_dir() and ours:
            shutil.rmtree(entry, ignore_errors=True)


def _weights_of(path: Path, doc: dict) -> Path:
    """The weights folder a Result.save model.json names (`weights` before it named one)."""
    name = doc.get("weights", "weights")
    if not isinstance(name, str) or not _WEIGHTS.fullmatch(name):
        raise DataError(f"{path / 'model.json'}: weights={name!r} is not a weights folder "
                        "Result.save writes")
    return path / name


def _check_model_folder(path: Path) -> None:
    """`Result.save` writes `model.json` and `weights.<id>/` into `path`, replacing a saved
    model's; a `model.json` or `weights/` of anything else, or `path` being a file, is refused
    (nothing is written), so that a save never deletes what it did not write."""
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{path} is a file; Result.save writes a folder (model.json and "
                              "weights/): give a new folder or a saved model's")
    weights, doc = path / "weights", path / "model.json"
    bad = []
    if doc.exists() and (_read_model_json(path, missing=None) or {}).get("format") not in FORMATS:
        bad.append("model.json")
    # Orbax writes a save under a temporary name and renames it: a weights/ of ours is complete.
    if weights.exists() and not (weights / "_CHECKPOINT_METADATA").is_file():
        bad.append("weights")
    if bad:
        raise FileExistsError(f"{path} holds {' and '.join(bad)} that Result.save did not write; "
                              "give a new folder, or a saved model's (which is replaced)")


def _read_model_json(path: Path, *, missing="raise") -> dict | None:
    """`path/model.json` as a dict with a jaxmlp format; None (missing=None) where it is not."""
    if path.exists() and not path.is_dir():
        if missing is None:
            return None
        raise NotADirectoryError(f"{path} is a file; jaxmlp.load takes the folder that "
                                 "Result.save or a ModelCheckpoint wrote")
    try:
        doc = json.loads((path / "model.json").read_text())
    except FileNotFoundError:
        if missing is None:
            return None
        if (path / "backup.json").is_file():
            raise FileNotFoundError(
                f"{path} is a BackupAndRestore folder (the state of an unfinished fit), not a "
                "model: run the same fit again to resume it; jaxmlp.load takes a folder "
                "Result.save or a ModelCheckpoint wrote") from None
        raise FileNotFoundError(f"{path} holds no saved jaxmlp model (no model.json)") from None
    except (ValueError, IsADirectoryError) as e:  # UnicodeDecodeError is a ValueError
        if missing is None:
            return None
        raise DataError(f"{path / 'model.json'} is not a jaxmlp model.json ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") not in (*FORMATS, CB.CHECKPOINT_FORMAT):
        if missing is None:
            return None
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise DataError(f"{path / 'model.json'}: format {got!r}, expected {FORMAT} (Result.save) "
                        f"or {CB.CHECKPOINT_FORMAT} (ModelCheckpoint)")
    return doc


def load(directory) -> Result:
    """A model saved by `Result.save` (predict and evaluate give the same numbers), or the
    folder of a `ModelCheckpoint` callback: its best epoch's weights (save_best_only) or its
    last epoch's. A checkpoint holds weights, not the history: that `Result`'s history is
    empty."""
    path = Path(directory).absolute()
    doc = _read_model_json(path)
    run = C.from_dict(doc["config"])
    params, stats = jax.eval_shape(models.build(run.model).init, jax.random.key(0))
    template = {"params": params, "batch_stats": stats}
    if doc["format"] == CB.CHECKPOINT_FORMAT:
        weights, history = _checkpoint_weights(path, path / doc["kind"], template), {}
    else:
        with _folder_locks([path], shared=True):  # a save waits for this, and this for one
            doc = _read_model_json(path)  # again, under the lock: a save may have just ended
            history = {k: [np.nan if v is None else v for v in vs]
                       for k, vs in doc["history"].items()}
            try:
                with ocp.StandardCheckpointer() as ckpt:
                    weights = ckpt.restore(_weights_of(path, doc), template)
            except ValueError as e:  # Orbax: the tree on disk is not the config's model
                raise DataError(f"{path}: the weights do not fit model.json's config (another "
                                f"architecture: {observers.first_line(e, 160)})") from None
    for (where, got), want in zip(jax.tree_util.tree_leaves_with_path(weights),
                                  jax.tree.leaves(template)):
        if got.shape != want.shape:  # Orbax restores what is on disk, whatever the template
            raise DataError(f"{path}: the weights do not fit model.json's config "
                            f"({jax.tree_util.keystr(where, simple=True, separator='/')}: "
                            f"{tuple(got.shape)} on disk, {tuple(want.shape)} in the config)")
    return Result(run, weights["params"], weights["batch_stats"], history)


def _checkpoint_weights(path: Path, folder: Path, template, *, tries: int = 30,
                        wait: float = 0.1):
    """The newest complete step of a ModelCheckpoint folder. A fit may be writing it: Orbax
    renames a step into place and then deletes the one before, so a read can find the step it
    listed gone or half removed, or no finalized step for a moment (a temporary folder, or the
    new step renamed but not yet marked complete while the old one is being removed). Such a
    read is tried again (up to `tries` times, `wait` s apart); what still fails is one line.
    An empty or missing folder is a FileNotFoundError at once: nothing saved yet."""
    observers.quiet_abandoned_reads()  # Orbax's abandoned reads' echoes ("Event loop is closed")
    error = None
    for attempt in range(tries):
        if attempt:
            time.sleep(wait)
        steps = ocp.utils.checkpoint_steps(folder) if folder.is_dir() else []
        if not steps:
            if folder.is_dir() and any(folder.iterdir()) and attempt + 1 < tries:
                continue  # a save in progress (a load beside a writing fit met it in CI)
            raise FileNotFoundError(f"{path}: the ModelCheckpoint has saved no weights yet "
                                    f"(no complete step under {folder})")
        try:
            with ocp.StandardCheckpointer() as ckpt:
                return ckpt.restore(folder / str(max(steps)) / "state", template)
        except Exception as e:  # noqa: BLE001 (Orbax and TensorStore raise many kinds)
            error = e
    first = observers.first_line(error, 200) if error else "no complete step"
    raise DataError(f"{path}: could not read the ModelCheckpoint's newest weights after {tries} "
                    f"tries ({type(error).__name__ if error else 'empty'}: {first}); a fit may "
                    "still be writing it, or it is damaged")
