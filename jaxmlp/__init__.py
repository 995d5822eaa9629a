"""jaxmlp: Keras-style MLP training in JAX. The public API: fit, fit_many, load, MLP, optimizers,
callbacks.

    import jaxmlp
    r = jaxmlp.fit(x, y, model=jaxmlp.MLP(hidden=(256, 128), dropout=0.3),
                   optimizer=jaxmlp.Adam(1e-3), epochs=50, batch_size=128,
                   validation_split=0.1,
                   callbacks=[jaxmlp.EarlyStopping(patience=5, restore_best_weights=True)])
    r.history["val_loss"]; r.evaluate(x_test, y_test); r.predict(x_new)
    r.save("model_dir"); jaxmlp.load("model_dir").predict(x_new)

The names load on first use, so `import jaxmlp.records` or `jaxmlp.report` never imports JAX.
Everything below the top level (config, epoch, group, loop, hooks, observers, records, the
experiment runner) is importable too; see docs/guide/api.md.
"""

import importlib

_PUBLIC = {
    "jaxmlp.loop": ("fit", "fit_many", "load", "Result"),
    "jaxmlp.config": ("MLP", "ConfigError"),
    "jaxmlp.data": ("DataError",),
    "jaxmlp.optim": ("Adam", "AdamW", "SGD", "RMSprop"),
    "jaxmlp.callbacks": ("EarlyStopping", "ReduceLROnPlateau", "LearningRateScheduler",
                         "CosineSchedule", "ModelCheckpoint", "TerminateOnNaN", "TensorBoard",
                         "CSVLogger", "BackupAndRestore"),
}
_HOME = {name: module for module, names in _PUBLIC.items() for name in names}
__all__ = [*_HOME, "datasets"]


def __getattr__(name: str):
    """`jaxmlp.fit` and friends, imported from their module the first time they are used."""
    if name == "datasets":
        return importlib.import_module("jaxmlp.datasets")
    if name not in _HOME:
        raise AttributeError(f"module 'jaxmlp' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOME[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted({*globals(), *__all__})
