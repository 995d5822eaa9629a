"""Optimizers against Keras 3's update rules (written out here in NumPy), LR in the state."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxmlp import config as C
from jaxmlp import optim

GRADS = [np.array([0.5, -1.0, 2.0], np.float32), np.array([0.1, 0.3, -0.2], np.float32),
         np.array([-0.4, 0.2, 1.0], np.float32), np.array([1.0, 1.0, -1.0], np.float32)]
W0 = np.array([1.0, -2.0, 0.5], np.float32)


def run_optax(cfg: C.OptimConfig, grads=GRADS):
    tx = optim.make(cfg)
    w = jnp.asarray(W0)
    state = tx.init(w)
    update = jax.jit(tx.update)
    for g in grads:
        u, state = update(jnp.asarray(g), state, w)
        w = optax.apply_updates(w, u)
    return np.asarray(w)


def keras_sgd(lr, momentum=0.0, nesterov=False):
    w, m = W0.astype(np.float64), np.zeros(3)
    for g in GRADS:  # keras/src/optimizers/sgd.py update_step
        if momentum:
            m = m * momentum - g * lr
            w = w + (m * momentum - g * lr if nesterov else m)
        else:
            w = w - g * lr
    return w


def keras_adam(lr, b1=0.9, b2=0.999, eps=1e-7, weight_decay=None, grads=GRADS):
    w, m, v = W0.astype(np.float64), np.zeros(3), np.zeros(3)
    for t, g in enumerate(grads, 1):  # keras/src/optimizers/adam.py (+ AdamW's decoupled decay)
        if weight_decay:
            w = w - w * weight_decay * lr
        alpha = lr * np.sqrt(1 - b2**t) / (1 - b1**t)
        m = m + (g - m) * (1 - b1)
        v = v + (g * g - v) * (1 - b2)
        w = w - m * alpha / (np.sqrt(v) + eps)
    return w


def keras_rmsprop(lr, rho=0.9, eps=1e-7):
    w, v = W0.astype(np.float64), np.zeros(3)
    for g in GRADS:  # keras/src/optimizers/rmsprop.py, not centered, no momentum
        v = rho * v + (1 - rho) * g * g
        w = w - lr * g / np.sqrt(v + eps)
    return w


@pytest.mark.parametrize("cfg, expected", [
    (C.OptimConfig("sgd", 0.1), keras_sgd(0.1)),
    (C.OptimConfig("sgd", 0.1, momentum=0.9), keras_sgd(0.1, 0.9)),
    (C.OptimConfig("sgd", 0.1, momentum=0.9, nesterov=True), keras_sgd(0.1, 0.9, True)),
    (C.OptimConfig("sgd", 0.1, keras_velocity=True), keras_sgd(0.1)),
    (C.OptimConfig("sgd", 0.1, momentum=0.9, keras_velocity=True), keras_sgd(0.1, 0.9)),
    (C.OptimConfig("sgd", 0.1, momentum=0.9, nesterov=True, keras_velocity=True),
     keras_sgd(0.1, 0.9, True)),
    (C.OptimConfig("rmsprop", 0.01), keras_rmsprop(0.01)),
])
def test_same_updates_as_keras(cfg, expected):
    np.testing.assert_allclose(run_optax(cfg), expected, rtol=1e-6, atol=1e-7)


def keras_sgd_lrs(lrs, momentum, nesterov=False):
    """Keras 3's SGD with the LR set before each step (a plateau's cut, a schedule)."""
    w, m = W0.astype(np.float64), np.zeros(3)
    for g, lr in zip(GRADS, lrs):
        m = m * momentum - g * lr
        w = w + (m * momentum - g * lr if nesterov else m)
    return w


def run_with_lrs(cfg: C.OptimConfig, lrs):
    tx = optim.make(cfg)
    w = jnp.asarray(W0)
    state = tx.init(w)
    for g, lr in zip(GRADS, lrs):
        state = optim.with_learning_rate(state, jnp.float32(lr))
        u, state = tx.update(jnp.asarray(g), state, w)
        w = optax.apply_updates(w, u)
    return np.asarray(w)


@pytest.mark.parametrize("nesterov", [False, True])
def test_keras_velocity_is_keras_3_sgd_exactly_when_the_lr_changes(nesterov):
    lrs = [0.1, 0.1, 0.01, 0.01]  # a cut after two steps
    cfg = C.OptimConfig("sgd", 0.1, momentum=0.9, nesterov=nesterov, keras_velocity=True)
    np.testing.assert_allclose(run_with_lrs(cfg, lrs), keras_sgd_lrs(lrs, 0.9, nesterov),
                               rtol=1e-6, atol=1e-7)
    # optax's trace applies the new LR to the past gradients too: not Keras's weights
    trace = dataclasses.replace(cfg, keras_velocity=False)
    assert not np.allclose(run_with_lrs(trace, lrs), keras_sgd_lrs(lrs, 0.9, nesterov),
                           rtol=1e-3)
    assert jaxmlp_sgd().keras_velocity and not C.OptimConfig("sgd").keras_velocity
    with pytest.raises(C.ConfigError, match="keras_velocity"):
        C.OptimConfig("adam", keras_velocity=True)


def jaxmlp_sgd():
    import jaxmlp

    return jaxmlp.SGD(momentum=0.9)


@pytest.mark.parametrize("cfg, expected", [
    (C.OptimConfig("adam", 0.01), keras_adam(0.01)),
    (C.OptimConfig("adamw", 0.01, weight_decay=0.004), keras_adam(0.01, weight_decay=0.004)),
])
def test_adam_matches_keras_up_to_where_epsilon_sits(cfg, expected):
    # Keras adds eps to sqrt(v) before bias correction, optax after: with gradients of order 1
    # the two differ by about eps / sqrt(1 - b2**t) ~ 3e-6 relative, far below any noise.
    np.testing.assert_allclose(run_optax(cfg), expected, rtol=2e-5)


# Gradients of the size the first layer sees on raw pixels, where epsilon placement matters.
TINY = [g * np.float32(1e-6) for g in GRADS]


@pytest.mark.parametrize("name, wd", [("adam", None), ("adamw", 0.004)])
def test_keras_epsilon_is_keras_3_adam_exactly_even_for_tiny_gradients(name, wd):
    for grads in (GRADS, TINY):
        cfg = C.OptimConfig(name, 0.01, keras_epsilon=True)
        np.testing.assert_allclose(run_optax(cfg, grads),
                                   keras_adam(0.01, weight_decay=wd, grads=grads), rtol=1e-6)


def test_optax_epsilon_differs_from_keras_for_tiny_gradients():
    # Documented difference (jaxmlp.optim): Keras's effective epsilon is eps / sqrt(1 - b2**t),
    # ~30x optax's at step 1, so on gradients ~1e-6 Keras's steps are much smaller.
    ours = run_optax(C.OptimConfig("adam", 0.01), TINY) - W0
    keras = keras_adam(0.01, grads=TINY) - W0
    assert np.all(np.abs(ours) > 2 * np.abs(keras))


def test_keras_epsilon_is_only_for_adam():
    with pytest.raises(C.ConfigError, match="keras_epsilon"):
        C.OptimConfig("sgd", keras_epsilon=True)


def test_learning_rate_is_state_readable_settable_and_not_compiled_in():
    tx = optim.make(C.OptimConfig("adam", 1e-3))
    w = jnp.asarray(W0)
    state = tx.init(w)
    assert float(optim.learning_rate(state)) == pytest.approx(1e-3)
    faster = optim.with_learning_rate(state, jnp.float32(0.5))
    assert float(optim.learning_rate(faster)) == 0.5
    assert float(optim.learning_rate(state)) == pytest.approx(1e-3)  # nothing mutated
    update = jax.jit(tx.update)
    slow, _ = update(jnp.asarray(GRADS[0]), state, w)
    fast, _ = update(jnp.asarray(GRADS[0]), faster, w)
    assert update._cache_size() == 1  # one program serves every learning rate
    np.testing.assert_allclose(fast, slow * 500, rtol=1e-5)


def test_members_may_have_their_own_hyperparameters_under_vmap():
    cfgs = [C.OptimConfig("sgd", lr, momentum=m) for lr, m in ((0.1, 0.0), (0.05, 0.9))]
    states = [optim.make(c).init(jnp.asarray(W0)) for c in cfgs]
    stacked = jax.tree.map(lambda *x: jnp.stack(x), *states)
    stacked = stacked._replace(hyperparams={
        k: jnp.stack([jnp.asarray(optim.hyperparams(c)[k], jnp.float32) for c in cfgs])
        for k in stacked.hyperparams})
    tx = optim.make(cfgs[0])
    w = jnp.stack([jnp.asarray(W0)] * 2)
    for g in GRADS:
        u, stacked = jax.vmap(tx.update)(jnp.stack([jnp.asarray(g)] * 2), stacked, w)
        w = w + u
    np.testing.assert_allclose(w[0], keras_sgd(0.1), rtol=1e-6)
    np.testing.assert_allclose(w[1], keras_sgd(0.05, 0.9), rtol=1e-6)


def keras_clip(grads: dict, clipnorm=None, clipvalue=None, global_clipnorm=None) -> dict:
    """keras/src/optimizers/base_optimizer.py `_clip_gradients`, in float64 NumPy."""
    grads = {k: v.astype(np.float64) for k, v in grads.items()}
    if clipnorm is not None:  # each weight's gradient by its own L2 norm
        return {k: g * clipnorm / max(np.sqrt((g * g).sum()), clipnorm) for k, g in grads.items()}
    if global_clipnorm is not None:  # all of them by their joint L2 norm
        norm = np.sqrt(sum((g * g).sum() for g in grads.values()))
        return {k: g * global_clipnorm * min(1 / norm, 1 / global_clipnorm)
                for k, g in grads.items()}
    return {k: np.clip(g, -clipvalue, clipvalue) for k, g in grads.items()}


@pytest.mark.parametrize("clip", [{"clipnorm": 1.0}, {"clipnorm": 50.0},
                                  {"global_clipnorm": 1.5}, {"global_clipnorm": 50.0},
                                  {"clipvalue": 0.3}])
def test_gradients_are_clipped_as_keras_clips_them(clip):
    rng = np.random.default_rng(0)
    grads = {"kernel": rng.normal(size=(4, 3)).astype(np.float32) * 2,
             "bias": rng.normal(size=3).astype(np.float32) * 0.1,
             "zero": np.zeros(2, np.float32)}  # a zero gradient stays zero (no 0 / 0)
    tx = optim.keras_clipped(optax.identity(), **clip)
    out, _ = jax.jit(tx.update)({k: jnp.asarray(v) for k, v in grads.items()}, tx.init(grads))
    expected = keras_clip(grads, **clip)
    for k in grads:
        np.testing.assert_allclose(np.asarray(out[k]), expected[k], rtol=2e-6, atol=1e-7)
    # a clip that acts: some gradient changed; one far above every norm: none did (to rounding)
    acts = clip in ({"clipnorm": 1.0}, {"global_clipnorm": 1.5}, {"clipvalue": 0.3})
    assert acts == any(not np.allclose(expected[k], grads[k], rtol=1e-6) for k in grads)


def test_clipping_reaches_the_update_and_keeps_the_learning_rate_in_the_state():
    cfg = C.OptimConfig("adam", 0.01, keras_epsilon=True, clipvalue=0.25)
    clipped = [np.clip(g, -0.25, 0.25) for g in GRADS]
    np.testing.assert_allclose(run_optax(cfg), keras_adam(0.01, grads=clipped), rtol=1e-5)
    state = optim.make(cfg).init(jnp.asarray(W0))
    assert float(optim.learning_rate(state)) == pytest.approx(0.01)
    # clipping is part of the compiled update: configs that differ in it do not share one
    plain = dataclasses.replace(cfg, clipvalue=None)
    assert optim.structure_key(plain) == ("adam", False, True, False)
    assert optim.structure_key(cfg) != optim.structure_key(plain)
    assert optim.structure_key(cfg) != optim.structure_key(dataclasses.replace(cfg,
                                                                               clipvalue=0.5))


def test_keras_optimizer_arguments_are_taken_or_refused_in_one_line():
    import jaxmlp

    assert jaxmlp.SGD(0.1, clipnorm=1.0).clipnorm == 1.0
    assert jaxmlp.RMSprop(global_clipnorm=2).global_clipnorm == 2
    # Keras's defaults of what jaxmlp does not do change nothing, so Keras code runs
    assert jaxmlp.Adam(1e-3, amsgrad=False, use_ema=False, name="opt") == jaxmlp.Adam(1e-3)
    # Keras 3's AdamW is its Adam with a weight_decay: Adam(weight_decay=) gives that config
    assert jaxmlp.Adam(2e-3, weight_decay=0.01, clipnorm=1.0) == jaxmlp.AdamW(
        2e-3, weight_decay=0.01, clipnorm=1.0)
    assert jaxmlp.Adam(weight_decay=0.0) == jaxmlp.Adam(weight_decay=None) == jaxmlp.Adam()
    for call, match in [
        (lambda: jaxmlp.Adam(clipnorm=1.0, clipvalue=0.5),
         r"OptimConfig.clipvalue=0.5 is invalid: allowed one of clipnorm, clipvalue, "
         r"global_clipnorm at most \(Keras's rule\); clipnorm is set"),
        (lambda: jaxmlp.SGD(clipnorm=0.0), "OptimConfig.clipnorm=0.0 is invalid"),
        (lambda: jaxmlp.Adam(amsgrad=True), r"Adam.amsgrad=True is not supported: Adam's plain "
                                            r"second moment is kept \(Keras's default"),
        (lambda: jaxmlp.SGD(weight_decay=0.01), "decoupled weight decay is Adam's or AdamW's"),
        (lambda: jaxmlp.RMSprop(momentum=0.9), "RMSprop.momentum=0.9 is not supported"),
        (lambda: jaxmlp.SGD(lr=0.1), "SGD: unknown argument lr=; allowed learning_rate, "
                                     "momentum, nesterov, clipnorm"),
    ]:
        with pytest.raises(C.ConfigError, match=match) as err:
            call()
        assert "\n" not in str(err.value)
