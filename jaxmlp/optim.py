"""Optimizers as optax chains with the learning rate (and every other number) in the state.

`optax.inject_hyperparams` keeps each numeric hyperparameter in the optimizer state, so hooks
can read and set the learning rate, it is logged every epoch, vmapped members of a sweep can
each have their own values, and one compiled program serves them all.

Where optax's formulation differs from Keras 3 (documented, deliberately kept):
- Adam/AdamW epsilon: Keras adds epsilon to sqrt(v) before bias correction, optax after
  (`m_hat / (sqrt(v_hat) + eps)`). The two agree up to a factor sqrt(1 - beta_2**t) on epsilon,
  which is 1e-7-small; we use Keras's value 1e-7, not optax's 1e-8.
- SGD momentum: Keras keeps a velocity in parameter units (v = m v - lr g); optax keeps a trace
  in gradient units (t = g + m t, update -lr t). Identical while the learning rate is constant;
  when a hook changes the LR, optax applies the new LR to the whole trace at once.
- AdamW: optax and Keras both decay decoupled as lr * weight_decay * w, on every parameter.
- RMSprop: same as Keras 3 (rho 0.9, eps 1e-7 inside the square root: lr g / sqrt(v + eps),
  which is optax's default `eps_in_sqrt=True`; no momentum, not centered).
"""

from __future__ import annotations

import optax

from jaxmlp.config import OptimConfig


def hyperparams(cfg: OptimConfig) -> dict:
    """The numbers `make(cfg)` puts in its state: they may differ between vmapped members."""
    if cfg.name in ("adam", "adamw"):
        out = {"learning_rate": cfg.learning_rate, "b1": cfg.beta_1, "b2": cfg.beta_2,
               "eps": cfg.epsilon}
        return {**out, "weight_decay": cfg.weight_decay} if cfg.name == "adamw" else out
    if cfg.name == "sgd":
        return {"learning_rate": cfg.learning_rate, "momentum": cfg.momentum}
    if cfg.name == "rmsprop":
        return {"learning_rate": cfg.learning_rate, "decay": cfg.rho, "eps": cfg.epsilon}
    raise ValueError(f"unknown optimizer {cfg.name!r}: allowed adam, adamw, sgd, rmsprop")


_FACTORIES = {"adam": optax.adam, "adamw": optax.adamw, "sgd": optax.sgd,
              "rmsprop": optax.rmsprop}


def make(cfg: OptimConfig) -> optax.GradientTransformation:
    """The optax transformation for `cfg`, learning rate and hyperparameters in its state."""
    numbers = hyperparams(cfg)
    if cfg.name == "sgd":
        return optax.inject_hyperparams(optax.sgd, static_args=("nesterov",))(
            **numbers, nesterov=cfg.nesterov)
    return optax.inject_hyperparams(_FACTORIES[cfg.name])(**numbers)


def structure_key(cfg: OptimConfig) -> tuple:
    """What must be equal for two configs to share one compiled update (numbers may differ)."""
    return (cfg.name, cfg.nesterov)


def learning_rate(opt_state):
    """The learning rate currently in the optimizer state."""
    return opt_state.hyperparams["learning_rate"]


def with_learning_rate(opt_state, lr):
    """The optimizer state with its learning rate replaced (a new state; nothing mutated)."""
    old = opt_state.hyperparams["learning_rate"]
    hyperparams = {**opt_state.hyperparams, "learning_rate": lr.astype(old.dtype)}
    return opt_state._replace(hyperparams=hyperparams)
