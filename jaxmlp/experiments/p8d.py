"""Práctica 8D: callbacks on a Fashion-MNIST MLP, with and without, and each one alone.

    python -m jaxmlp.experiments.p8d --data-dir DATA   # 7 runs x 5 seeds, ~20 min on 2 CPU cores

784 -> 256 ReLU + Dropout 0.3 -> 128 ReLU -> 10; Adam 1e-3; batch 128; at most 50 epochs;
the last 10 % of the training set for validation (Keras validation_split).
"""

from __future__ import annotations

from dataclasses import replace

from jaxmlp import config as C
from jaxmlp.experiments.cli import Experiment, main

MODEL = C.ModelConfig(hidden=(256, 128), dropout=(0.3, 0.0))
TRAIN = C.TrainConfig(dataset="fashion_mnist", epochs=50, batch_size=128, validation_split=0.1)
EARLY = C.EarlyStopping(monitor="val_loss", patience=5, restore_best_weights=True)
PLATEAU = C.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=3)
CHECKPOINT = C.ModelCheckpoint(monitor="val_accuracy")
# The seed's scheduler: lr = 1e-3 * 0.5 * (1 + cos(pi * epoch / 10)), periodic as written.
COSINE = C.CosineSchedule(initial_lr=1e-3, period=10, min_lr=0.0)


# Keras 3's Adam update exactly (epsilon before the bias correction), as the Keras seed ran;
# optax's placement differs on raw-pixel inputs (docs/guide/api.md, `jaxmlp.keras_parity`).
ADAM = C.OptimConfig("adam", 1e-3, keras_epsilon=True)


def _run(name, label, hooks, description):
    part = 1 if name.startswith(("sin_callbacks", "con_callbacks")) else 2
    return C.RunConfig(name=name, model=MODEL, optim=ADAM, train=TRAIN, hooks=hooks, part=part,
                       label=label, description=description)


ALL_CALLBACKS = C.HooksConfig(early_stopping=EARLY, reduce_lr=PLATEAU, schedule=COSINE,
                              checkpoint=CHECKPOINT)


RUNS = (
    _run("sin_callbacks", "Sin callbacks", C.HooksConfig(),
         "50 épocas fijas, LR constante"),
    # As Keras ran the seed's list: the scheduler sets the LR at every epoch start, so it
    # overwrites ReduceLROnPlateau's cuts (lr_composition="keras").
    _run("con_callbacks", "Con callbacks", ALL_CALLBACKS,
         "EarlyStopping + ReduceLROnPlateau + ModelCheckpoint + coseno (como la página original)"),
    # Ours, one extra run: the plateau's cuts scale the cosine instead of being overwritten.
    _run("con_callbacks_escalado", "Con callbacks (composición jaxmlp)",
         replace(ALL_CALLBACKS, lr_composition="scale"),
         "los mismos callbacks; la meseta escala el coseno (composición nuestra)"),
    _run("solo_early_stopping", "Solo EarlyStopping", C.HooksConfig(early_stopping=EARLY),
         "EarlyStopping(val_loss, patience=5, restore_best_weights=True)"),
    _run("solo_reduce_lr", "Solo ReduceLROnPlateau", C.HooksConfig(reduce_lr=PLATEAU),
         "ReduceLROnPlateau(val_loss, factor=0.5, patience=3)"),
    _run("solo_checkpoint", "Solo ModelCheckpoint", C.HooksConfig(checkpoint=CHECKPOINT),
         "ModelCheckpoint(val_accuracy, save_best_only=True): pesos finales, mejor guardado"),
    _run("solo_cosine", "Solo coseno", C.HooksConfig(schedule=COSINE),
         "LearningRateScheduler: 1e-3 · 0.5 · (1 + cos(π·época/10))"),
)

EXPERIMENT = Experiment(
    name="p8d", title="Práctica 8D — Callbacks en un MLP (Fashion-MNIST)",
    dataset="fashion_mnist", runs=RUNS, seeds=5,
    notes=(
        "con_callbacks composes the scheduler and ReduceLROnPlateau as Keras 3 does (the "
        "scheduler overwrites the plateau's cuts each epoch); con_callbacks_escalado is ours: "
        "lr = max(cosine(epoch) * plateau scale, min_lr).",
        "The seed's cosine formula is periodic: the LR reaches 0 at epoch 10 and climbs back.",
        "TensorBoard logs are written for every run (runs/p8d/tb, git-ignored).",
        "Adam uses Keras 3's update exactly (keras_epsilon=True: epsilon added to sqrt(v) "
        "before the bias correction), not optax's placement.",
    ),
)

if __name__ == "__main__":
    main(EXPERIMENT)
