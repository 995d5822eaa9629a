"""jaxmlp: Keras-style MLP training in JAX. The public API: fit, load, MLP, optimizers, callbacks.

    import jaxmlp
    r = jaxmlp.fit(x, y, model=jaxmlp.MLP(hidden=(256, 128), dropout=0.3),
                   optimizer=jaxmlp.Adam(1e-3), epochs=50, batch_size=128,
                   validation_split=0.1,
                   callbacks=[jaxmlp.EarlyStopping(patience=5, restore_best_weights=True)])
    r.history["val_loss"]; r.evaluate(x_test, y_test); r.predict(x_new)
    r.save("model_dir"); jaxmlp.load("model_dir").predict(x_new)

Everything below the top level (config, epoch, group, fit, hooks, observers, records, the
experiment runner) is importable too; see docs/guide/api.md.
"""

from jaxmlp import datasets
from jaxmlp.callbacks import (
    CosineSchedule,
    CSVLogger,
    EarlyStopping,
    LearningRateScheduler,
    ModelCheckpoint,
    ReduceLROnPlateau,
    TensorBoard,
    TerminateOnNaN,
)
from jaxmlp.config import MLP, ConfigError
from jaxmlp.data import DataError
from jaxmlp.fit import Result, fit, load
from jaxmlp.optim import SGD, Adam, AdamW, RMSprop

__all__ = [
    "fit", "load", "Result", "MLP", "Adam", "AdamW", "SGD", "RMSprop",
    "EarlyStopping", "ReduceLROnPlateau", "LearningRateScheduler", "CosineSchedule",
    "ModelCheckpoint", "TerminateOnNaN", "TensorBoard", "CSVLogger",
    "ConfigError", "DataError", "datasets",
]
