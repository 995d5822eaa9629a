"""TA8's EarlyStopping run with and without Keras's probability clipping: whether the clipping
causes the stop-epoch gap between jaxmlp and Keras 3 on that run (issue 13).

    python -m jaxmlp.experiments.ta8_clip --data-dir DATA     # 2 runs x 5 seeds

Keras's loss on a softmax output clips each probability to [1e-7, 1 - 1e-7] before the log
(ModelConfig.output_clip); the committed TA8 runs use the exact loss from the logits. The
hypothesis tested: on the combined model (BatchNorm, whose moving statistics drift from epoch
to epoch) some validation predictions saturate, the exact val_loss jumps above Keras's, and
EarlyStopping(patience=5) fires earlier. Same model, data, seeds and callbacks as ta8's
cb_early_stopping (seeds 0-2 of `exacta` reproduce TA8's records bit for bit); only the loss
differs. The results page says what came out.
"""

from __future__ import annotations

from dataclasses import replace

from jaxmlp.experiments import ta8
from jaxmlp.experiments.cli import Experiment, main

BASE = next(r for r in ta8.EXPERIMENT.runs if r.name == "cb_early_stopping")

EXPERIMENT = Experiment(
    name="ta8_clip",
    title="TA8: EarlyStopping con y sin el recorte de probabilidades de Keras",
    dataset="cifar10",
    seeds=5,
    runs=(
        replace(BASE, name="exacta", part=1, label="Pérdida exacta (la nuestra, como en TA8)"),
        replace(BASE, name="recorte_keras", part=1, label="Probabilidades recortadas como Keras",
                model=replace(BASE.model, output_clip=1e-7)),
    ),
    objective="Saber si el recorte de probabilidades de Keras explica por qué nuestro "
              "cb_early_stopping de TA8 para antes que el de Keras 3.",
    description="El mismo run `cb_early_stopping` de TA8 (modelo combinado, EarlyStopping "
                "sobre `val_loss` con paciencia 5 y restaurando los mejores pesos), con cinco "
                "semillas: una vez con la entropía cruzada exacta desde los logits (lo que usa "
                "TA8) y otra con las probabilidades recortadas a [1e-7, 1 − 1e-7] antes del "
                "logaritmo, como hace la pérdida de Keras sobre una salida softmax. Los datos "
                "de CIFAR-10 son nuestra copia decodificada de JPEG.",
    notes=(
        "Both runs are TA8's cb_early_stopping (jaxmlp/experiments/ta8.py); recorte_keras sets "
        "ModelConfig.output_clip=1e-7, Keras's epsilon.",
        "CIFAR-10 pixels decoded from a JPEG copy (shared/datasets/PROVENANCE.md).",
    ),
)

if __name__ == "__main__":
    main(EXPERIMENT)
