"""The benchmark page's content: one Spanish section per committed experiments/bench/*.json,
and the Keras parity table from jaxmlp.bench.parity_table when that module is present."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

from jaxmlp.report.compare import pm
from jaxmlp.report.tables import markdown


def device(b: dict) -> str:
    env = b.get("environment", {})
    n = env.get("device_count", 1)
    return (f"{env.get('device', '—')} ({env.get('platform', '—')}, {n} "
            f"{'dispositivo' if n == 1 else 'dispositivos'}), JAX `{env.get('jax', '—')}`")


def epoch_floor(b: dict) -> str:
    rows = [[r["batch"], f"{r['epoch_s']:.3f}", f"{r['examples_per_s']:,.0f}",
             f"{r['floor_s']:.3f}", f"{r['ratio']:.2f}"] for r in b.get("rows", [])]
    return ("Una época frente al mínimo que permite la máquina (el tiempo de sus productos de "
            "matrices a la velocidad medida de `matmul`):\n\n"
            + markdown(["Batch", "Época (s)", "Ejemplos/s", "Mínimo (s)", "Época / mínimo"],
                       rows, numeric=range(5)))


def sweep(b: dict) -> str:
    rows = [[r["members"], f"{r['epoch_s']:.3f}", f"{r['per_member_s']:.3f}"]
            for r in b.get("scaling", [])]
    text = ("Coste de una época cuando varios runs se entrenan como un solo programa "
            "vectorizado (`vmap`):\n\n"
            + markdown(["Runs en el grupo", "Época del grupo (s)", "Por run (s)"], rows,
                       numeric=range(3)))
    if b.get("group_vs_solo"):
        g = b["group_vs_solo"]
        text += (f"\n{g['members']} runs en grupo: {g['group_epoch_s']:.2f} s por época; uno tras "
                 f"otro: {g['solo_epochs_s']:.2f} s (×{g['speedup']:.2f}).\n")
    if b.get("keras"):
        k = b["keras"]
        text += (f"\nUna época de `jaxmlp`: {k['jaxmlp_epoch_s']:.2f} s; Keras 3 `fit` (backend "
                 f"JAX): {k['keras_epoch_s']:.2f} s (×{k['speedup']:.2f}).\n")
    return text


def whole_sweep(b: dict) -> str:
    return (f"El barrido completo de {b['experiment'].upper()}: {b['runs']} runs, "
            f"{b['members']} entrenamientos (runs × semillas), {b['epochs']:,} épocas en "
            f"total, {b['groups']} grupos compilados, **{b['wall_time_s']:.0f} s** de reloj "
            f"(`{b['command']}`).\n")


def keras_parity(b: dict) -> str:
    rows = []
    for model, by in b["models"].items():
        for who, curves in by.items():
            last = [100 * c["val_accuracy"][-1] for c in curves]
            rows.append([model, who, len(curves), f"{np.mean(last):.1f}",
                         f"{min(last):.1f}–{max(last):.1f}"])
    return (f"Keras 3 `fit` frente a `jaxmlp` con los mismos datos ({b['dataset']['name']}, "
            f"{b['n_train']:,} ejemplos de entrenamiento), Adam 1e-3, batch {b['batch']}, "
            f"{b['epochs']} épocas:\n\n"
            + markdown(["Modelo", "Entrenado con", "Semillas", "Val. última época (%)",
                        "Rango (%)"], rows, numeric=(2, 3)))


KINDS = {"epoch_vs_floor": epoch_floor, "sweep": sweep, "whole_sweep": whole_sweep,
         "keras_parity": keras_parity}


def parity_table(experiments: Path) -> str | None:
    """jaxmlp.bench.parity_table's Markdown table (JAX-free), when that module exists and
    there are Keras parity records under experiments/bench/parity."""
    try:
        module = importlib.import_module("jaxmlp.bench.parity_table")
    except ImportError:
        return None
    rows = module.rows(experiments)
    if not rows:
        return None
    compared = [r for r in rows if "diff" in r]
    if not compared:
        return None
    out = [[f"{r['experiment']} / {r['run']}", pm(r["ours"]["test_accuracy"], fmt=".2f"),
            pm(r["keras"]["test_accuracy"], fmt=".2f"), f"{100 * r['diff']:+.2f}",
            f"{100 * r['tolerance']:.2f}", "dentro" if r["within"] else "**fuera**"]
           for r in compared]
    return (markdown(["Run", "jaxmlp test (%)", "Keras 3 test (%)", "Δ (pp)", "Tolerancia (pp)",
                      "Veredicto"], out, numeric=(1, 2, 3, 4))
            + f"\n{len(compared)} de {len(rows)} runs tienen ya su réplica en Keras 3 "
            "(`python -m jaxmlp.bench.keras_parity`); la tolerancia es el mayor de 1 pp y dos "
            "desviaciones estándar combinadas.\n")


def context(benches: list[tuple[str, dict]], experiments: Path) -> dict:
    sections = [{"file": stem, "device": device(b), "text": KINDS[b["benchmark"]](b)}
                for stem, b in benches if b.get("benchmark") in KINDS]
    keras = [(stem, b["keras"]) for stem, b in benches if b.get("keras")]
    return {"sections": sections, "parity": parity_table(experiments),
            "keras": keras[-1][1] if keras else None,
            "keras_device": device(dict(benches)[keras[-1][0]]) if keras else ""}
