"""jaxmlp.hooks against Keras 3 callback semantics, epoch by epoch, with hand-written expectations.

Every expected value below is derived by hand from the Keras 3 rules (DESIGN.md, "Keras 3
callback semantics to match"); the comment above it shows the derivation. Metrics vectors are in
the order of `config.METRICS`: (loss, accuracy, val_loss, val_accuracy). The weights are a
scalar equal to the epoch that produced them (-1 = the initial weights), so a restore says which
epoch's weights came back.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmlp import config as C
from jaxmlp import hooks as H

INITIAL_WEIGHTS = jnp.float32(-1.0)


def metrics(val_loss=0.5, val_accuracy=0.5, loss=0.5, accuracy=0.5):
    return jnp.array([loss, accuracy, val_loss, val_accuracy], jnp.float32)


def weights_of(epoch):
    return jnp.float32(epoch)


def run_early_stopping(cfg, trace, column="val_loss"):
    """Feed `trace` (one value of `column` per epoch) until the hook stops; a list of states."""
    state = H.early_stopping_init(cfg, INITIAL_WEIGHTS)
    states = []
    for epoch, value in enumerate(trace):
        m = metrics(**{column: value})
        state = H.early_stopping_update(state, jnp.int32(epoch), m, weights_of(epoch))
        states.append(state)
        if state.stop:
            break
    return states


def run_plateau(cfg, trace, lr=1.0, column="val_loss"):
    """Feed `trace` to ReduceLROnPlateau; the states and the LR after each epoch."""
    state = H.plateau_init(cfg)
    states, lrs = [], []
    for value in trace:
        state, lr = H.plateau_update(state, metrics(**{column: value}), jnp.float32(lr))
        states.append(state)
        lrs.append(float(lr))
    return states, lrs


def field(states, name):
    return [np.asarray(getattr(s, name)).item() for s in states]


# --- EarlyStopping -----------------------------------------------------------------------------

def test_patience_3_on_a_flat_val_loss_runs_4_epochs():
    # Keras: epoch 0 improves on best=None (wait 1 -> 0); epochs 1, 2, 3 do not: wait 1, 2, 3;
    # at epoch 3 wait >= patience and epoch > 0, so training stops after 4 epochs (the Keras
    # docstring's "Only 4 epochs are run").
    states = run_early_stopping(C.EarlyStopping(patience=3), [0.5] * 10)
    assert len(states) == 4
    assert field(states, "wait") == [0, 1, 2, 3]
    assert field(states, "stop") == [False, False, False, True]
    assert int(states[-1].stopped_epoch) == 3
    assert int(states[-1].best_epoch) == 0


def test_patience_0_stops_at_the_first_epoch_without_improvement_but_never_at_epoch_0():
    # Epoch 0 always improves (wait reset to 0); epoch 1 is flat: wait 1 >= 0 and epoch > 0.
    states = run_early_stopping(C.EarlyStopping(patience=0), [0.5] * 10)
    assert len(states) == 2
    assert int(states[-1].stopped_epoch) == 1


def test_a_baseline_never_beaten_stops_after_patience_epochs_and_restores_the_best_of_them():
    # baseline 0.3, patience 3. wait += 1 comes first and is reset only when the value beats the
    # baseline too, which never happens:
    #   epoch 0: 0.9 improves on None -> best 0.9 (epoch 0); 0.9 > 0.3 so wait stays 1
    #   epoch 1: 0.7 improves         -> best 0.7 (epoch 1); wait stays 2 (an improving epoch
    #            never triggers the stop check)
    #   epoch 2: 0.8 no improvement, wait 3 >= 3 and epoch > 0 -> stop
    # 3 epochs ran (= patience) and the restore brings back epoch 1, the best of those 3.
    cfg = C.EarlyStopping(patience=3, baseline=0.3, restore_best_weights=True)
    states = run_early_stopping(cfg, [0.9, 0.7, 0.8, 0.2, 0.1])
    assert field(states, "wait") == [1, 2, 3]
    assert field(states, "best_epoch") == [0, 1, 1]
    assert len(states) == 3 and int(states[-1].stopped_epoch) == 2
    restored = H.early_stopping_finalize(states[-1], weights_of(2))
    np.testing.assert_allclose(restored, 1.0)


def test_beating_the_baseline_resets_wait():
    # baseline 0.6, patience 2: epoch 0 (0.9) improves but misses the baseline, wait 1; epoch 1
    # (0.5) improves and beats 0.6, wait 0; epochs 2, 3 are flat: wait 1, 2 -> stop at epoch 3.
    states = run_early_stopping(C.EarlyStopping(patience=2, baseline=0.6), [0.9, 0.5, 0.5, 0.5])
    assert field(states, "wait") == [1, 0, 1, 2]
    assert int(states[-1].stopped_epoch) == 3


def test_restore_best_weights_at_the_end_of_training_when_stopping_never_fired():
    # patience 5 over 5 epochs never stops: best 0.9 (e0), 0.4 (e1, wait 0), then 0.6, 0.7, 0.5
    # do not improve (wait 1, 2, 3 < 5). Keras's on_train_end still restores the best epoch: 1.
    trace = [0.9, 0.4, 0.6, 0.7, 0.5]
    states = run_early_stopping(C.EarlyStopping(patience=5, restore_best_weights=True), trace)
    assert len(states) == 5 and not bool(states[-1].stop)
    assert field(states, "wait") == [0, 0, 1, 2, 3]
    np.testing.assert_allclose(H.early_stopping_finalize(states[-1], weights_of(4)), 1.0)
    # Without restore_best_weights the last epoch's weights are kept.
    plain = run_early_stopping(C.EarlyStopping(patience=5), trace)[-1]
    np.testing.assert_allclose(H.early_stopping_finalize(plain, weights_of(4)), 4.0)


def test_start_from_epoch_ignores_the_epochs_before_it():
    # start_from_epoch 2, patience 1. Epochs 0 and 1 are ignored even though 0.1 and 0.2 are the
    # lowest values: no best, no wait. Epoch 2: 0.9 improves on None (best epoch 2, wait 0);
    # epoch 3: flat, wait 1 >= 1 -> stop. The restore brings back epoch 2, not epoch 0.
    cfg = C.EarlyStopping(patience=1, start_from_epoch=2, restore_best_weights=True)
    states = run_early_stopping(cfg, [0.1, 0.2, 0.9, 0.9, 0.9])
    assert field(states, "wait") == [0, 0, 0, 1]
    assert field(states, "best") == [math.inf, math.inf, pytest.approx(0.9), pytest.approx(0.9)]
    assert field(states, "best_epoch") == [0, 0, 2, 2]
    assert int(states[-1].stopped_epoch) == 3
    np.testing.assert_allclose(H.early_stopping_finalize(states[-1], weights_of(3)), 2.0)


@pytest.mark.parametrize("mode", ["max", "auto"])
def test_mode_max_on_val_accuracy_and_auto_picks_max_for_accuracy(mode):
    # Larger is better: 0.5 (best), 0.6 (best, wait 0), 0.55 (no: wait 1 >= 1 -> stop at 2).
    cfg = C.EarlyStopping(monitor="val_accuracy", mode=mode, patience=1)
    states = run_early_stopping(cfg, [0.5, 0.6, 0.55, 0.58], column="val_accuracy")
    assert field(states, "best_epoch") == [0, 1, 1]
    assert int(states[-1].stopped_epoch) == 2


def test_mode_min_on_val_accuracy_treats_a_rise_as_no_improvement():
    # The same trace with mode='min': 0.6 is worse than 0.5, wait 1 >= 1 -> stop at epoch 1.
    cfg = C.EarlyStopping(monitor="val_accuracy", mode="min", patience=1)
    states = run_early_stopping(cfg, [0.5, 0.6, 0.55, 0.58], column="val_accuracy")
    assert int(states[-1].stopped_epoch) == 1


@pytest.mark.parametrize("min_delta", [0.1, -0.1])  # Keras takes abs(min_delta)
def test_improvements_smaller_than_min_delta_count_as_no_improvement(min_delta):
    # An improvement needs current < best - 0.1. best 1.0 at epoch 0; 0.95 and 0.92 are lower
    # but not by 0.1: wait 1, 2 -> stop at epoch 2 (patience 2), best still 1.0 from epoch 0.
    trace = [1.0, 0.95, 0.92, 0.85]
    states = run_early_stopping(C.EarlyStopping(patience=2, min_delta=min_delta), trace)
    assert field(states, "wait") == [0, 1, 2]
    assert int(states[-1].stopped_epoch) == 2
    np.testing.assert_allclose(states[-1].best, 1.0)
    # With min_delta 0 each of those epochs improves and training never stops.
    assert not bool(run_early_stopping(C.EarlyStopping(patience=2), trace)[-1].stop)


# --- ReduceLROnPlateau -------------------------------------------------------------------------

def test_reduce_lr_on_plateau_with_cooldown_and_the_min_lr_floor():
    # factor 0.5, patience 2, cooldown 2, min_lr 0.2, lr 1.0, flat val_loss. Keras, per epoch:
    # in cooldown -> counter -= 1 and wait = 0; then, unless improved and if *now* out of
    # cooldown, wait += 1 and at wait >= patience with lr > min_lr: lr = max(lr/2, 0.2),
    # counter = 2, wait = 0.
    #   e0 improves (best 1.0)                        wait 0  counter 0  lr 1.0
    #   e1                                            wait 1             lr 1.0
    #   e2 wait 2 -> reduce                           wait 0  counter 2  lr 0.5
    #   e3 cooldown 2 -> 1, still in cooldown          wait 0  counter 1
    #   e4 cooldown 1 -> 0, counts                    wait 1  counter 0
    #   e5 wait 2 -> reduce                           wait 0  counter 2  lr 0.25
    #   e6, e7 as e3, e4                              wait 0, 1
    #   e8 wait 2 -> reduce: max(0.125, 0.2)           wait 0  counter 2  lr 0.2
    #   e9, e10 as e3, e4                             wait 0, 1
    #   e11 wait 2 but lr 0.2 is not > min_lr: no reduction, wait is not reset, no cooldown
    #   e12, e13 wait keeps counting: 3, 4
    cfg = C.ReduceLROnPlateau(factor=0.5, patience=2, cooldown=2, min_lr=0.2)
    states, lrs = run_plateau(cfg, [1.0] * 14)
    np.testing.assert_allclose(
        lrs, [1, 1, .5, .5, .5, .25, .25, .25, .2, .2, .2, .2, .2, .2], rtol=1e-6)
    assert field(states, "wait") == [0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 2, 3, 4]
    assert field(states, "cooldown_counter") == [0, 0, 2, 1, 0, 2, 1, 0, 2, 1, 0, 0, 0, 0]
    assert field(states, "reductions") == [0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3, 3]
    np.testing.assert_allclose(states[-1].scale, 0.125)  # three factors applied


def test_cooldown_1_skips_no_epoch_because_keras_decrements_before_checking():
    # Keras decrements the counter first and then asks in_cooldown() again, so cooldown=1 ends
    # on the very next epoch. patience 1, flat: e0 improves, then every epoch reduces.
    _, lrs = run_plateau(C.ReduceLROnPlateau(factor=0.5, patience=1, cooldown=1), [1.0] * 5)
    np.testing.assert_allclose(lrs, [1, .5, .25, .125, .0625], rtol=1e-6)


@pytest.mark.parametrize("min_delta", [0.01, -0.01])  # Keras takes abs(min_delta) here too
def test_plateau_min_delta_is_absolute_and_patience_0_reduces_on_the_first_flat_epoch(min_delta):
    # Keras: improvement iff current < best - min_delta, an ABSOLUTE threshold, here 0.01 on
    # negative values. (optax.contrib.reduce_on_plateau uses a relative tolerance,
    # current < best * (1 - rtol): on negative values best * (1 - rtol) lies ABOVE best, so a
    # worse value counts as an improvement; it only minimises; and it reduces when its
    # counter *equals* patience, so with patience 0 it reduces on the epochs that improve.)
    # patience 0: each epoch that does not improve reduces at once (wait 1 >= 0).
    #   e0 -1.0    improves (best -1.0)                            lr 1.0
    #   e1 -1.005  not below -1.01: wait 1 -> reduce               lr 0.5
    #   e2 -1.02   below -1.01: best -1.02, wait 0                 lr 0.5
    #   e3 -1.025  not below -1.03: reduce                         lr 0.25
    #   e4 -1.5    below -1.03: improves                           lr 0.25
    cfg = C.ReduceLROnPlateau(factor=0.5, patience=0, min_delta=min_delta)
    states, lrs = run_plateau(cfg, [-1.0, -1.005, -1.02, -1.025, -1.5])
    np.testing.assert_allclose(lrs, [1, .5, .5, .25, .25], rtol=1e-6)
    np.testing.assert_allclose(field(states, "best"), [-1.0, -1.0, -1.02, -1.02, -1.5],
                               rtol=1e-6)
    assert field(states, "reductions") == [0, 1, 1, 2, 2]


def test_plateau_mode_auto_maximises_accuracy():
    # val_accuracy 0.5, 0.7, 0.6: 0.6 is not above 0.7 + 1e-4 -> wait 1 >= 1 -> lr * 0.1.
    cfg = C.ReduceLROnPlateau(monitor="val_accuracy", patience=1)
    _, lrs = run_plateau(cfg, [0.5, 0.7, 0.6], column="val_accuracy")
    np.testing.assert_allclose(lrs, [1, 1, .1], rtol=1e-6)


def test_a_disabled_plateau_leaves_the_lr_alone():
    _, lrs = run_plateau(None, [1.0] * 5, lr=0.3)
    np.testing.assert_allclose(lrs, [0.3] * 5, rtol=1e-6)


# --- Schedules and their composition with the plateau ------------------------------------------

def seed_cosine(epoch, initial=1e-3, period=10):
    """The seeds' per-epoch cosine, written out with math.cos."""
    return initial * 0.5 * (1 + math.cos(math.pi * epoch / period))


def run_hooks(cfg, val_losses, lr, schedule_fn=None):
    """Drive H.begin_epoch/H.end_epoch like train.run_epoch; the LR each epoch trained with."""
    hooks = H.init(cfg, INITIAL_WEIGHTS, jnp.float32(lr))
    lr = jnp.float32(lr)
    used = []
    for epoch, value in enumerate(val_losses):
        e = jnp.int32(epoch)
        hooks, lr = H.begin_epoch(hooks, e, lr, schedule_fn)
        used.append(float(lr))
        hooks, lr, _ = H.end_epoch(hooks, e, metrics(val_loss=value), weights_of(epoch), lr)
    return hooks, used


def test_cosine_schedule_alone_follows_the_seeds_formula_and_repeats_after_its_period():
    # lr(e) = 1e-3 * 0.5 * (1 + cos(pi e / 10)); as written it climbs back after e = 10.
    # hold=True keeps min_lr (0 here) from e = 10 on instead.
    cfg = C.HooksConfig(schedule=C.CosineSchedule(initial_lr=1e-3, period=10))
    _, used = run_hooks(cfg, [0.5] * 15, lr=1e-3)
    np.testing.assert_allclose(used, [seed_cosine(e) for e in range(15)], rtol=1e-5, atol=1e-10)
    held = C.HooksConfig(schedule=C.CosineSchedule(initial_lr=1e-3, period=10, hold=True))
    _, used = run_hooks(held, [0.5] * 15, lr=1e-3)
    np.testing.assert_allclose(used, [seed_cosine(min(e, 10)) for e in range(15)], rtol=1e-5,
                               atol=1e-10)


def test_keras_composition_lets_the_scheduler_overwrite_the_plateau_cuts():
    # Keras 3 with LearningRateScheduler(cosine, period 10) and ReduceLROnPlateau(factor 0.5,
    # patience 3, min_lr 1e-4) on a flat val_loss, by hand over 12 epochs:
    #   begin e: lr = cosine(e) (on_epoch_begin sets it, whatever the plateau did).
    #   end e0: best = 0.5. e1, e2, e3: wait 1, 2, 3 -> at e3 old_lr = cos(3) = 7.94e-4 > 1e-4:
    #   cut to 3.97e-4, wait 0 -- and e4 begins with lr = cos(4) again.
    #   e4, e5, e6: wait 1, 2, 3 -> cut at e6 (cos(6) = 3.45e-4 > 1e-4), overwritten at e7.
    #   e7, e8, e9: wait 1, 2, 3; at e9 old_lr = cos(9) = 2.45e-5 is not > 1e-4: no cut, wait
    #   stays 3; e10 (lr 0) and e11 (2.45e-5): wait 4, 5, still not > min_lr. Two cuts in all.
    cfg = C.HooksConfig(schedule=C.CosineSchedule(initial_lr=1e-3, period=10),
                        reduce_lr=C.ReduceLROnPlateau(factor=0.5, patience=3, min_lr=1e-4))
    assert cfg.lr_composition == "keras"
    hooks, used = run_hooks(cfg, [0.5] * 12, lr=1e-3)
    np.testing.assert_allclose(used, [seed_cosine(e) for e in range(12)], rtol=1e-5, atol=1e-10)
    assert int(hooks.plateau.reductions) == 2
    assert int(hooks.plateau.wait) == 5


def test_keras_composition_passes_the_current_lr_to_a_custom_schedule():
    # Keras calls schedule(epoch, optimizer.learning_rate): a plateau cut is what a schedule
    # that keeps its input sees. schedule = identity; patience 1, factor 0.5, flat loss:
    # e0 best; e1 wait 1 -> cut 1e-2 -> 5e-3; e2 begins with 5e-3, wait 1 -> cut 2.5e-3; ...
    cfg = C.HooksConfig(schedule=C.CosineSchedule(),
                        reduce_lr=C.ReduceLROnPlateau(factor=0.5, patience=1))
    _, used = run_hooks(cfg, [0.5] * 5, lr=1e-2, schedule_fn=lambda epoch, lr: lr)
    np.testing.assert_allclose(used, [1e-2, 1e-2, 5e-3, 2.5e-3, 1.25e-3], rtol=1e-6)


def test_schedule_and_plateau_compose_as_max_of_scaled_schedule_and_min_lr():
    # lr_composition="scale" (ours): lr(e) = max(cosine(e) * scale, min_lr). Plateau:
    # patience 3, factor 0.5, min_lr 1e-4, flat val_loss. e0 improves; wait 1, 2, 3 at e1, e2,
    # e3 -> reduce at the end of e3 (scale 0.5);
    # wait 1, 2, 3 at e4, e5, e6 -> reduce at the end of e6 (scale 0.25); e7, e8, e9 count again,
    # but at e9 the composed lr is already the floor: max(cos(9)/4, 1e-4) = 1e-4, which is not
    # > min_lr, so there is no third reduction.
    cfg = C.HooksConfig(schedule=C.CosineSchedule(initial_lr=1e-3, period=10),
                        reduce_lr=C.ReduceLROnPlateau(factor=0.5, patience=3, min_lr=1e-4),
                        lr_composition="scale")
    hooks, used = run_hooks(cfg, [0.5] * 10, lr=1e-3)
    scale = [1, 1, 1, 1, .5, .5, .5, .25, .25, .25]
    expected = [max(seed_cosine(e) * s, 1e-4) for e, s in enumerate(scale)]
    # By hand: e4 = 0.6545e-3 * 0.5, e7 = 0.2061e-3 * 0.25 = 0.515e-4 -> floored to 1e-4.
    np.testing.assert_allclose(expected[4], 0.5 * 0.5e-3 * (1 + math.cos(0.4 * math.pi)))
    assert expected[7:] == [1e-4] * 3
    np.testing.assert_allclose(used, expected, rtol=1e-5)
    assert int(hooks.plateau.reductions) == 2
    np.testing.assert_allclose(hooks.plateau.scale, 0.25)


def test_a_custom_schedule_fn_has_the_keras_learning_rate_scheduler_signature():
    # The Keras LearningRateScheduler docstring's example: keep lr for 10 epochs, then
    # lr * exp(-0.1) per epoch. `lr` is the previous output, starting from the optimizer's LR
    # (0.01); epochs 10..14 apply the decay 5 times: 0.01 * exp(-0.5) = 0.00607 after 15.
    def scheduler(epoch, lr):
        return jnp.where(epoch < 10, lr, lr * jnp.exp(-0.1))

    cfg = C.HooksConfig(schedule=C.CosineSchedule())  # enables the hook; fn replaces the cosine
    hooks, used = run_hooks(cfg, [0.5] * 15, lr=0.01, schedule_fn=scheduler)
    expected = [0.01] * 10 + [0.01 * math.exp(-0.1 * k) for k in range(1, 6)]
    np.testing.assert_allclose(used, expected, rtol=1e-5)
    assert round(float(hooks.schedule.lr), 5) == 0.00607
    # The hook is switched per run by HooksConfig.schedule: without it the fn is not applied.
    _, used = run_hooks(C.HooksConfig(), [0.5] * 12, lr=0.01, schedule_fn=scheduler)
    np.testing.assert_allclose(used, [0.01] * 12, rtol=1e-6)


# --- ModelCheckpoint(save_best_only=True) and TerminateOnNaN -----------------------------------

def test_best_checkpoint_marks_the_epochs_keras_would_save():
    # val_accuracy (auto -> max) 0.5, 0.4, 0.7, 0.7, 0.8: saves at 0, 2 and 4 (0.7 == 0.7 is not
    # an improvement); the kept weights are epoch 4's.
    state = H.best_init(C.ModelCheckpoint(monitor="val_accuracy"), INITIAL_WEIGHTS)
    saved = []
    for epoch, value in enumerate([0.5, 0.4, 0.7, 0.7, 0.8]):
        state = H.best_update(state, jnp.int32(epoch), metrics(val_accuracy=value),
                              weights_of(epoch))
        saved.append(bool(state.improved))
    assert saved == [True, False, True, False, True]
    assert int(state.best_epoch) == 4
    np.testing.assert_allclose(state.best_weights, 4.0)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_training_loss_marks_the_run_diverged_and_stops_it(bad):
    state = H.nan_update(H.nan_init(True), metrics(loss=1.0))
    assert not bool(state.diverged)
    state = H.nan_update(state, metrics(loss=bad))
    assert bool(state.diverged)
    assert bool(H.nan_update(state, metrics(loss=1.0)).diverged)  # stays diverged
    # Through end_epoch (terminate_on_nan is on by default): stop.
    hooks = H.init(C.HooksConfig(), INITIAL_WEIGHTS, jnp.float32(1e-3))
    _, _, stop = H.end_epoch(hooks, jnp.int32(0), metrics(loss=bad), weights_of(0),
                             jnp.float32(1e-3))
    assert bool(stop)


def test_the_nan_guard_watches_only_the_training_loss_and_can_be_switched_off():
    # Keras's TerminateOnNaN reads logs["loss"] only.
    assert not bool(H.nan_update(H.nan_init(True), metrics(val_loss=math.nan)).diverged)
    assert not bool(H.nan_update(H.nan_init(False), metrics(loss=math.nan)).diverged)
    hooks = H.init(C.HooksConfig(terminate_on_nan=False), INITIAL_WEIGHTS, jnp.float32(1e-3))
    _, _, stop = H.end_epoch(hooks, jnp.int32(0), metrics(loss=math.nan), weights_of(0),
                             jnp.float32(1e-3))
    assert not bool(stop)


# --- The same traces eagerly, under jit, vmap and lax.scan -------------------------------------

CONFIGS = [
    C.HooksConfig(early_stopping=C.EarlyStopping(patience=2),
                  reduce_lr=C.ReduceLROnPlateau(factor=0.5, patience=1)),
    C.HooksConfig(early_stopping=C.EarlyStopping(patience=1, min_delta=0.05,
                                                 restore_best_weights=True),
                  reduce_lr=C.ReduceLROnPlateau(factor=0.2, patience=2, cooldown=1, min_lr=0.1)),
    C.HooksConfig(early_stopping=C.EarlyStopping(monitor="val_accuracy", mode="max", patience=3),
                  reduce_lr=C.ReduceLROnPlateau(monitor="val_accuracy", patience=0)),
    C.HooksConfig(early_stopping=C.EarlyStopping(baseline=0.3, patience=2, start_from_epoch=1,
                                                 restore_best_weights=True),
                  reduce_lr=C.ReduceLROnPlateau(factor=0.5, patience=1, min_lr=1e-4),
                  schedule=C.CosineSchedule(initial_lr=1e-3, period=4)),
]
EPOCHS = 8


def traces():
    """Four different noisy metric sequences, (member, epoch, metric)."""
    rng = np.random.default_rng(0)
    val_loss = 1.0 - 0.02 * np.arange(EPOCHS) + rng.normal(0, 0.05, (4, EPOCHS))
    val_acc = 0.5 + 0.01 * np.arange(EPOCHS) + rng.normal(0, 0.03, (4, EPOCHS))
    loss = val_loss - 0.1
    loss[0, 4] = np.nan  # member 0 diverges at epoch 4
    acc = val_acc + 0.05
    return np.stack([loss, acc, val_loss, val_acc], axis=-1).astype(np.float32)


def where(cond, new, old):
    return jax.tree.map(lambda a, b: jnp.where(cond, a, b), new, old)


def epoch_step(carry, xs):
    """One epoch as train.run_epoch runs it; a stopped run passes through unchanged."""
    hooks, lr, active = carry
    epoch, m = xs
    weights = {"w": jnp.full((2,), epoch, jnp.float32)}
    hooks, lr_used = H.begin_epoch(hooks, epoch, lr)
    hooks, next_lr, stop = H.end_epoch(hooks, epoch, m, weights, lr_used)
    new = (hooks, next_lr, ~stop)
    return where(active, new, carry), (lr_used, active)


def first_carry(cfg):
    lr = jnp.float32(1e-3)
    return H.init(cfg, {"w": jnp.full((2,), -1.0, jnp.float32)}, lr), lr, jnp.bool_(True)


def run_eagerly(cfg, trace, step=epoch_step):
    carry, out = first_carry(cfg), []
    for epoch in range(EPOCHS):
        carry, y = step(carry, (jnp.int32(epoch), jnp.asarray(trace[epoch])))
        out.append(y)
    return carry, jax.tree.map(lambda *ys: jnp.stack(ys), *out)


def run_scanned(carry, trace):
    return jax.lax.scan(epoch_step, carry, (jnp.arange(EPOCHS, dtype=jnp.int32), trace))


def assert_same(a, b):
    """Counters, flags and epochs exactly; floats to float32 rounding (XLA may fuse ops)."""
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        x, y = np.asarray(x), np.asarray(y)
        if np.issubdtype(x.dtype, np.floating):
            np.testing.assert_allclose(x, y, rtol=1e-6)
        else:
            np.testing.assert_array_equal(x, y)


def test_the_same_traces_give_identical_results_eagerly_under_jit_scan_and_vmap():
    data = traces()
    eager = [run_eagerly(cfg, data[i]) for i, cfg in enumerate(CONFIGS)]  # op by op
    # The traces must exercise the hooks, or the comparison proves little.
    finals = [carry for carry, _ in eager]
    assert any(bool(h.early_stopping.stop) for h, _, _ in finals)
    assert any(int(h.plateau.reductions) > 0 for h, _, _ in finals)
    assert any(bool(h.nan.diverged) for h, _, _ in finals)
    assert len({int(h.early_stopping.stopped_epoch) for h, _, _ in finals}) > 1

    jitted = jax.jit(epoch_step)
    scanned = jax.jit(run_scanned)
    for i, cfg in enumerate(CONFIGS):
        assert_same(run_eagerly(cfg, data[i], step=jitted), eager[i])
        assert_same(scanned(first_carry(cfg), jnp.asarray(data[i])), eager[i])

    stacked = jax.tree.map(lambda *x: jnp.stack(x), *[first_carry(cfg) for cfg in CONFIGS])
    vmapped = jax.jit(jax.vmap(run_scanned))(stacked, jnp.asarray(data))
    for i in range(len(CONFIGS)):
        assert_same(jax.tree.map(lambda a, i=i: a[i], vmapped), eager[i])


# --- Configuration errors ----------------------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda: C.EarlyStopping(monitor="val_acc"),
    lambda: C.ReduceLROnPlateau(monitor="val_acc"),
    lambda: C.ModelCheckpoint(monitor="val_acc"),
])
def test_an_unknown_monitor_is_an_error_that_lists_the_available_metrics(make):
    with pytest.raises(C.ConfigError, match="val_acc") as err:
        make()
    for name in ("'loss'", "'accuracy'", "'val_loss'", "'val_accuracy'"):
        assert name in str(err.value)


@pytest.mark.parametrize("factor", [1.0, 1.5, 0.0])
def test_a_plateau_factor_outside_0_1_is_an_error(factor):
    # Keras: "ReduceLROnPlateau does not support a factor >= 1.0"; 0 would zero the LR.
    with pytest.raises(C.ConfigError, match="factor"):
        C.ReduceLROnPlateau(factor=factor)


@pytest.mark.parametrize("make", [
    lambda: C.EarlyStopping(patience=-1),
    lambda: C.ReduceLROnPlateau(patience=-1),
    lambda: C.ReduceLROnPlateau(cooldown=-1),
    lambda: C.EarlyStopping(start_from_epoch=-1),
])
def test_negative_patience_and_counters_are_errors(make):
    with pytest.raises(C.ConfigError, match="integer >= 0"):
        make()


# --- Edge cases: no best yet (Keras's best=None), non-finite values, min_delta's form ----------
# Keras 3 code these traces follow (keras/src/callbacks/monitor_callback.py):
#     _is_improvement(current, best): True if best is None, else
#                                     monitor_op(current - min_delta, best)
# with min_delta negated in min mode, i.e. `current + min_delta < best` for a loss. NaN compares
# False with everything, so a NaN best is never improved on.

def test_a_nan_first_value_becomes_the_best_and_blocks_every_later_improvement():
    # Keras, patience 1, val_loss [nan, 0.5, 0.4]:
    #   e0: best None -> improvement: best = nan, best_epoch 0, wait 1 -> 0
    #   e1: wait 1; less(0.5 + 0, nan) is False -> wait 1 >= 1 and epoch > 0: stop at epoch 1.
    # A +inf sentinel would instead have refused the NaN and taken 0.5 as the best.
    cfg = C.EarlyStopping(patience=1, restore_best_weights=True)
    states = run_early_stopping(cfg, [math.nan, 0.5, 0.4])
    assert field(states, "wait") == [0, 1]
    assert field(states, "best_epoch") == [0, 0]
    assert math.isnan(field(states, "best")[-1])
    assert int(states[-1].stopped_epoch) == 1
    # on_train_end: best_weights is not None (stored at e0) -> restore epoch 0's weights.
    np.testing.assert_allclose(H.early_stopping_finalize(states[-1], weights_of(1)), 0.0)


def test_a_plus_inf_first_value_is_the_best_until_a_finite_one_beats_it():
    # Keras, patience 1, val_loss [inf, 0.5, 0.6, 0.7]:
    #   e0: best None -> best inf, wait 0;  e1: 0.5 < inf -> best 0.5 (epoch 1), wait 0;
    #   e2: wait 1, 0.6 < 0.5 False -> 1 >= 1: stop at epoch 2. (A sentinel gives wait 1 at e0.)
    states = run_early_stopping(C.EarlyStopping(patience=1), [math.inf, 0.5, 0.6, 0.7])
    assert field(states, "wait") == [0, 0, 1]
    assert field(states, "best_epoch") == [0, 1, 1]
    assert int(states[-1].stopped_epoch) == 2


def test_a_minus_inf_best_still_restores_its_weights():
    # Keras, patience 1, restore_best_weights, val_loss [-inf, 0.1, 0.2]:
    #   e0: best -inf, weights of e0 stored;  e1: 0.1 < -inf False, wait 1 >= 1 -> stop.
    #   on_train_end restores because best_weights is not None, whatever the best value is.
    cfg = C.EarlyStopping(patience=1, restore_best_weights=True)
    states = run_early_stopping(cfg, [-math.inf, 0.1, 0.2])
    assert int(states[-1].stopped_epoch) == 1
    np.testing.assert_allclose(H.early_stopping_finalize(states[-1], weights_of(1)), 0.0)


def test_no_restore_before_any_eligible_epoch():
    # start_from_epoch 5 and training ends after 2 epochs: Keras never stored weights
    # (best_weights is None), so on_train_end leaves the last weights.
    cfg = C.EarlyStopping(patience=1, restore_best_weights=True, start_from_epoch=5)
    states = run_early_stopping(cfg, [0.3, 0.2])
    np.testing.assert_allclose(H.early_stopping_finalize(states[-1], weights_of(1)), 1.0)


def test_an_inf_value_without_a_baseline_still_resets_wait():
    # Keras: `if self.baseline is None or ...: self.wait = 0` after an improvement. Trace
    # [inf, 0.5] with patience 1: e0 best inf, wait 0 (no baseline to beat); e1 improves.
    states = run_early_stopping(C.EarlyStopping(patience=1), [math.inf, 0.5])
    assert field(states, "wait") == [0, 0]
    assert not bool(states[-1].stop)


# float32 boundary: best 1.25, min_delta 0.5 (exact in float32, so Keras's float64 difference
# rounded to float32 by ops.less equals our float32 sum), current = 0.75 - 2**-24.
#   Keras: current + 0.5 = 1.25 - 2**-24 is halfway between the float32 neighbours
#          1.25 - 2**-23 and 1.25; ties-to-even gives 1.25; less(1.25, 1.25) is False:
#          no improvement.
#   The old plateau form `current < best - min_delta` = 0.74999994 < 0.75 said True.
BOUNDARY = float(np.float32(0.75) - np.float32(2.0**-24))


def test_plateau_min_delta_uses_keras_form_at_a_float32_boundary():
    # ReduceLROnPlateau(factor 0.5, patience 1, min_delta 0.5), lr 1.0, val_loss [1.25, B]:
    #   e0: best None -> best 1.25, wait 0;  e1: not an improvement (above), not in cooldown:
    #   wait 1 >= 1 and 1.0 > min_lr 0 -> lr = 0.5, cooldown 0, wait 0.
    assert np.float32(BOUNDARY) + np.float32(0.5) == np.float32(1.25)  # the tie, rounded
    cfg = C.ReduceLROnPlateau(factor=0.5, patience=1, min_delta=0.5)
    states, lrs = run_plateau(cfg, [1.25, BOUNDARY])
    assert lrs == [1.0, 0.5]
    assert field(states, "reductions") == [0, 1]
    # EarlyStopping, same test: e1 is no improvement, wait 1 >= 1 -> stop at epoch 1.
    es = run_early_stopping(C.EarlyStopping(patience=1, min_delta=0.5), [1.25, BOUNDARY])
    assert int(es[-1].stopped_epoch) == 1


def test_plateau_takes_a_nan_first_value_as_best_and_then_cuts_every_patience_epochs():
    # Keras, factor 0.1, patience 1, val_loss [nan, 0.5, 0.4], lr 1.0:
    #   e0: best None -> best nan, wait 0 (no cut);  e1: 0.5 + 1e-4 < nan False -> wait 1 >= 1:
    #   lr 0.1, wait 0;  e2: the same: lr 0.01. (A +inf sentinel would cut at e0 and then
    #   improve at e1.)
    _, lrs = run_plateau(C.ReduceLROnPlateau(patience=1), [math.nan, 0.5, 0.4])
    np.testing.assert_allclose(lrs, [1.0, 0.1, 0.01], rtol=1e-6)


def test_model_checkpoint_saves_a_nan_first_value_then_nothing_better_than_it():
    # Keras ModelCheckpoint(save_best_only): e0 best None -> save (best nan); e1, e2:
    # less(0.5, nan), less(0.4, nan) are False -> no save.
    state = H.best_init(C.ModelCheckpoint(), INITIAL_WEIGHTS)
    saved = []
    for epoch, value in enumerate([math.nan, 0.5, 0.4]):
        state = H.best_update(state, jnp.int32(epoch), metrics(val_loss=value), weights_of(epoch))
        saved.append(bool(state.improved))
    assert saved == [True, False, False]
    assert int(state.best_epoch) == 0


def test_val_monitors_without_validation_data_stay_idle_with_one_keras_warning_each():
    # Keras with no validation data: get_monitor_value warns "Early stopping conditioned on
    # metric `val_loss` which is not available" and returns; the plateau likewise. So over 6
    # epochs of NaN val metrics nothing stops and the LR is never cut; a `loss` monitor works.
    cfg = C.HooksConfig(early_stopping=C.EarlyStopping(patience=0),
                        reduce_lr=C.ReduceLROnPlateau(patience=0),
                        checkpoint=C.ModelCheckpoint(monitor="loss"))
    messages = H.unavailable(cfg, has_val=False)
    assert len(messages) == 2 and all("`val_loss` which is not available" in m for m in messages)
    assert H.unavailable(cfg, has_val=True) == []
    h = H.init(cfg, INITIAL_WEIGHTS, jnp.float32(1.0), has_val=False)
    lr = jnp.float32(1.0)
    for epoch in range(6):
        m = metrics(val_loss=math.nan, val_accuracy=math.nan, loss=1.0 - 0.1 * epoch)
        h, lr, stop = H.end_epoch(h, jnp.int32(epoch), m, weights_of(epoch), lr)
        assert not bool(stop)
    assert float(lr) == 1.0
    assert int(H.summary(h).checkpoint_best_epoch) == 5  # the loss monitor kept working
