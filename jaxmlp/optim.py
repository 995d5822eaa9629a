"""Optimizers as optax chains with the learning rate (and every other number) in the state.

`optax.inject_hyperparams` keeps each numeric hyperparameter in the optimizer state, so hooks
can read and set the learning rate, it is logged every epoch, vmapped members of a sweep can
each have their own values, and one compiled program serves them all.

Where optax's formulation differs from Keras 3 (documented, deliberately kept):
- Adam/AdamW epsilon: Keras 3 adds epsilon to sqrt(v) before bias correction, optax after
  (`m_hat / (sqrt(v_hat) + eps)`), so Keras's effective epsilon is eps / sqrt(1 - beta_2**t):
  about 30x larger at the first step, ~1.4x after 700. This is NOT negligible on raw-pixel
  inputs: first-layer gradients of ~1e-7..1e-6 get nearly full Adam steps from optax and small
  ones from Keras (measured step for step against Keras 3, and over epochs by
  `python -m jaxmlp.keras_parity`). Both use Keras's value 1e-7. `OptimConfig(keras_epsilon=True)`
  selects `scale_by_keras_adam` below, Keras 3's update exactly; the default stays optax's
  formulation (the experiments replicating Keras pages opt in).
- SGD momentum: Keras keeps a velocity in parameter units (v = m v - lr g); optax keeps a trace
  in gradient units (t = g + m t, update -lr t). Identical while the learning rate is constant;
  when a hook changes the LR, optax applies the new LR to the whole trace at once, while in
  Keras's velocity the earlier steps keep their LR and fade out over ~1 / (1 - m) steps.
  `OptimConfig(keras_velocity=True)` selects `keras_sgd` below, Keras 3's update exactly (the
  public `jaxmlp.SGD` opts in); the default stays optax's, which the committed sweeps ran.
- AdamW: optax and Keras both decay decoupled as lr * weight_decay * w, on every parameter.
- RMSprop: same as Keras 3 (rho 0.9, eps 1e-7 inside the square root: lr g / sqrt(v + eps),
  which is optax's default `eps_in_sqrt=True`; no momentum, not centered).
"""

from __future__ import annotations

import inspect
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxmlp.config import ANY, CLIPS, OptimConfig, check_keras_only


def hyperparams(cfg: OptimConfig) -> dict:
    """The numbers `make(cfg)` puts in its state: they may differ between vmapped members.
    Floats whatever the config holds: `inject_hyperparams` gives each number a state slot of
    its own dtype, so `SGD(1)` would train with an integer learning rate (halved by a
    schedule to 0) and fix that dtype for every member of its group."""
    if cfg.name in ("adam", "adamw"):
        out = {"learning_rate": cfg.learning_rate, "b1": cfg.beta_1, "b2": cfg.beta_2,
               "eps": cfg.epsilon}
        out = {**out, "weight_decay": cfg.weight_decay} if cfg.name == "adamw" else out
    elif cfg.name == "sgd":
        out = {"learning_rate": cfg.learning_rate, "momentum": cfg.momentum}
    elif cfg.name == "rmsprop":
        out = {"learning_rate": cfg.learning_rate, "decay": cfg.rho, "eps": cfg.epsilon}
    else:
        raise ValueError(f"unknown optimizer {cfg.name!r}: allowed adam, adamw, sgd, rmsprop")
    return {k: float(v) for k, v in out.items()}


class KerasAdamState(NamedTuple):
    count: Any
    m: Any
    v: Any


def scale_by_keras_adam(b1=0.9, b2=0.999, eps=1e-7) -> optax.GradientTransformation:
    """Adam's direction exactly as Keras 3 computes it (keras/src/optimizers/adam.py):
    m += (g - m)(1 - b1); v += (g^2 - v)(1 - b2); direction = m sqrt(1 - b2^t) / (1 - b1^t) /
    (sqrt(v) + eps). optax's scale_by_adam adds eps after the bias correction instead."""

    def init(params):
        zeros = lambda: jax.tree.map(jnp.zeros_like, params)  # noqa: E731
        return KerasAdamState(jnp.zeros([], jnp.int32), zeros(), zeros())

    def update(grads, state, params=None):
        del params
        m = jax.tree.map(lambda m, g: m + (g - m) * (1 - b1), state.m, grads)
        v = jax.tree.map(lambda v, g: v + (g * g - v) * (1 - b2), state.v, grads)
        count = state.count + 1
        t = count.astype(jnp.float32)
        alpha = jnp.sqrt(1 - b2**t) / (1 - b1**t)
        direction = jax.tree.map(lambda m, v: m * alpha / (jnp.sqrt(v) + eps), m, v)
        return direction, KerasAdamState(count, m, v)

    return optax.GradientTransformation(init, update)


def keras_adam(learning_rate, b1=0.9, b2=0.999, eps=1e-7):
    """Keras 3 Adam as an optax chain (for `inject_hyperparams`)."""
    return optax.chain(scale_by_keras_adam(b1, b2, eps),
                       optax.scale_by_learning_rate(learning_rate))


def keras_adamw(learning_rate, b1=0.9, b2=0.999, eps=1e-7, weight_decay=0.004):
    """Keras 3 AdamW: decoupled decay lr * weight_decay * w on every parameter, then Adam."""
    return optax.chain(scale_by_keras_adam(b1, b2, eps), optax.add_decayed_weights(weight_decay),
                       optax.scale_by_learning_rate(learning_rate))


class KerasSGDState(NamedTuple):
    velocity: Any


def keras_sgd(learning_rate, momentum=0.0, nesterov=False) -> optax.GradientTransformation:
    """Keras 3 SGD exactly (keras/src/optimizers/sgd.py), the learning rate inside the
    velocity: v = momentum v - lr g; the update is v, or momentum v - lr g with Nesterov. With
    momentum 0 it is -lr g. optax.sgd keeps the trace without the LR and scales it at the end,
    which differs once the LR changes (a plateau's cut, a schedule)."""

    def init(params):
        return KerasSGDState(jax.tree.map(jnp.zeros_like, params))

    def update(grads, state, params=None):
        del params
        velocity = jax.tree.map(lambda v, g: v * momentum - g * learning_rate,
                                state.velocity, grads)
        if nesterov:
            step = jax.tree.map(lambda v, g: v * momentum - g * learning_rate, velocity, grads)
        else:
            step = velocity
        return step, KerasSGDState(velocity)

    return optax.GradientTransformation(init, update)


_FACTORIES = {"adam": optax.adam, "adamw": optax.adamw, "sgd": optax.sgd,
              "rmsprop": optax.rmsprop}
_KERAS_FACTORIES = {"adam": keras_adam, "adamw": keras_adamw}


def make(cfg: OptimConfig) -> optax.GradientTransformation:
    """The optax transformation for `cfg`, learning rate and hyperparameters in its state."""
    numbers = hyperparams(cfg)
    if cfg.name == "sgd":
        factory = keras_sgd if cfg.keras_velocity else optax.sgd
        tx = optax.inject_hyperparams(factory, static_args=("nesterov",))(
            **numbers, nesterov=cfg.nesterov)
    else:
        factories = _KERAS_FACTORIES if cfg.keras_epsilon else _FACTORIES
        tx = optax.inject_hyperparams(factories[cfg.name])(**numbers)
    clip = _clip(cfg)
    return keras_clipped(tx, **clip) if clip else tx


def _clip(cfg: OptimConfig) -> dict:
    return {name: getattr(cfg, name) for name in CLIPS if getattr(cfg, name) is not None}


def keras_clipped(tx, *, clipnorm=None, clipvalue=None, global_clipnorm=None):
    """`tx` fed gradients clipped as Keras 3's optimizers clip them before their update
    (keras/src/optimizers/base_optimizer.py, `_clip_gradients`): `clipnorm` scales each weight's
    gradient g to g * c / max(||g||, c); `global_clipnorm` scales every gradient by
    c * min(1 / n, 1 / c), n the L2 norm of all of them (NaN for a non-finite n, as Keras);
    `clipvalue` clips each element to [-c, c]. The state is `tx`'s own, so the learning rate
    stays where `learning_rate` reads it. optax's clip_by_global_norm computes g / n * c
    instead, which rounds differently; its clip is Keras's clipvalue."""

    def clip(grads):
        if clipnorm is not None:
            def by_norm(g):
                sq = jnp.sum(jnp.square(g))
                norm = jnp.where(sq > 0, jnp.sqrt(jnp.where(sq > 0, sq, 1.0)), sq)
                return g * clipnorm / jnp.maximum(norm, clipnorm)
            return jax.tree.map(by_norm, grads)
        if global_clipnorm is not None:
            norm = jnp.sqrt(jnp.sum(jnp.stack([jnp.sum(jnp.square(g))
                                               for g in jax.tree.leaves(grads)])))
            scale = global_clipnorm * jnp.minimum(1.0 / norm, 1.0 / global_clipnorm)
            scale = scale + (norm - norm)
            return jax.tree.map(lambda g: g * scale, grads)
        return jax.tree.map(lambda g: jnp.clip(g, -clipvalue, clipvalue), grads)

    def update(grads, state, params=None):
        return tx.update(clip(grads), state, params)

    return optax.GradientTransformation(tx.init, update)


def structure_key(cfg: OptimConfig) -> tuple:
    """What must be equal for two configs to share one compiled update (numbers may differ):
    the clipping's kind and value too (a constant of the program), where there is one."""
    key = (cfg.name, cfg.nesterov, cfg.keras_epsilon, cfg.keras_velocity)
    clip = _clip(cfg)
    return key + (tuple(sorted(clip.items())),) if clip else key


def learning_rate(opt_state):
    """The learning rate currently in the optimizer state."""
    return opt_state.hyperparams["learning_rate"]


def with_learning_rate(opt_state, lr):
    """The optimizer state with its learning rate replaced (a new state; nothing mutated)."""
    old = opt_state.hyperparams["learning_rate"]
    hyperparams = {**opt_state.hyperparams, "learning_rate": lr.astype(old.dtype)}
    return opt_state._replace(hyperparams=hyperparams)


# --- The public constructors (jaxmlp.Adam, ...): Keras's names, arguments and defaults --------

# Keras 3's optimizer arguments jaxmlp does not take (`config.check_keras_only`).
_KERAS_ONLY = {
    "name": (ANY, "the optimizer has no name here"),
    "use_ema": (False, "no moving average of the weights is kept"),
    "ema_momentum": (0.99, "no moving average of the weights is kept"),
    "ema_overwrite_frequency": (None, "no moving average of the weights is kept"),
    "loss_scale_factor": (None, "training is in float32, with no loss scaling"),
    "gradient_accumulation_steps": (None, "every batch is a step"),
    "amsgrad": (False, "Adam's plain second moment is kept"),
    "weight_decay": (None, "decoupled weight decay is Adam's or AdamW's here; an L2 penalty "
                           "is MLP(l2=...)"),
    "momentum": (0.0, "RMSprop here has no momentum"),
    "centered": (False, "RMSprop here is not centered"),
}


def _keras_only(where: str, extra: dict, allowed: tuple, clip: dict) -> dict:
    """The clipping arguments (checked by OptimConfig) after refusing what jaxmlp does not
    take: the Keras-only arguments `allowed` here away from their Keras default, and unknown
    names."""
    args = [p for p in inspect.signature(globals()[where]).parameters if p != "keras"]
    check_keras_only(where, extra, {n: _KERAS_ONLY[n] for n in allowed}, args)
    return clip


def Adam(learning_rate: float = 1e-3, beta_1: float = 0.9, beta_2: float = 0.999,
         epsilon: float = 1e-7, *, weight_decay: float | None = None,
         clipnorm: float | None = None, clipvalue: float | None = None,
         global_clipnorm: float | None = None, keras_epsilon: bool = True,
         **keras) -> OptimConfig:
    """Keras's Adam. Keras 3's exact update by default (epsilon added to sqrt(v) before the bias
    correction, see this module's docstring), because users who pass these arguments compare
    with Keras; `keras_epsilon=False` is optax's placement. `weight_decay` is Keras 3's
    decoupled decay, which makes it Keras's AdamW (in Keras 3, AdamW is Adam with a default
    weight_decay): the same config as `AdamW(weight_decay=...)`. `clipnorm`, `clipvalue` and
    `global_clipnorm` clip the gradients as Keras does (`keras_clipped`; at most one)."""
    clip = _keras_only("Adam", keras, _ADAM_ONLY, dict(
        clipnorm=clipnorm, clipvalue=clipvalue, global_clipnorm=global_clipnorm))
    if weight_decay:
        return AdamW(learning_rate, weight_decay, beta_1, beta_2, epsilon,
                     keras_epsilon=keras_epsilon, **clip)
    return OptimConfig("adam", learning_rate, beta_1, beta_2, epsilon,
                       keras_epsilon=keras_epsilon, **clip)


def AdamW(learning_rate: float = 1e-3, weight_decay: float = 0.004, beta_1: float = 0.9,
          beta_2: float = 0.999, epsilon: float = 1e-7, *, clipnorm: float | None = None,
          clipvalue: float | None = None, global_clipnorm: float | None = None,
          keras_epsilon: bool = True, **keras) -> OptimConfig:
    """Keras's AdamW (decoupled decay lr * weight_decay * w); Keras's epsilon and clipping as
    in `Adam`."""
    clip = _keras_only("AdamW", keras, _ADAMW_ONLY, dict(
        clipnorm=clipnorm, clipvalue=clipvalue, global_clipnorm=global_clipnorm))
    return OptimConfig("adamw", learning_rate, beta_1, beta_2, epsilon,
                       weight_decay=weight_decay, keras_epsilon=keras_epsilon, **clip)


def SGD(learning_rate: float = 0.01, momentum: float = 0.0, nesterov: bool = False, *,
        clipnorm: float | None = None, clipvalue: float | None = None,
        global_clipnorm: float | None = None, keras_velocity: bool = True,
        **keras) -> OptimConfig:
    """Keras's SGD. Keras 3's exact update by default (the velocity holds lr * gradient, so a
    change of the LR reaches the steps after it as in Keras, see this module's docstring);
    `keras_velocity=False` is optax's trace form (identical while the LR is constant).
    Clipping as in `Adam`."""
    clip = _keras_only("SGD", keras, _BASE_ONLY, dict(
        clipnorm=clipnorm, clipvalue=clipvalue, global_clipnorm=global_clipnorm))
    return OptimConfig("sgd", learning_rate, momentum=momentum, nesterov=nesterov,
                       keras_velocity=keras_velocity, **clip)


def RMSprop(learning_rate: float = 1e-3, rho: float = 0.9, epsilon: float = 1e-7, *,
            clipnorm: float | None = None, clipvalue: float | None = None,
            global_clipnorm: float | None = None, **keras) -> OptimConfig:
    """Keras's RMSprop (no momentum, not centered); clipping as in `Adam`."""
    clip = _keras_only("RMSprop", keras, (*_BASE_ONLY, "momentum", "centered"), dict(
        clipnorm=clipnorm, clipvalue=clipvalue, global_clipnorm=global_clipnorm))
    return OptimConfig("rmsprop", learning_rate, rho=rho, epsilon=epsilon, **clip)


_BASE_ONLY = ("name", "use_ema", "ema_momentum", "ema_overwrite_frequency",
              "loss_scale_factor", "gradient_accumulation_steps", "weight_decay")
_ADAM_ONLY = (*(n for n in _BASE_ONLY if n != "weight_decay"), "amsgrad")
_ADAMW_ONLY = _ADAM_ONLY
