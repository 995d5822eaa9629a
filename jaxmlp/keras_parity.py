"""Parity check: the same MLPs trained by Keras 3 `fit` (JAX backend) and by jaxmlp, real data.

    python -m jaxmlp.keras_parity --data-dir data [--epochs 5] [--seeds 2] [--json PATH]

For TA8's baseline (2x32), dropout (pyramid + Dropout 0.3) and combined models: Adam 1e-3,
batch 64, CIFAR-10 with Keras's tail validation split, and the same seeds in both frameworks
(their random streams differ, so single epochs differ; the question is whether the curves do).
jaxmlp trains each twice: with optax's Adam epsilon (the default) and with Keras 3's
(`OptimConfig(keras_epsilon=True)`), which differ for tiny gradients (see jaxmlp.optim).
Prints train/val accuracy per epoch and the mean over seeds of the last epoch. Needs
`pip install -e '.[bench]'` (Keras is never a core dependency).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

import numpy as np

from jaxmlp import atomic, results, train
from jaxmlp import config as C

MODELS = {
    "baseline": C.ModelConfig(hidden=(32, 32)),
    "dropout": C.ModelConfig(hidden=(256, 128, 64), dropout=0.3),
    "combined": C.ModelConfig(hidden=(256, 128, 64), batch_norm=True, dropout=(0.3, 0.3, 0.2),
                              l2=1e-4, kernel_init="he_normal"),
}


def keras_model(cfg: C.ModelConfig):
    """The Keras Sequential of `cfg` (Dense [-> BatchNorm] -> activation [-> Dropout], softmax),
    compiled with Adam 1e-3 and sparse categorical cross-entropy, ready for `fit`."""
    import keras
    from keras import layers, regularizers

    model = keras.Sequential([keras.Input((cfg.input_dim,))])
    reg = regularizers.l2(cfg.l2) if cfg.l2 else None
    for width, rate in zip(cfg.hidden, cfg.dropout):
        model.add(layers.Dense(width, kernel_initializer=cfg.kernel_init, kernel_regularizer=reg))
        if cfg.batch_norm:
            model.add(layers.BatchNormalization())
        model.add(layers.Activation(cfg.activation))
        if rate:
            model.add(layers.Dropout(rate))
    # jaxmlp applies kernel_init and l2 to every Dense, the output layer included: so here too.
    model.add(layers.Dense(cfg.num_classes, activation="softmax",
                           kernel_initializer=cfg.kernel_init, kernel_regularizer=reg))
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def keras_curves(cfg, ds, epochs: int, seed: int) -> dict:
    import keras

    keras.utils.set_random_seed(seed)
    model = keras_model(cfg)
    h = model.fit(ds.x_train, ds.y_train, batch_size=64, epochs=epochs, verbose=0,
                  validation_data=(ds.x_val, ds.y_val)).history
    return {"accuracy": h["accuracy"], "val_accuracy": h["val_accuracy"]}


def jaxmlp_curves(cfg, data, epochs: int, seed: int, keras_epsilon: bool = False) -> dict:
    run = C.RunConfig("parity", model=cfg,
                      optim=C.OptimConfig("adam", 1e-3, keras_epsilon=keras_epsilon),
                      train=C.TrainConfig("cifar10", epochs=epochs, batch_size=64, seed=seed))
    _, h, _ = train.fit(run, data)
    return {"accuracy": h["accuracy"], "val_accuracy": h["val_accuracy"]}


def main(argv=None) -> int:
    os.environ.setdefault("KERAS_BACKEND", "jax")
    p = argparse.ArgumentParser(prog="python -m jaxmlp.keras_parity",
                                description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", help="Keras-cache-layout folder with cifar-10-batches-py/")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--json", help="write the curves to this JSON file")
    args = p.parse_args(argv)
    from jaxmlp import data as D

    ds = D.load("cifar10", data_dir=args.data_dir)
    data = train.device_data(ds)
    out = {"benchmark": "keras_parity", "epochs": args.epochs, "batch": 64,
           "n_train": int(ds.x_train.shape[0]), "dataset": ds.identity,
           "environment": results.environment("solo"), "models": {}}
    import keras

    out["keras"] = keras.__version__
    for name in args.models:
        cfg = dataclasses.replace(MODELS[name], input_dim=ds.x_train.shape[1])
        rows = {"keras": [], "jaxmlp": [], "jaxmlp keras_epsilon": []}
        for seed in range(args.seeds):
            rows["keras"].append(keras_curves(cfg, ds, args.epochs, seed))
            rows["jaxmlp"].append(jaxmlp_curves(cfg, data, args.epochs, seed))
            rows["jaxmlp keras_epsilon"].append(
                jaxmlp_curves(cfg, data, args.epochs, seed, keras_epsilon=True))
            for who in rows:
                c = rows[who][-1]
                print(f"{name:<9} {who:<20} seed {seed}: train/val accuracy per epoch "
                      + " ".join(f"{a:.3f}/{v:.3f}" for a, v in
                                 zip(c["accuracy"], c["val_accuracy"])), flush=True)
        out["models"][name] = rows
        for who, curves in rows.items():
            last = np.mean([c["val_accuracy"][-1] for c in curves])
            print(f"{name:<9} {who:<20} mean val_accuracy at epoch {args.epochs}: {last:.3f}")
    if args.json:
        atomic.write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
