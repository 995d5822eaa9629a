"""The Keras 3 twin of a jaxmlp run: model, optimizer and callbacks built from its RunConfig.

Keras is imported inside the functions (it is the optional `bench` extra, never a core
dependency) and must run on the JAX backend (`KERAS_BACKEND=jax`). What each piece copies:
- model: `keras.Sequential` of Dense(kernel_init, l2) [-> BatchNormalization()] -> Activation
  [-> Dropout] per hidden layer, then Dense(classes, softmax, output_init, output_l2); Keras's
  own BatchNorm defaults (momentum 0.99, epsilon 1e-3), as jaxmlp copies them;
- optimizer: Keras's Adam/AdamW/SGD/RMSprop with the config's arguments;
- callbacks: EarlyStopping, ReduceLROnPlateau, ModelCheckpoint(save_best_only=True) and
  LearningRateScheduler(cosine), in the order the original pages listed them.
A run that composes a schedule with the plateau our way (`lr_composition="scale"`) has no Keras
equivalent: `no_equivalent` says so and the parity tool skips it.
"""

from __future__ import annotations

import math
import os

from jaxmlp import config as C

NO_EQUIVALENT = "ours, no Keras equivalent"


def no_equivalent(run: C.RunConfig) -> str | None:
    """Why `run` cannot be trained by Keras `fit` as configured, or None when it can."""
    h = run.hooks
    if h.schedule is not None and h.reduce_lr is not None and h.lr_composition != "keras":
        return f"{NO_EQUIVALENT} (lr_composition={h.lr_composition!r})"
    return None


def import_keras():
    """Keras on the JAX backend (set before the first import; refused otherwise)."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras

    if keras.backend.backend() != "jax":
        raise RuntimeError(f"Keras runs on {keras.backend.backend()!r}; set KERAS_BACKEND=jax")
    return keras


def cosine(cfg: C.CosineSchedule):
    """The seeds' schedule as Keras calls it, `schedule(epoch, lr)` with a 0-based epoch:
    min + (initial - min)/2 (1 + cos(pi e / period)); periodic unless `hold`."""
    def schedule(epoch, lr):
        e = min(epoch, cfg.period) if cfg.hold else epoch
        return float(cfg.min_lr + 0.5 * (cfg.initial_lr - cfg.min_lr)
                     * (1 + math.cos(math.pi * e / cfg.period)))
    return schedule


def model(cfg: C.ModelConfig):
    """The uncompiled Keras Sequential of `cfg`."""
    keras = import_keras()
    from keras import layers, regularizers

    def l2(c):
        return regularizers.l2(c) if c else None

    net = keras.Sequential([keras.Input((cfg.input_dim,))])
    for width, rate in zip(cfg.hidden, cfg.dropout):
        net.add(layers.Dense(width, kernel_initializer=cfg.kernel_init,
                             kernel_regularizer=l2(cfg.l2)))
        if cfg.batch_norm:
            net.add(layers.BatchNormalization())
        net.add(layers.Activation(cfg.activation))
        if rate:
            net.add(layers.Dropout(rate))
    net.add(layers.Dense(cfg.num_classes, activation="softmax",
                         kernel_initializer=cfg.output_init, kernel_regularizer=l2(cfg.output_l2)))
    return net


def optimizer(cfg: C.OptimConfig):
    """Keras's optimizer of the same name and arguments (Keras's own epsilon placement)."""
    keras = import_keras()
    o = keras.optimizers
    if cfg.name == "adam":
        return o.Adam(cfg.learning_rate, beta_1=cfg.beta_1, beta_2=cfg.beta_2,
                      epsilon=cfg.epsilon)
    if cfg.name == "adamw":
        return o.AdamW(cfg.learning_rate, weight_decay=cfg.weight_decay, beta_1=cfg.beta_1,
                       beta_2=cfg.beta_2, epsilon=cfg.epsilon)
    if cfg.name == "sgd":
        return o.SGD(cfg.learning_rate, momentum=cfg.momentum, nesterov=cfg.nesterov)
    if cfg.name == "rmsprop":
        return o.RMSprop(cfg.learning_rate, rho=cfg.rho, epsilon=cfg.epsilon)
    raise ValueError(f"OptimConfig.name={cfg.name!r}: no Keras optimizer for it")


def compiled(run: C.RunConfig):
    """The run's model compiled as the pages did: its optimizer, sparse categorical
    cross-entropy, accuracy."""
    net = model(run.model)
    net.compile(optimizer(run.optim), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return net


def callbacks(hooks: C.HooksConfig, checkpoint_dir: str) -> list:
    """The Keras callbacks of `hooks`, in the pages' order (EarlyStopping, ReduceLROnPlateau,
    ModelCheckpoint, LearningRateScheduler). ModelCheckpoint writes into `checkpoint_dir`."""
    keras = import_keras()
    cb = keras.callbacks
    out = []
    if (es := hooks.early_stopping) is not None:
        out.append(cb.EarlyStopping(
            monitor=es.monitor, min_delta=es.min_delta, patience=es.patience, mode=es.mode,
            baseline=es.baseline, restore_best_weights=es.restore_best_weights,
            start_from_epoch=es.start_from_epoch))
    if (rp := hooks.reduce_lr) is not None:
        out.append(cb.ReduceLROnPlateau(
            monitor=rp.monitor, factor=rp.factor, patience=rp.patience, mode=rp.mode,
            min_delta=rp.min_delta, cooldown=rp.cooldown, min_lr=rp.min_lr))
    if (mc := hooks.checkpoint) is not None:
        out.append(cb.ModelCheckpoint(
            os.path.join(checkpoint_dir, "best.weights.h5"), monitor=mc.monitor, mode=mc.mode,
            save_best_only=True, save_weights_only=True))
    if hooks.schedule is not None:
        out.append(cb.LearningRateScheduler(cosine(hooks.schedule)))
    return out


def lr_recorder():
    """A callback, to be placed last, that records per epoch the LR the epoch trained with (read
    at epoch begin, after any scheduler) and the LR after the epoch's end (after any plateau
    cut), plus each epoch's wall time."""
    import time

    keras = import_keras()

    class LRRecorder(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.trained_with, self.after, self.epoch_time_s = [], [], []

        def _lr(self):
            return float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

        def on_epoch_begin(self, epoch, logs=None):
            self.trained_with.append(self._lr())
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.epoch_time_s.append(time.perf_counter() - self._start)
            self.after.append(self._lr())

    return LRRecorder()
