"""Keras callbacks as pure hooks: (init, update) pairs over pytree state, run once per epoch.

Every hook keeps its configuration as arrays inside its state, so members of a vmapped sweep
can each have their own patience, factor or monitor, and a checkpoint of the train state
resumes them exactly. Updates use `jnp.where`, never Python `if` on traced values, so they
run eagerly, under `jax.jit`, `jax.vmap` and `lax.scan` alike. A disabled hook is present with
`enabled=False` and never acts, so runs with different callbacks can share one program.

Metrics arrive as a vector in the order of `jaxmlp.config.METRICS`
(loss, accuracy, val_loss, val_accuracy). Comparisons happen in "sign space": a monitored
value v becomes sign * v with sign +1 for min and -1 for max, so smaller is always better.

Keras 3's comparison, shared by EarlyStopping, ReduceLROnPlateau and ModelCheckpoint
(keras/src/callbacks/monitor_callback.py):

    def _is_improvement(self, monitor_value, reference_value):
        if reference_value is None:
            return True
        return self.monitor_op(monitor_value - self.min_delta, reference_value)

with `min_delta *= -1` in min mode, so in sign space it is `current + min_delta < best`, and a
`best` of None (nothing seen yet) accepts ANY first value, NaN and +-inf included. Here that is
the explicit flag `has_best`, not a +inf sentinel (a sentinel would refuse NaN and +inf). Keras
evaluates `current - min_delta` on Python floats (float64) and `ops.less` rounds it to float32;
we add float32(min_delta) in float32. The two agree whenever min_delta is exactly representable
in float32 (0, 0.5, 2**-k, ...); for others (1e-4) they can differ only when current + min_delta
lands within one float32 rounding of best.

Monitors that are not available: with no validation data Keras's EarlyStopping and
ReduceLROnPlateau warn ("... conditioned on metric `val_loss` which is not available") and do
nothing that epoch. `init(..., has_val=False)` leaves every hook that monitors a `val_*` metric
idle (disabled) for the whole run, and `unavailable` gives the warnings to print once.

Composition of a schedule with ReduceLROnPlateau (`HooksConfig.lr_composition`):
    "keras" (Keras 3): the scheduler sets lr = schedule(epoch, lr) at every epoch start, so it
            overwrites the plateau's cuts (which last only until the next epoch begins);
    "scale" (ours):    lr(epoch) = max(schedule(epoch) * plateau_scale, plateau_min_lr), where
            plateau_scale starts at 1 and is multiplied by `factor` at each reduction.
Without a schedule the plateau acts on the LR itself, exactly as Keras (lr = max(lr * factor,
min_lr)).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxmlp import config as C

INF = jnp.inf


def _monitor(name: str) -> jnp.ndarray:
    return jnp.int32(C.METRICS.index(name))


def _signed(metrics, monitor, sign):
    return sign * metrics[monitor]


def _pick(cond, new, old):
    """Tree-wise `where(cond, new, old)` (cond is a scalar)."""
    return jax.tree.map(lambda a, b: jnp.where(cond, a, b), new, old)


# --- EarlyStopping -----------------------------------------------------------------------------

class EarlyStoppingState(NamedTuple):
    enabled: Any
    monitor: Any
    sign: Any
    min_delta: Any
    patience: Any
    baseline: Any  # sign * baseline (ignored when has_baseline is False)
    has_baseline: Any
    start_from_epoch: Any
    restore: Any
    best: Any  # sign * best value (+inf, unused, while has_best is False)
    has_best: Any  # False until the first eligible epoch (Keras's best=None)
    best_epoch: Any
    wait: Any
    stopped_epoch: Any
    stop: Any
    best_weights: Any  # a copy of the weights of the best epoch (when restore is on)


def early_stopping_init(cfg: C.EarlyStopping | None, weights) -> EarlyStoppingState:
    """State for Keras 3 EarlyStopping; `cfg=None` gives a disabled hook."""
    on = cfg is not None
    cfg = cfg or C.EarlyStopping()
    sign = C.monitor_sign(cfg.monitor, cfg.mode)
    baseline = INF if cfg.baseline is None else sign * cfg.baseline
    return EarlyStoppingState(
        enabled=jnp.bool_(on), monitor=_monitor(cfg.monitor), sign=jnp.float32(sign),
        min_delta=jnp.float32(abs(cfg.min_delta)), patience=jnp.int32(cfg.patience),
        baseline=jnp.float32(baseline), has_baseline=jnp.bool_(cfg.baseline is not None),
        start_from_epoch=jnp.int32(cfg.start_from_epoch),
        restore=jnp.bool_(cfg.restore_best_weights), best=jnp.float32(INF),
        has_best=jnp.bool_(False), best_epoch=jnp.int32(0), wait=jnp.int32(0),
        stopped_epoch=jnp.int32(0), stop=jnp.bool_(False), best_weights=weights)


def early_stopping_update(s: EarlyStoppingState, epoch, metrics, weights) -> EarlyStoppingState:
    """Keras 3 EarlyStopping.on_epoch_end (keras/src/callbacks/early_stopping.py), step for step:

        if current is None or epoch < self.start_from_epoch: return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights(); self.best_epoch = epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best = current; self.best_epoch = epoch
            if self.restore_best_weights: self.best_weights = self.model.get_weights()
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0: stop

    The first eligible epoch always improves (best is None), so "weights stored" and has_best
    coincide. (`current is None` is the disabled hook, see `init(has_val=...)`.)
    """
    current = _signed(metrics, s.monitor, s.sign)
    eligible = s.enabled & (epoch >= s.start_from_epoch)
    wait = s.wait + 1
    improved = ~s.has_best | (current + s.min_delta < s.best)
    beats_baseline = ~s.has_baseline | (current + s.min_delta < s.baseline)
    stop_now = ~improved & (wait >= s.patience) & (epoch > 0)
    new = s._replace(
        best=jnp.where(improved, current, s.best), has_best=s.has_best | improved,
        best_epoch=jnp.where(improved, epoch, s.best_epoch),
        wait=jnp.where(improved & beats_baseline, 0, wait),
        stopped_epoch=jnp.where(stop_now, epoch, s.stopped_epoch),
        stop=s.stop | stop_now,
        best_weights=_pick(improved & s.restore, weights, s.best_weights),
    )
    return _pick(eligible, new, s)


def early_stopping_finalize(s: EarlyStoppingState, weights):
    """Keras on_train_end: `if self.restore_best_weights and self.best_weights is not None:
    self.model.set_weights(self.best_weights)`, i.e. whenever an eligible epoch stored weights,
    whatever the best value (NaN and inf included)."""
    restore = s.enabled & s.restore & s.has_best
    return _pick(restore, s.best_weights, weights)


# --- ReduceLROnPlateau -------------------------------------------------------------------------

class PlateauState(NamedTuple):
    enabled: Any
    monitor: Any
    sign: Any
    factor: Any
    patience: Any
    min_delta: Any
    cooldown: Any
    min_lr: Any
    best: Any  # sign * best value (+inf, unused, while has_best is False)
    has_best: Any  # Keras's best is not None
    wait: Any
    cooldown_counter: Any
    scale: Any  # product of the factors applied so far (used when a schedule is on)
    reductions: Any


def plateau_init(cfg: C.ReduceLROnPlateau | None) -> PlateauState:
    """State for Keras 3 ReduceLROnPlateau; `cfg=None` gives a disabled hook."""
    on = cfg is not None
    cfg = cfg or C.ReduceLROnPlateau()
    return PlateauState(
        enabled=jnp.bool_(on), monitor=_monitor(cfg.monitor),
        sign=jnp.float32(C.monitor_sign(cfg.monitor, cfg.mode)),
        factor=jnp.float32(cfg.factor), patience=jnp.int32(cfg.patience),
        min_delta=jnp.float32(abs(cfg.min_delta)), cooldown=jnp.int32(cfg.cooldown),
        min_lr=jnp.float32(cfg.min_lr), best=jnp.float32(INF), has_best=jnp.bool_(False),
        wait=jnp.int32(0),
        cooldown_counter=jnp.int32(0), scale=jnp.float32(1.0), reductions=jnp.int32(0))


def plateau_update(s: PlateauState, metrics, lr):
    """Keras 3 ReduceLROnPlateau.on_epoch_end (keras/src/callbacks/reduce_lr_on_plateau.py).
    Returns (state, new learning rate). Keras:

        if self.in_cooldown(): self.cooldown_counter -= 1; self.wait = 0
        if self._is_improvement(current, self.best): self.best = current; self.wait = 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience and old_lr > np.float32(self.min_lr):
                lr = max(old_lr * factor, min_lr); self.cooldown_counter = cooldown; wait = 0

    The improvement test is EarlyStopping's (`current + min_delta < best` in sign space,
    min_delta absolute); a first value (best is None) always improves.
    """
    current = _signed(metrics, s.monitor, s.sign)
    counter = jnp.where(s.cooldown_counter > 0, s.cooldown_counter - 1, s.cooldown_counter)
    wait = jnp.where(s.cooldown_counter > 0, 0, s.wait)
    improved = ~s.has_best | (current + s.min_delta < s.best)
    counting = ~improved & (counter <= 0)
    wait = jnp.where(improved, 0, jnp.where(counting, wait + 1, wait))
    reduce = counting & (wait >= s.patience) & (lr > s.min_lr)
    new_lr = jnp.where(reduce, jnp.maximum(lr * s.factor, s.min_lr), lr)
    new = s._replace(
        best=jnp.where(improved, current, s.best), has_best=s.has_best | improved,
        wait=jnp.where(reduce, 0, wait),
        cooldown_counter=jnp.where(reduce, s.cooldown, counter),
        scale=jnp.where(reduce, s.scale * s.factor, s.scale),
        reductions=s.reductions + reduce.astype(jnp.int32),
    )
    return _pick(s.enabled, new, s), jnp.where(s.enabled, new_lr, lr)


# --- LearningRateScheduler ---------------------------------------------------------------------

class ScheduleState(NamedTuple):
    enabled: Any
    initial_lr: Any
    period: Any
    min_lr: Any
    hold: Any
    keras: Any  # lr_composition == "keras": the schedule overwrites the plateau's cuts
    lr: Any  # the schedule's own last output (before any plateau scaling)


def schedule_init(cfg: C.CosineSchedule | None, lr, composition: str = "keras") -> ScheduleState:
    """State for a per-epoch schedule; `cfg=None` gives a disabled hook (LR left alone)."""
    on = cfg is not None
    cfg = cfg or C.CosineSchedule()
    return ScheduleState(
        enabled=jnp.bool_(on), initial_lr=jnp.float32(cfg.initial_lr),
        period=jnp.float32(cfg.period), min_lr=jnp.float32(cfg.min_lr),
        hold=jnp.bool_(cfg.hold), keras=jnp.bool_(composition == "keras"), lr=jnp.float32(lr))


def cosine(s: ScheduleState, epoch, lr):
    """The seeds' cosine: min + (initial - min)/2 (1 + cos(pi e / period)); `lr` is unused."""
    del lr
    e = epoch.astype(jnp.float32)
    e = jnp.where(s.hold, jnp.minimum(e, s.period), e)
    return s.min_lr + 0.5 * (s.initial_lr - s.min_lr) * (1 + jnp.cos(jnp.pi * e / s.period))


def schedule_begin(s: ScheduleState, plateau: PlateauState, epoch, lr, fn=None):
    """Keras LearningRateScheduler.on_epoch_begin, composed with the plateau as configured.

    `fn(epoch, lr)` is any jnp function of the 0-based epoch and the previous LR (Keras's
    signature): with the "keras" composition the optimizer's current LR, as Keras passes it;
    with "scale" the schedule's own previous output. By default the seeds' cosine with this
    state's parameters. Returns (state, learning rate for this epoch).
    """
    previous = jnp.where(s.keras, lr, s.lr)
    out = fn(epoch, previous) if fn is not None else cosine(s, epoch, previous)
    out = jnp.asarray(out, jnp.float32)
    floor = jnp.where(plateau.enabled, plateau.min_lr, 0.0)
    scaled = jnp.where(s.keras, out, jnp.maximum(out * plateau.scale, floor))
    return s._replace(lr=jnp.where(s.enabled, out, s.lr)), jnp.where(s.enabled, scaled, lr)


# --- ModelCheckpoint(save_best_only=True) ------------------------------------------------------

class BestState(NamedTuple):
    enabled: Any
    monitor: Any
    sign: Any
    best: Any  # sign * best value (+inf, unused, while has_best is False)
    has_best: Any  # Keras's best is not None
    best_epoch: Any  # -1 before any save
    improved: Any  # True on the epochs where Keras would have saved
    best_weights: Any


def best_init(cfg: C.ModelCheckpoint | None, weights) -> BestState:
    """State that keeps the best weights on device, for the best-checkpoint observer."""
    on = cfg is not None
    cfg = cfg or C.ModelCheckpoint()
    return BestState(
        enabled=jnp.bool_(on), monitor=_monitor(cfg.monitor),
        sign=jnp.float32(C.monitor_sign(cfg.monitor, cfg.mode)), best=jnp.float32(INF),
        has_best=jnp.bool_(False), best_epoch=jnp.int32(-1), improved=jnp.bool_(False),
        best_weights=weights)


def best_update(s: BestState, epoch, metrics, weights) -> BestState:
    """Keras ModelCheckpoint(save_best_only=True): `if self._is_improvement(current, self.best)`
    save (min_delta 0; a first value, NaN or inf included, always saves)."""
    current = _signed(metrics, s.monitor, s.sign)
    improved = s.enabled & (~s.has_best | (current < s.best))
    return s._replace(
        best=jnp.where(improved, current, s.best), has_best=s.has_best | improved,
        best_epoch=jnp.where(improved, epoch, s.best_epoch), improved=improved,
        best_weights=_pick(improved, weights, s.best_weights))


# --- TerminateOnNaN ----------------------------------------------------------------------------

class NanState(NamedTuple):
    enabled: Any
    diverged: Any


def nan_init(enabled: bool) -> NanState:
    return NanState(enabled=jnp.bool_(enabled), diverged=jnp.bool_(False))


def nan_update(s: NanState, metrics) -> NanState:
    """TerminateOnNaN, once per epoch: a non-finite training loss marks the run diverged."""
    return s._replace(diverged=s.diverged | (s.enabled & ~jnp.isfinite(metrics[0])))


# --- All hooks of a run ------------------------------------------------------------------------

class Hooks(NamedTuple):
    early_stopping: EarlyStoppingState
    plateau: PlateauState
    schedule: ScheduleState
    best: BestState
    nan: NanState


def init(cfg: C.HooksConfig, weights, lr, has_val: bool = True) -> Hooks:
    """Every hook of a run, disabled ones included, so that any runs can share one program.

    `has_val=False` (no validation data): hooks monitoring a `val_*` metric stay idle, as Keras
    leaves them when the metric is not in the logs (see `unavailable` for the warnings).
    """
    cfg = available(cfg, has_val)
    return Hooks(
        early_stopping=early_stopping_init(cfg.early_stopping, weights),
        plateau=plateau_init(cfg.reduce_lr),
        schedule=schedule_init(cfg.schedule, lr, cfg.lr_composition),
        best=best_init(cfg.checkpoint, weights),
        nan=nan_init(cfg.terminate_on_nan))


_MONITORED = {"early_stopping": "Early stopping", "reduce_lr": "Learning rate reduction",
              "checkpoint": "Saving the best model"}


def unavailable(cfg: C.HooksConfig, has_val: bool) -> list[str]:
    """Keras's warnings for the hooks `init(cfg, ..., has_val)` leaves idle (one per hook)."""
    if has_val:
        return []
    out = []
    for name, what in _MONITORED.items():
        hook = getattr(cfg, name)
        if hook is not None and hook.monitor.startswith("val_"):
            out.append(f"{what} is conditioned on metric `{hook.monitor}` which is not "
                       "available (no validation data): the callback stays idle. Available "
                       "metrics are: loss,accuracy"
                       + (" (Keras's ModelCheckpoint would save every epoch instead)"
                          if name == "checkpoint" else ""))
    return out


def available(cfg: C.HooksConfig, has_val: bool) -> C.HooksConfig:
    """`cfg` with the hooks whose monitored metric does not exist switched off."""
    if has_val:
        return cfg
    off = {name: None for name in _MONITORED
           if getattr(cfg, name) is not None and getattr(cfg, name).monitor.startswith("val_")}
    return dataclasses.replace(cfg, **off)


def begin_epoch(h: Hooks, epoch, lr, schedule_fn=None):
    """Hooks that act when an epoch begins. Returns (hooks, learning rate for the epoch)."""
    sched, lr = schedule_begin(h.schedule, h.plateau, epoch, lr, schedule_fn)
    return h._replace(schedule=sched), lr


def end_epoch(h: Hooks, epoch, metrics, weights, lr):
    """Hooks that act when an epoch ends. Returns (hooks, new lr, stop)."""
    nan = nan_update(h.nan, metrics)
    es = early_stopping_update(h.early_stopping, epoch, metrics, weights)
    plateau, lr = plateau_update(h.plateau, metrics, lr)
    best = best_update(h.best, epoch, metrics, weights)
    stop = es.stop | nan.diverged
    return Hooks(es, plateau, h.schedule, best, nan), lr, stop


def finalize(h: Hooks, weights):
    """What Keras does at on_train_end: restore the best weights if EarlyStopping asks."""
    return early_stopping_finalize(h.early_stopping, weights)


# --- The one read-only view of hook state for code outside this module -------------------------

class Summary(NamedTuple):
    """What the rest of jaxmlp may read of a run's hooks (arrays; a member axis leads in groups).

    `checkpoint_best` is the best monitored value in the metric's own units (not sign space);
    `checkpoint_weights` are the weights of that epoch (kept only while a checkpoint hook is on).
    """

    early_stopping: Any  # bool: EarlyStopping is on
    stopped_early: Any  # bool: EarlyStopping fired
    es_best_epoch: Any  # the epoch EarlyStopping considers best (0 before any eligible epoch)
    checkpoint: Any  # bool: ModelCheckpoint(save_best_only) is on
    checkpoint_best_epoch: Any  # -1 before any save
    checkpoint_best: Any
    checkpoint_weights: Any
    lr_reductions: Any  # ReduceLROnPlateau cuts so far
    diverged: Any  # TerminateOnNaN fired


def summary(h: Hooks) -> Summary:
    """The read-only view of `h` that observers, runner and records use."""
    return Summary(
        early_stopping=h.early_stopping.enabled, stopped_early=h.early_stopping.stop,
        es_best_epoch=h.early_stopping.best_epoch, checkpoint=h.best.enabled,
        checkpoint_best_epoch=h.best.best_epoch, checkpoint_best=h.best.best * h.best.sign,
        checkpoint_weights=h.best.best_weights, lr_reductions=h.plateau.reductions,
        diverged=h.nan.diverged)


def with_weights(h: Hooks, weights) -> Hooks:
    """`h` with every stored copy of the weights (best so far) set to `weights`."""
    return h._replace(early_stopping=h.early_stopping._replace(best_weights=weights),
                      best=h.best._replace(best_weights=weights))


def where(cond, new, old):
    """Tree-wise `jnp.where(cond, new, old)` for a scalar `cond` (any pytrees, e.g. states)."""
    return _pick(cond, new, old)
