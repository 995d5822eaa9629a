"""Figures (PNG) and Markdown fragments for the portfolio site, from experiments/*/results.json.

    python -m jaxmlp.report [--experiments experiments] [--docs docs]

Pages include the fragments with pymdownx.snippets (`--8<-- "generated/<exp>/<name>.md"`), so
every number on the site comes from here and every comparative sentence is worded from the
numbers. Without results the same fragments say «resultados aún no generados». No JAX: json,
csv, numpy and matplotlib's Agg canvas only, so the docs build never needs an accelerator stack.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import warnings
from pathlib import Path

import numpy as np
from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from jaxmlp import atomic

PLACEHOLDER = "resultados aún no generados"
# Each experiment's fragments are included by one page; figure links are relative to it.
PAGE_PREFIX = {"p8d": "../", "ta8": "../", "bench": ""}
SYNTHETIC_SOURCES = ("fixture", "generated", "synthetic")

P8D_FRAGMENTS = (
    "status", "config", "dataset", "callbacks", "architecture", "fig_accuracy", "fig_loss",
    "fig_lr", "results", "evaluation", "fig_with_without", "fig_each_callback",
    "analysis_early_stopping", "analysis_reduce_lr", "analysis_checkpoint", "analysis_cosine",
    "conclusions", "seed_vs_ours", "technical", "adam_epsilon",
)
TA8_FRAGMENTS = (
    "status", "config", "dataset", "identical", "architectures", "params_check",
    "regularization", "combined_model", "fig_part1", "comparisons_part1", "lr", "optimizers",
    "batch", "fig_part2", "comparisons_part2", "callbacks", "fig_part3", "fig_lr_part3",
    "comparisons_part3", "fig_curves", "top5", "winner", "fig_overfitting", "fig_time",
    "seed_vs_ours", "findings", "technical", "adam_epsilon", "parity",
)
BENCH_FRAGMENTS = ("results",)

TA8_ARCH = ("baseline", "deep", "wide", "pyramid")
TA8_REG = ("gelu", "tanh", "batchnorm", "dropout", "l2", "he_normal", "combined")
TA8_LR = ("lr_0.01", "lr_0.001", "lr_0.0001")
TA8_OPT = ("opt_adam", "opt_sgd_momentum", "opt_sgd_nesterov", "opt_rmsprop", "opt_adamw")
TA8_BATCH = ("batch_32", "batch_64", "batch_128")
TA8_CB = ("cb_early_stopping", "cb_reduce_lr", "cb_cosine", "cb_combined")
TA8_KEY_RUNS = ("baseline", "pyramid", "combined", "lr_0.01", "lr_0.0001", "cb_cosine",
                "cb_combined")
P8D_SOLO = ("solo_early_stopping", "solo_reduce_lr", "solo_checkpoint", "solo_cosine")

# The seed pages' OWN published Keras numbers: a fixed reference to compare against, never
# our measurements. Práctica 8D: ../shared/seeds/08d-Callbacks-MLP.md ("Evaluación Final",
# "Conclusiones comparativas").
SEED_P8D = {
    "test_accuracy": {"con_callbacks": 0.889, "sin_callbacks": 0.86},
    "epochs_run": {"con_callbacks": 18},
    "final_lr": {"con_callbacks": 0.00031},
}
# TA8: ../shared/seeds/TA8-Backpropagation-Optimizadores.md (tables of parts 1-3, "Top 5
# Experimentos", "Modelo Ganador"). Its Deep and Pyramid parameter counts do not match those
# architectures; they are kept as published so the page can say so.
SEED_TA8 = {
    "test_accuracy": {
        "baseline": 0.474, "deep": 0.500, "wide": 0.477, "pyramid": 0.482, "gelu": 0.459,
        "tanh": 0.477, "batchnorm": 0.503, "dropout": 0.518, "l2": 0.490, "he_normal": 0.472,
        "combined": 0.524, "lr_0.01": 0.526, "lr_0.001": 0.545, "lr_0.0001": 0.512,
        "opt_adam": 0.545, "opt_sgd_momentum": 0.538, "opt_sgd_nesterov": 0.544,
        "opt_rmsprop": 0.549, "opt_adamw": 0.548, "batch_32": 0.545, "batch_64": 0.545,
        "batch_128": 0.552, "cb_early_stopping": 0.547, "cb_reduce_lr": 0.552,
        "cb_cosine": 0.560, "cb_combined": 0.562,
    },
    "val_accuracy": {"cb_combined": 0.571, "cb_cosine": 0.573, "cb_reduce_lr": 0.567,
                     "batch_128": 0.555, "opt_rmsprop": 0.558},
    "train_accuracy": {"cb_combined": 0.744},
    "params": {"baseline": 99722, "deep": 222986, "wide": 427658, "pyramid": 362378,
               "cb_combined": 830282},
    "time_s": {"opt_adam": 76, "opt_sgd_momentum": 74, "opt_sgd_nesterov": 74,
               "opt_rmsprop": 75, "opt_adamw": 76, "batch_32": 131, "batch_64": 76,
               "batch_128": 52, "cb_combined": 163, "cb_cosine": 117, "cb_reduce_lr": 108},
    "epochs_run": {"cb_early_stopping": 23},
    "lr_reductions": {"cb_reduce_lr": 3},
    "claimed_callback_gain_pp": "2-3",  # "Los callbacks mejoraron 2-3% el rendimiento final"
}

STYLE = {
    "figure.facecolor": "white", "axes.grid": True, "grid.alpha": 0.3, "font.size": 9,
    "axes.titlesize": 10, "axes.spines.top": False, "axes.spines.right": False,
    "legend.fontsize": 8, "legend.frameon": False, "svg.hashsalt": "jaxmlp",
}
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
          "#7f7f7f", "#17becf", "#bcbd22")
DPI = 100


# ---------------------------------------------------------------- formatting

def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def pm(s: dict | None, scale: float = 100.0, fmt: str = ".1f") -> str:
    """'mean ± std' of a summary stat ('—' when missing)."""
    if not s:
        return "—"
    return f"{s['mean'] * scale:{fmt}} ± {s['std'] * scale:{fmt}}"


def span(s: dict | None, scale: float = 100.0, fmt: str = ".1f") -> str:
    """'min–max' of a summary stat."""
    if not s:
        return "—"
    return f"{s['min'] * scale:{fmt}}–{s['max'] * scale:{fmt}}"


def pp(d: float) -> str:
    """A difference in percentage points, with a second decimal when it is tiny."""
    return f"{d:.2f}" if abs(d) < 0.1 else f"{d:.1f}"


def lr_text(x: float) -> str:
    return f"{x:.3g}"


def table(header, rows, numeric=()) -> str:
    """A Markdown table; columns whose index is in `numeric` are right-aligned."""
    def cell(c):
        return str(c).replace("|", "\\|").replace("\n", " ")
    align = ["---:" if i in numeric else "---" for i in range(len(header))]
    lines = ["| " + " | ".join(map(cell, header)) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(map(cell, r)) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def placeholder(what: str = "") -> str:
    return f"*({what + ': ' if what else ''}{PLACEHOLDER})*\n"


def label(run: dict) -> str:
    return run.get("label") or run["name"]


def quoted(run: dict) -> str:
    return f"«{label(run)}»"


def join_es(items) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " y " + items[-1]


def describe_model(m: dict) -> str:
    parts = ["→".join(map(str, m["hidden"])), m.get("activation", "relu")]
    if m.get("batch_norm"):
        parts.append("BatchNorm")
    rates = m.get("dropout") or []
    if any(rates):
        parts.append("Dropout " + "/".join(f"{r:g}" for r in rates))
    if m.get("l2"):
        parts.append(f"L2 {m['l2']:g}")
    if m.get("kernel_init", "glorot_uniform") != "glorot_uniform":
        parts.append(m["kernel_init"])
    return ", ".join(parts)


def describe_optim(o: dict) -> str:
    names = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "rmsprop": "RMSprop"}
    extra = [f"LR {o['learning_rate']:g}"]
    if o["name"] == "sgd" and o.get("momentum"):
        extra.append(f"momentum {o['momentum']:g}" + (", Nesterov" if o.get("nesterov") else ""))
    if o["name"] == "rmsprop":
        extra.append(f"ρ {o.get('rho', 0.9):g}")
    if o["name"] == "adamw":
        extra.append(f"weight decay {o.get('weight_decay', 0):g}")
    return f"{names.get(o['name'], o['name'])} ({', '.join(extra)})"


def describe_hooks(h: dict) -> str:
    """The callbacks of a run in Keras vocabulary, with their key arguments."""
    out = []
    if h.get("early_stopping"):
        e = h["early_stopping"]
        out.append(f"EarlyStopping({e['monitor']}, patience={e['patience']}"
                   + (", restore_best_weights=True" if e.get("restore_best_weights") else "")
                   + ")")
    if h.get("reduce_lr"):
        r = h["reduce_lr"]
        out.append(f"ReduceLROnPlateau({r['monitor']}, factor={r['factor']:g}, "
                   f"patience={r['patience']}"
                   + (f", min_lr={r['min_lr']:g}" if r.get("min_lr") else "") + ")")
    if h.get("checkpoint"):
        out.append(f"ModelCheckpoint({h['checkpoint']['monitor']}, save_best_only=True)")
    if h.get("schedule"):
        s = h["schedule"]
        out.append(f"LearningRateScheduler(coseno: {s['initial_lr']:g} → {s['min_lr']:g}, "
                   f"período {s['period']} épocas)")
    return " + ".join(out) if out else "ninguno"


# ---------------------------------------------------------------- loading

def load(exp_dir: Path) -> dict | None:
    path = exp_dir / "results.json"
    if not path.is_file():
        return None
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc["_dir"] = exp_dir
    return doc


def runs_of(doc: dict) -> dict:
    return {r["name"]: r for r in doc.get("runs", [])}


def present(runs: dict, names) -> list[dict]:
    return [runs[n] for n in names if n in runs]


def stat(run: dict, key: str) -> dict | None:
    return run.get("summary", {}).get(key)


def read_history(exp_dir: Path, rel: str | None) -> dict | None:
    """One seed's history CSV as {column: float array}; None when absent."""
    if not rel or not (exp_dir / rel).is_file():
        return None
    with open(exp_dir / rel, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    return {k: np.array([number(r[k]) for r in rows]) for k in rows[0]}


def number(text: str | None) -> float:
    """A CSV cell as float; Keras's `NA` (and anything unreadable) becomes NaN."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def curves(doc: dict, run: dict, column: str) -> list[np.ndarray]:
    out = []
    for s in run.get("seeds", []):
        h = read_history(doc["_dir"], s.get("history_csv"))
        if h is not None and column in h:
            out.append(h[column])
    return out


def seed_values(run: dict, *path) -> list[float]:
    vals = []
    for s in run.get("seeds", []):
        v = s
        for k in path:
            v = v.get(k) if isinstance(v, dict) else None
        if v is not None:
            vals.append(float(v))
    return vals


def stats(values) -> dict | None:
    """Mean, sample std (ddof=1), min, max, n — the same definition as results.json."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return None
    std = float(v.std(ddof=1)) if v.size > 1 else 0.0
    return {"mean": float(v.mean()), "std": std, "min": float(v.min()), "max": float(v.max()),
            "n": int(v.size)}


def time_stats(run: dict) -> dict | None:
    """Training seconds per run and seed; a vmapped group's time is split among its members."""
    return stats([s["wall_time_s"] / max(s.get("group_size", 1), 1)
                  for s in run.get("seeds", []) if "wall_time_s" in s])


def is_synthetic(doc: dict) -> bool:
    return doc.get("dataset", {}).get("source") in SYNTHETIC_SOURCES


# ---------------------------------------------------------------- comparisons

def overlaps(a: dict, b: dict) -> bool:
    """Whether two seed ranges (min..max) overlap."""
    return a["min"] <= b["max"] and b["min"] <= a["max"]


def compare_sentence(a_label: str, a: dict, b_label: str, b: dict) -> str:
    """Compare two test-accuracy stats in words: a gap inside the seeds' ranges is noise."""
    if a is None or b is None:
        return f"«{a_label}» frente a «{b_label}»: {PLACEHOLDER}."
    (hl, hi), (ll, lo) = sorted(((a_label, a), (b_label, b)), key=lambda t: -t[1]["mean"])
    d = 100 * (hi["mean"] - lo["mean"])
    if d == 0:
        return f"«{a_label}» y «{b_label}» empatan ({pct(hi['mean'])} % de media)."
    if min(hi["n"], lo["n"]) < 2:
        return (f"«{hl}» supera a «{ll}» por {pp(d)} pp (una sola semilla: sin estimación del "
                "ruido entre semillas).")
    if overlaps(hi, lo):
        return (f"«{a_label}» frente a «{b_label}»: la diferencia ({pp(d)} pp) está dentro del "
                f"ruido entre semillas (rangos {span(a)} % y {span(b)} % se solapan).")
    return (f"«{hl}» supera a «{ll}» por {pp(d)} pp (fuera del rango de variación entre "
            f"semillas: {span(hi)} % frente a {span(lo)} %).")


def compare_runs(a: dict | None, b: dict | None, metric: str = "test_accuracy") -> str:
    if a is None or b is None:
        return f"*(comparación pendiente: {PLACEHOLDER} para uno de los runs)*"
    return compare_sentence(label(a), stat(a, metric), label(b), stat(b, metric))


def config_key(run: dict) -> str:
    return json.dumps(run.get("config", {}), sort_keys=True)


def identical_groups(runs: list[dict]) -> list[list[dict]]:
    """Runs that share one configuration, in run order (groups of one included)."""
    groups: dict[str, list[dict]] = {}
    for r in runs:
        groups.setdefault(config_key(r), []).append(r)
    return list(groups.values())


def same_numbers(a: dict, b: dict) -> bool:
    va, vb = seed_values(a, "test", "accuracy"), seed_values(b, "test", "accuracy")
    return bool(va) and va == vb


def group_label(group: list[dict]) -> str:
    return " = ".join(label(r) for r in group)


def best_of(runs: list[dict]) -> dict | None:
    scored = [r for r in runs if stat(r, "test_accuracy")]
    return max(scored, key=lambda r: stat(r, "test_accuracy")["mean"]) if scored else None


# ---------------------------------------------------------------- figures

def new_figure(width: float, height: float, ncols: int = 1, nrows: int = 1):
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False).ravel()


def png_bytes(fig: Figure) -> bytes:
    """PNG without the Software/date metadata, so identical inputs give identical bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def legend_below(fig: Figure, ax, ncols: int = 4) -> None:
    """One legend under the figure (outside the data), from one axes' labelled lines."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(ncols, len(handles)))


def band(ax, series: list[np.ndarray], color: str, name: str, style: str = "-") -> None:
    """Every seed as a thin line, the mean as a thick one and the min–max range as a band."""
    if not series:
        return
    n = max(len(c) for c in series)
    grid = np.full((len(series), n), np.nan)
    for i, c in enumerate(series):
        grid[i, :len(c)] = c
        ax.plot(np.arange(1, len(c) + 1), c, color=color, lw=0.6, alpha=0.35, ls=style)
    x = np.arange(1, n + 1)
    with warnings.catch_warnings():  # an epoch where every seed logged NA: a gap, not an error
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi, mean = np.nanmin(grid, 0), np.nanmax(grid, 0), np.nanmean(grid, 0)
    ax.fill_between(x, lo, hi, color=color, alpha=0.12, lw=0)
    ax.plot(x, mean, color=color, lw=1.8, ls=style, label=name)


def accuracy_bars(ax, runs: list[dict], seed_ref: dict | None = None) -> None:
    """Horizontal bars of test accuracy (mean ± std), each seed as a dot, the seed page's value
    as a hollow diamond."""
    runs = [r for r in runs if stat(r, "test_accuracy")]
    y = np.arange(len(runs))[::-1]
    means = [100 * stat(r, "test_accuracy")["mean"] for r in runs]
    stds = [100 * stat(r, "test_accuracy")["std"] for r in runs]
    ax.barh(y, means, xerr=stds, color=COLORS[0], alpha=0.75, capsize=3, height=0.6,
            label="jaxmlp: media ± std")
    for yi, r in zip(y, runs):
        vals = [100 * v for v in seed_values(r, "test", "accuracy")]
        ax.plot(vals, [yi] * len(vals), "o", color="black", ms=2.5, alpha=0.7)
    ref = [(yi, 100 * seed_ref[r["name"]]) for yi, r in zip(y, runs)
           if seed_ref and r["name"] in seed_ref]
    if ref:
        ax.plot([v for _, v in ref], [yi for yi, _ in ref], "D", mfc="none", mec=COLORS[1],
                ms=6, label="seed (Keras, publicado)")
    lo = min(means + [v for _, v in ref]) - max(stds + [0]) - 2
    hi = max(means + [v for _, v in ref]) + max(stds + [0]) + 1.5
    ax.set_xlim(max(lo, 0), min(hi, 100))
    ax.set_yticks(y, [label(r) for r in runs])
    ax.set_xlabel("Exactitud en test (%)")


# ---------------------------------------------------------------- output

class Output:
    """Writes one experiment's fragments and figures; skips files whose bytes are unchanged."""

    def __init__(self, docs: Path, exp: str):
        self.exp = exp
        self.md_dir = docs / "generated" / exp
        self.png_dir = docs / "assets" / "generated" / exp
        self.written: list[Path] = []

    def _put(self, path: Path, data: bytes) -> None:
        if not (path.is_file() and path.read_bytes() == data):
            atomic.write_bytes(path, data)
        self.written.append(path)

    def text(self, name: str, text: str) -> None:
        self._put(self.md_dir / f"{name}.md", text.rstrip("\n").encode("utf-8") + b"\n")

    def figure(self, name: str, fig: Figure, alt: str, caption: str) -> str:
        """Save the PNG and return the Markdown that shows it on the including page."""
        self._put(self.png_dir / f"{name}.png", png_bytes(fig))
        link = f"{PAGE_PREFIX[self.exp]}assets/generated/{self.exp}/{name}.png"
        return f"![{alt}]({link})\n\n*{caption}*\n"

    def prune(self) -> None:
        """Delete generated files of this experiment that this run did not produce."""
        keep = set(self.written)
        for folder, pattern in ((self.md_dir, "*.md"), (self.png_dir, "*.png")):
            if folder.is_dir():
                for path in folder.glob(pattern):
                    if path not in keep:
                        path.unlink()


# ---------------------------------------------------------------- shared fragments

def status_fragment(doc: dict | None, exp: str) -> str:
    if doc is None:
        return (f'!!! warning "Resultados aún no generados"\n\n'
                f"    Esta página todavía no tiene resultados medidos: {PLACEHOLDER}. "
                f"Ejecuta `python -m jaxmlp.experiments.{exp}` (ver el README) y después "
                "`python -m jaxmlp.report`.\n")
    runs, seeds = doc.get("runs", []), doc.get("settings", {}).get("seeds", [])
    where = f"`experiments/{doc.get('experiment', exp)}/results.json`"
    if is_synthetic(doc):
        return ('!!! danger "Datos sintéticos: no son resultados"\n\n'
                f"    Esta página se generó desde {where} con `dataset.source = "
                f"\"{doc['dataset'].get('source')}\"`: las cifras son inventadas o de datos "
                "sintéticos y no miden nada.\n")
    return ('!!! info "Resultados medidos"\n\n'
            f"    Todas las cifras, tablas y figuras de esta página se generan con "
            f"`python -m jaxmlp.report` a partir de {where} ({len(runs)} runs × "
            f"{len(seeds)} semillas, creado {doc.get('created', '—')}). Comando: "
            f"`{doc.get('command', '—')}`.\n")


def dataset_fragment(doc: dict) -> str:
    d = doc.get("dataset", {})
    vs = d.get("validation_split")
    split = (f"validación = último {100 * vs:g} % del conjunto de entrenamiento antes de barajar "
             "(`validation_split` de Keras)" if d.get("split", "tail") == "tail" and vs
             else f"división `{d.get('split', '—')}`")
    text = (f"**Dataset:** {dataset_name(d.get('name'))} (origen: "
            f"`{d.get('source', '—')}`) — {d.get('n_train', 0):,} ejemplos de entrenamiento, "
            f"{d.get('n_val', 0):,} de validación y {d.get('n_test', 0):,} de test; {split}.\n")
    if d.get("note"):
        text += f'\n!!! note "Sobre esta copia del dataset"\n\n    {d["note"]}\n'
    return text


def dataset_name(name: str | None) -> str:
    return {"cifar10": "CIFAR-10", "fashion_mnist": "Fashion-MNIST", "mnist": "MNIST"}.get(
        name, name or "—")


def adam_epsilon_fragment(doc: dict) -> str:
    """Which Adam update the results were trained with, read from their configs."""
    adam = [r for r in doc.get("runs", []) if r["config"]["optim"]["name"] in ("adam", "adamw")]
    keras = [r["name"] for r in adam if r["config"]["optim"].get("keras_epsilon", False)]
    if not adam:
        return "Ningún run de estos resultados usa Adam ni AdamW.\n"
    if len(keras) == len(adam):
        return ("En estos resultados, todos los runs con Adam o AdamW usan la actualización de "
                "Keras 3 tal cual (`OptimConfig(keras_epsilon=True)`: el épsilon se suma a "
                "`sqrt(v)` antes de la corrección de sesgo), de modo que el optimizador no es una "
                "fuente de diferencias con Keras.\n")
    if not keras:
        return ("En estos resultados, los runs con Adam o AdamW usan la colocación del épsilon "
                "de `optax` (después de la corrección de sesgo), no la de Keras 3; "
                "`OptimConfig(keras_epsilon=True)` reproduce Keras paso a paso, pero no es el "
                "usado aquí.\n")
    return ("En estos resultados, usan la actualización de Adam de Keras 3 "
            f"(`keras_epsilon=True`): {', '.join(f'`{n}`' for n in keras)}; los demás runs con "
            "Adam o AdamW usan la colocación del épsilon de `optax`.\n")


def technical_fragment(doc: dict) -> str:
    env, d = doc.get("environment", {}), doc.get("dataset", {})
    rows = [["Dispositivo", f"{env.get('device', '—')} ({env.get('platform', '—')}, "
             f"{env.get('device_count', '—')} dispositivo(s))"],
            ["Motor de entrenamiento", f"`{env.get('engine', '—')}`"]]
    rows += [[name, f"`{env[key]}`"] for name, key in (
        ("Python", "python"), ("JAX", "jax"), ("jaxlib", "jaxlib"), ("Flax", "flax"),
        ("optax", "optax"), ("Orbax", "orbax")) if env.get(key)]
    seeds = doc.get("settings", {}).get("seeds", [])
    rows += [["Semillas", ", ".join(map(str, seeds)) or "—"],
             ["Resultados creados", doc.get("created", "—")],
             ["Comando", f"`{doc.get('command', '—')}`"]]
    inv = doc.get("settings", {}).get("this_invocation")
    if inv:
        rows.append(["Última invocación", f"{inv.get('wall_time_s', 0):.0f} s de reloj, "
                     f"{inv.get('groups_trained', 0)}/{inv.get('groups_total', 0)} grupos "
                     "entrenados" + (" (completa)" if inv.get("complete") else "")])
    text = table(["Dato", "Valor"], rows)
    files = d.get("files", {})
    if files:
        text += "\n" + table(["Archivo de datos", "sha256 (12 primeros hex)"],
                             [[f"`{k}`", f"`{v[:12]}`"] for k, v in sorted(files.items())])
    notes = doc.get("settings", {}).get("notes", [])
    if notes:
        text += "\nNotas registradas en `results.json` por el runner:\n\n"
        text += "".join(f"- {n}\n" for n in notes)
    return text


def results_table(doc: dict, runs: list[dict], seed_ref: dict | None = None,
                  extra=()) -> str:
    """Test accuracy per run over seeds, with optional columns (name, function of the run)."""
    if not runs:
        return placeholder("tabla")
    header = ["Experimento", "Configuración", "Test acc (%) media ± std", "Rango (%)", "n"]
    header += [name for name, _ in extra]
    if seed_ref is not None:
        header.append("Seed (Keras, %)")
    rows = []
    for r in runs:
        s = stat(r, "test_accuracy")
        row = [label(r), r.get("description") or config_cell(r), pm(s), span(s),
               s["n"] if s else "—"]
        row += [fn(r) for _, fn in extra]
        if seed_ref is not None:
            row.append(pct(seed_ref[r["name"]]) if r["name"] in seed_ref else "—")
        rows.append(row)
    text = table(header, rows, numeric=set(range(2, len(header))))
    if any(name.startswith("Tiempo") for name, _ in extra):
        text += time_note(runs)
    return text + twins_note(doc, runs)


def config_cell(run: dict) -> str:
    c = run.get("config", {})
    parts = [describe_model(c["model"])] if "model" in c else []
    if "optim" in c:
        parts.append(describe_optim(c["optim"]))
    if "train" in c:
        parts.append(f"batch {c['train']['batch_size']}, {c['train']['epochs']} ép.")
    return "; ".join(parts)


def twins_note(doc: dict, shown: list[dict]) -> str:
    """A generated note when runs in this table share their configuration with other runs."""
    notes = []
    for g in identical_groups(doc.get("runs", [])):
        if len(g) > 1 and any(r in shown for r in g):
            same = all(same_numbers(g[0], r) for r in g[1:])
            notes.append(f"{join_es([quoted(r) for r in g])} son la misma configuración"
                         + (" y, con las mismas semillas, dan exactamente las mismas cifras."
                            if same else "; sus cifras difieren entre sí (ver «Configuración»)."))
    return "".join(f"\n!!! note \"Configuraciones idénticas\"\n\n    {n}\n" for n in notes)


def epochs_cell(r: dict) -> str:
    s = stat(r, "epochs_run")
    if not s:
        return "—"
    return f"{s['mean']:.1f} ({s['min']:.0f}–{s['max']:.0f})" if s["std"] else f"{s['mean']:.0f}"


def group_sizes(runs: list[dict]) -> list[int]:
    return sorted({s.get("group_size", 1) for r in runs for s in r.get("seeds", [])})


def time_note(runs: list[dict]) -> str:
    """Say how to read per-run times when runs were trained together as vmapped groups."""
    sizes = group_sizes(runs)
    if not sizes or sizes == [1]:
        return ""
    return ("\nTiempo: el motor `group` entrena varios runs y semillas como un solo programa "
            "vectorizado; cada uno recibe el tiempo de su grupo dividido entre los miembros "
            f"(grupos de {join_es([str(n) for n in sizes])}), así que el tiempo solo es "
            "comparable entre runs de grupos del mismo tamaño.\n")


def time_cell(r: dict) -> str:
    s = time_stats(r)
    return f"{s['mean']:.1f}" if s else "—"


def params_cell(r: dict) -> str:
    p = r.get("params", {})
    return f"{p['total']:,}" if "total" in p else "—"


def lr_cell(r: dict) -> str:
    s = stat(r, "final_lr")
    if not s:
        return "—"
    return lr_text(s["mean"]) + ("" if s["min"] == s["max"] else
                                 f" ({lr_text(s['min'])}–{lr_text(s['max'])})")


def reductions_cell(r: dict) -> str:
    s = stat(r, "lr_reductions")
    if not s or not r.get("config", {}).get("hooks", {}).get("reduce_lr"):
        return "—"
    spread = "" if s["min"] == s["max"] else f" ({s['min']:.0f}–{s['max']:.0f})"
    return f"{s['mean']:.1f}{spread}"


def best_epoch_cell(r: dict) -> str:
    s = stat(r, "best_epoch")
    return f"{s['mean'] + 1:.1f}" if s else "—"


def gap_stats(run: dict) -> dict | None:
    """Train − test accuracy per seed (overfitting), as stats."""
    return stats([s["train"]["accuracy"] - s["test"]["accuracy"]
                  for s in run.get("seeds", []) if "train" in s and "test" in s])


def val_loss_rise(doc: dict, run: dict) -> dict | None:
    """How far the last val_loss sits above its minimum, per seed (from the histories)."""
    rises = [c[-1] - np.nanmin(c) for c in curves(doc, run, "val_loss")
             if len(c) and np.isfinite(c[-1])]
    return stats(rises)


def layer_rows(model: dict, input_dim: int) -> tuple[list[list[str]], int]:
    """Per-layer parameter counts computed from the architecture (Dense: in·out + out;
    BatchNorm: 4·units, half of them non-trainable)."""
    rows, total, width = [], 0, input_dim
    rates = model.get("dropout") or [0.0] * len(model["hidden"])
    for i, (units, rate) in enumerate(zip(model["hidden"], rates), 1):
        dense = width * units + units
        act = model.get("activation", "relu")
        text, params = f"Dense({units})", dense
        if model.get("batch_norm"):  # Keras order: Dense -> BatchNorm -> activation -> Dropout
            text += " + BatchNorm"
            params += 4 * units
        text += f" + {act}"
        if rate:
            text += f" + Dropout({rate:g})"
        rows.append([f"Oculta {i}", text, f"{params:,}"])
        total, width = total + params, units
    out = width * model.get("num_classes", 10) + model.get("num_classes", 10)
    rows.append(["Salida", f"Dense({model.get('num_classes', 10)}, softmax)", f"{out:,}"])
    return rows, total + out


def architecture_fragment(run: dict, what: str) -> str:
    m = run["config"]["model"]
    rows, total = layer_rows(m, m.get("input_dim", 0))
    rows.insert(0, ["Entrada", f"{m.get('input_dim', 0):,} valores (imagen aplanada)", "0"])
    text = f"**{what}** (run «{label(run)}»):\n\n"
    text += table(["Capa", "Definición", "Parámetros"], rows, numeric={2})
    p = run.get("params", {})
    text += (f"\nTotal: **{p.get('total', 0):,}** parámetros ({p.get('trainable', 0):,} "
             f"entrenables, {p.get('non_trainable', 0):,} no entrenables: medias y varianzas "
             "móviles de BatchNorm), según `results.json`.")
    if p.get("total") != total:
        text += f" La suma por capas de arriba da {total:,}: no coincide con `results.json`."
    return text + "\n"


# ---------------------------------------------------------------- P8D

def p8d_fragments(doc: dict, out: Output) -> dict:
    runs = runs_of(doc)
    base, full = runs.get("sin_callbacks"), runs.get("con_callbacks")
    first = base or full or next(iter(runs.values()), None)
    if first is None:
        return {name: placeholder() for name in P8D_FRAGMENTS if name != "status"}
    frags = {"config": p8d_config(doc, first), "dataset": dataset_fragment(doc),
             "callbacks": p8d_callbacks(list(runs.values())),
             "architecture": architecture_fragment(first, "Arquitectura del MLP"),
             "technical": technical_fragment(doc), "adam_epsilon": adam_epsilon_fragment(doc)}
    frags.update(p8d_figures(doc, runs, out))
    frags["results"] = results_table(doc, list(runs.values()), extra=(
        ("Val acc (%)", lambda r: pm(stat(r, "val_accuracy"))),
        ("Train acc (%)", lambda r: pm(stat(r, "train_accuracy"))),
        ("Épocas", epochs_cell), ("LR final", lr_cell), ("Reducciones de LR", reductions_cell),
        ("Tiempo (s)", time_cell)))
    frags["evaluation"] = p8d_evaluation(full)
    frags.update(p8d_analysis(doc, runs))
    frags["conclusions"] = p8d_conclusions(doc, base, full)
    frags["seed_vs_ours"] = p8d_seed_vs_ours(base, full)
    return frags


def p8d_config(doc: dict, run: dict) -> str:
    c, d = run["config"], doc.get("dataset", {})
    vs = c["train"].get("validation_split", 0)
    rows = [["Dataset", dataset_name(d.get("name", c["train"].get("dataset")))],
            ["Modelo", f"MLP {describe_model(c['model'])}"],
            ["Épocas máximas", c["train"]["epochs"]],
            ["Batch size", c["train"]["batch_size"]],
            ["División", f"{100 * (1 - vs):g} % entrenamiento / {100 * vs:g} % validación "
             "(los últimos ejemplos, como `validation_split` de Keras)"],
            ["Optimizador", describe_optim(c["optim"])],
            ["Pérdida", "entropía cruzada categórica (etiquetas enteras)"],
            ["Semillas por run", len(doc.get("settings", {}).get("seeds", []))],
            ["Runs", ", ".join(label(r) for r in doc.get("runs", []))]]
    return table(["Parámetro", "Valor"], rows)


def p8d_callbacks(runs: list[dict]) -> str:
    return table(["Run", "Callbacks (argumentos clave)"],
                 [[label(r), describe_hooks(r["config"].get("hooks", {}))] for r in runs])


def p8d_figures(doc: dict, runs: dict, out: Output) -> dict:
    pair = present(runs, ("sin_callbacks", "con_callbacks"))
    frags = {}
    for metric, name, ylabel in (("accuracy", "accuracy", "Exactitud"),
                                 ("loss", "loss", "Pérdida")):
        frags[f"fig_{name}"] = curve_pair_figure(doc, pair, out, metric, ylabel) \
            + p8d_curve_notes(doc, runs, metric)
    frags["fig_lr"] = lr_figure(doc, list(runs.values()), out, "learning_rate",
                                "Tasa de aprendizaje por época (cada run, todas las semillas)")
    frags["fig_lr"] += "\n" + bullets(f"{quoted(r)}: LR final {lr_cell(r)}."
                                      for r in runs.values())
    frags["fig_with_without"] = with_without_figure(doc, pair, out)
    frags["fig_each_callback"] = each_callback_figure(doc, runs, out)
    return frags


def curve_pair_figure(doc, pair, out: Output, metric: str, ylabel: str) -> str:
    if not pair or not any(curves(doc, r, metric) for r in pair):
        return placeholder("figura")
    with rc_context(STYLE):
        fig, axes = new_figure(9.5, 3.4, ncols=len(pair))
        for ax, r in zip(axes, pair):
            band(ax, curves(doc, r, metric), COLORS[0], "entrenamiento")
            band(ax, curves(doc, r, "val_" + metric), COLORS[1], "validación")
            n = len(r.get("seeds", []))
            ax.set_title(f"{label(r)} ({n} semillas)")
            ax.set_xlabel("Época")
            ax.set_ylabel(ylabel)
        legend_below(fig, axes[0])
        return out.figure(metric, fig, f"{ylabel} por época",
                          f"{ylabel} de entrenamiento y validación por época: cada semilla en "
                          "trazo fino, la media en trazo grueso y el rango mín–máx sombreado "
                          "(la media usa las semillas que siguen entrenando).")


def p8d_curve_notes(doc: dict, runs: dict, metric: str) -> str:
    full, base = runs.get("con_callbacks"), runs.get("sin_callbacks")
    lines = []
    if metric == "accuracy" and full:
        e, mx = stat(full, "epochs_run"), full["config"]["train"]["epochs"]
        if e:
            lines.append(f"Con callbacks el entrenamiento duró {e['mean']:.1f} épocas de media "
                         f"(rango {e['min']:.0f}–{e['max']:.0f}) de {mx} posibles.")
        red = stat(full, "lr_reductions")
        if red and full["config"]["hooks"].get("reduce_lr"):
            lines.append(f"ReduceLROnPlateau redujo el LR {red['mean']:.1f} veces de media "
                         f"(rango {red['min']:.0f}–{red['max']:.0f}).")
    if metric == "loss":
        for r in (base, full):
            rise = val_loss_rise(doc, r) if r else None
            if rise:
                lines.append(f"{quoted(r)}: la val_loss final queda {rise['mean']:.3f} por "
                             f"encima de su mínimo de media (rango {rise['min']:.3f}–"
                             f"{rise['max']:.3f}).")
    return "".join(f"\n- {s}" for s in lines) + ("\n" if lines else "")


def lr_figure(doc, runs: list[dict], out: Output, name: str, title: str) -> str:
    """One small panel per run (linear scale: the seed's cosine reaches exactly 0)."""
    series = [(r, curves(doc, r, "learning_rate")) for r in runs]
    series = [(r, c) for r, c in series if c]
    if not series:
        return placeholder("figura")
    ncols = min(3, len(series))
    nrows = -(-len(series) // ncols)
    with rc_context(STYLE):
        fig, axes = new_figure(3.3 * ncols, 0.4 + 2.2 * nrows, ncols=ncols, nrows=nrows)
        for i, (ax, (r, cs)) in enumerate(zip(axes, series)):
            for c in cs:
                ax.step(np.arange(1, len(c) + 1), 1e3 * c, where="mid", color=COLORS[i % 10],
                        lw=1.0, alpha=0.7)
            ax.set_title(label(r))
            ax.set_ylim(bottom=0)
        for ax in axes[len(series):]:
            ax.set_visible(False)
        for ax in axes[-ncols:]:
            ax.set_xlabel("Época")
        for ax in axes[::ncols]:
            ax.set_ylabel("LR (×10⁻³)")
        fig.suptitle(title)
        return out.figure(name, fig, "Tasa de aprendizaje por época",
                          "Tasa de aprendizaje registrada en cada época, un panel por run "
                          "(cada semilla es una línea; coinciden donde la tasa no depende de la "
                          "validación).")


def with_without_figure(doc, pair: list[dict], out: Output) -> str:
    if len(pair) < 2 or not all(curves(doc, r, "val_accuracy") for r in pair):
        return placeholder("figura")
    with rc_context(STYLE):
        fig, axes = new_figure(9.5, 3.4, ncols=2)
        for i, r in enumerate(pair):
            band(axes[0], curves(doc, r, "val_accuracy"), COLORS[i], label(r))
            band(axes[1], curves(doc, r, "val_loss"), COLORS[i], label(r))
        for ax, y in zip(axes, ("Exactitud de validación", "Pérdida de validación")):
            ax.set_xlabel("Época")
            ax.set_ylabel(y)
        legend_below(fig, axes[0])
        fig.suptitle("Sin callbacks frente a con callbacks")
        img = out.figure("with_vs_without", fig, "Con y sin callbacks",
                         "Validación por época sin y con callbacks (media, semillas y rango).")
    return img + "\n" + compare_runs(pair[1], pair[0]) + "\n"


def each_callback_figure(doc, runs: dict, out: Output) -> str:
    chosen = present(runs, ("sin_callbacks",) + P8D_SOLO + ("con_callbacks",))
    if not chosen:
        return placeholder("figura")
    with rc_context(STYLE):
        fig, axes = new_figure(10, 3.8, ncols=2)
        for i, r in enumerate(chosen):
            c = curves(doc, r, "val_accuracy")
            if c:
                band(axes[0], c, COLORS[i % 10], label(r))
        axes[0].set_xlabel("Época")
        axes[0].set_ylabel("Exactitud de validación")
        legend_below(fig, axes[0], ncols=3)
        accuracy_bars(axes[1], chosen)
        axes[1].set_title("Exactitud en test por run")
        img = out.figure("each_callback", fig, "Cada callback por separado",
                         "Izquierda: exactitud de validación por época de cada callback solo. "
                         "Derecha: exactitud en test (barra = media, línea = ± std, puntos = "
                         "semillas).")
    base = runs.get("sin_callbacks")
    lines = [compare_runs(r, base) for r in present(runs, P8D_SOLO)]
    return img + "".join(f"\n- {s}" for s in lines) + "\n"


def p8d_evaluation(full: dict | None) -> str:
    if full is None:
        return placeholder("tabla")
    e, mx = stat(full, "epochs_run"), full["config"]["train"]["epochs"]
    rows = [["**Exactitud en test**", f"{pm(stat(full, 'test_accuracy'))} % "
             f"(rango {span(stat(full, 'test_accuracy'))} %)"],
            ["Exactitud en validación", f"{pm(stat(full, 'val_accuracy'))} %"],
            ["Épocas utilizadas", f"{epochs_cell(full)} de {mx} posibles" if e else "—"],
            ["Mejor época (1 = primera)", best_epoch_cell(full)],
            ["Learning rate final", lr_cell(full)]]
    return f"Run {quoted(full)}, media ± std sobre semillas:\n\n" + table(
        ["Métrica", "Valor"], rows)


def p8d_analysis(doc: dict, runs: dict) -> dict:
    base = runs.get("sin_callbacks")
    texts = {}
    r = runs.get("solo_early_stopping")
    texts["analysis_early_stopping"] = None if r is None else (
        f"Medido: {quoted(r)} se detuvo tras {epochs_cell(r)} épocas de "
        f"{r['config']['train']['epochs']} y restauró los pesos de la época "
        f"{best_epoch_cell(r)} (media). " + compare_runs(r, base))
    r = runs.get("solo_reduce_lr")
    texts["analysis_reduce_lr"] = None if r is None else (
        f"Medido: {quoted(r)} redujo el LR {reductions_cell(r)} veces de media y terminó en "
        f"LR {lr_cell(r)}. " + compare_runs(r, base))
    r = runs.get("solo_checkpoint")
    if r is not None and base is not None and same_numbers(r, base):
        texts["analysis_checkpoint"] = (
            f"Medido: {quoted(r)} no cambia el entrenamiento: sus cifras de test coinciden "
            f"semilla a semilla con {quoted(base)}, porque se evalúan los pesos finales; el "
            f"mejor modelo (época {best_epoch_cell(r)} de media) queda guardado en disco.")
    else:
        texts["analysis_checkpoint"] = None if r is None else (
            f"Medido: {quoted(r)} guardó su mejor modelo en la época {best_epoch_cell(r)} de "
            "media. " + compare_runs(r, base))
    r = runs.get("solo_cosine")
    sched = r["config"]["hooks"].get("schedule") if r else None
    texts["analysis_cosine"] = None if r is None else (
        (f"Con período {sched['period']}, el LR toca su mínimo en la época "
         f"{sched['period'] + 1} y vuelve a subir (la fórmula del seed es periódica). "
         if sched else "") + f"Medido: {quoted(r)} terminó en LR {lr_cell(r)}. "
        + compare_runs(r, base))
    return {k: (v + "\n" if v else placeholder()) for k, v in texts.items()}


def p8d_conclusions(doc: dict, base: dict | None, full: dict | None) -> str:
    if base is None or full is None:
        return placeholder("tabla")

    def rise(r):
        s = val_loss_rise(doc, r)
        return f"{s['mean']:.3f}" if s else "—"

    def gap(r):
        return pm(gap_stats(r))
    rows = [["Duración del entrenamiento (épocas)", epochs_cell(base), epochs_cell(full)],
            ["Sobreajuste: train − test (pp)", gap(base), gap(full)],
            ["Subida final de val_loss sobre su mínimo", rise(base), rise(full)],
            ["Learning rate final", lr_cell(base), lr_cell(full)],
            ["Rendimiento final (test acc, %)", pm(stat(base, "test_accuracy")),
             pm(stat(full, "test_accuracy"))]]
    return (table(["Aspecto", label(base), label(full)], rows, numeric={1, 2})
            + "\n" + compare_runs(full, base) + "\n")


def p8d_seed_vs_ours(base: dict | None, full: dict | None) -> str:
    if full is None:
        return placeholder("tabla")
    ref = SEED_P8D
    rows = [[f"Exactitud en test, {label(full)}", pct(ref["test_accuracy"]["con_callbacks"]),
             pm(stat(full, "test_accuracy"))],
            [f"Épocas utilizadas, {label(full)}",
             f"{ref['epochs_run']['con_callbacks']} de {full['config']['train']['epochs']}",
             epochs_cell(full)],
            [f"LR final, {label(full)}", lr_text(ref["final_lr"]["con_callbacks"]),
             lr_cell(full)]]
    if base:
        rows.insert(1, [f"Exactitud en test, {label(base)}",
                        pct(ref["test_accuracy"]["sin_callbacks"]),
                        pm(stat(base, "test_accuracy"))])
    text = table(["Magnitud", "Seed (Keras, publicado)", "Nosotros (jaxmlp, media ± std)"],
                 rows)
    sentences = []
    s = stat(full, "test_accuracy")
    seed_acc = ref["test_accuracy"]["con_callbacks"]
    inside = s["min"] <= seed_acc <= s["max"]
    sentences.append(
        f"El seed reporta {pct(seed_acc)} % con callbacks; nosotros medimos {pm(s)} % "
        + ("y su valor cae dentro de nuestro rango de semillas." if inside else
           f"({pp(100 * (s['mean'] - seed_acc))} pp de diferencia, fuera de nuestro rango de "
           f"semillas {span(s)} %)."))
    if base:
        seed_gain = 100 * (ref["test_accuracy"]["con_callbacks"]
                           - ref["test_accuracy"]["sin_callbacks"])
        ours_gain = 100 * (s["mean"] - stat(base, "test_accuracy")["mean"])
        ours = (f"nosotros medimos {pp(ours_gain)} pp" if ours_gain >= 0 else
                f"nosotros medimos lo contrario, {pp(-ours_gain)} pp a favor de {quoted(base)}")
        sentences.append(
            f"El seed atribuye a los callbacks una mejora de {pp(seed_gain)} pp sobre el "
            f"entrenamiento sin callbacks; {ours}: " + lower_first(compare_runs(full, base)))
    e = stat(full, "epochs_run")
    if e:
        seed_e = ref["epochs_run"]["con_callbacks"]
        sentences.append(
            f"El seed se detuvo en la época {seed_e}; nuestras semillas se detuvieron entre "
            f"{e['min']:.0f} y {e['max']:.0f}"
            + (", en línea con el seed." if e["min"] <= seed_e <= e["max"] else
               ", lejos de la del seed."))
    return text + "".join(f"\n- {x}" for x in sentences) + "\n"


def lower_first(s: str) -> str:
    return s[0].lower() + s[1:] if s and s[0] not in "«" else s


# ---------------------------------------------------------------- TA8

def ta8_fragments(doc: dict, out: Output) -> dict:
    runs = runs_of(doc)
    if not runs:
        return {name: placeholder() for name in TA8_FRAGMENTS if name != "status"}
    ref = SEED_TA8["test_accuracy"]
    params = ("Parámetros", params_cell)
    time = ("Tiempo (s)", time_cell)
    frags = {
        "config": ta8_config(doc), "dataset": dataset_fragment(doc),
        "identical": ta8_identical(doc),
        "architectures": results_table(doc, present(runs, TA8_ARCH), ref, (params,)),
        "params_check": ta8_params_check(runs),
        "regularization": results_table(doc, present(runs, TA8_REG), ref, (params,)),
        "combined_model": (architecture_fragment(runs["combined"], "Modelo combinado")
                           if "combined" in runs else placeholder()),
        "lr": results_table(doc, present(runs, TA8_LR), ref, (time,)),
        "optimizers": results_table(doc, present(runs, TA8_OPT), ref, (time,)),
        "batch": results_table(doc, present(runs, TA8_BATCH), ref, (time,)),
        "callbacks": results_table(doc, present(runs, TA8_CB), ref, (
            ("Épocas", epochs_cell), ("Mejor época", best_epoch_cell),
            ("Reducciones de LR", reductions_cell), ("LR final", lr_cell), time)),
        "comparisons_part1": bullets(ta8_pairs(runs, PART1_PAIRS)),
        "comparisons_part2": bullets(ta8_pairs(runs, PART2_PAIRS)),
        "comparisons_part3": bullets(ta8_part3_sentences(runs)),
        "top5": ta8_top5(doc),
        "winner": ta8_winner(doc),
        "seed_vs_ours": ta8_seed_vs_ours(doc, runs),
        "findings": bullets(ta8_findings(runs)),
        "technical": technical_fragment(doc),
        "adam_epsilon": adam_epsilon_fragment(doc),
    }
    for part in (1, 2, 3):
        frags[f"fig_part{part}"] = part_figure(doc, part, out)
    frags["fig_lr_part3"] = lr_figure(doc, present(runs, TA8_CB), out, "lr_part3",
                                      "Parte 3: tasa de aprendizaje por época")
    frags["fig_curves"] = key_curves_figure(doc, present(runs, TA8_KEY_RUNS), out)
    frags["fig_overfitting"] = overfitting_figure(doc, out)
    frags["fig_time"] = time_figure(doc, out)
    return frags


PART1_PAIRS = (("deep", "baseline"), ("wide", "baseline"), ("pyramid", "baseline"),
               ("gelu", "pyramid"), ("tanh", "pyramid"), ("batchnorm", "pyramid"),
               ("dropout", "pyramid"), ("l2", "pyramid"), ("he_normal", "pyramid"),
               ("combined", "pyramid"), ("combined", "baseline"))
PART2_PAIRS = (("lr_0.01", "lr_0.001"), ("lr_0.0001", "lr_0.001"),
               ("opt_sgd_momentum", "opt_adam"), ("opt_sgd_nesterov", "opt_adam"),
               ("opt_rmsprop", "opt_adam"), ("opt_adamw", "opt_adam"),
               ("batch_32", "batch_64"), ("batch_128", "batch_64"))


def bullets(lines) -> str:
    lines = [x for x in lines if x]
    return "".join(f"- {x}\n" for x in lines) if lines else placeholder()


def ta8_pairs(runs: dict, pairs) -> list[str]:
    return [compare_runs(runs[a], runs[b]) for a, b in pairs if a in runs and b in runs]


def ta8_part3_sentences(runs: dict) -> list[str]:
    ref = runs.get("opt_adam")
    out = []
    if ref:
        ep = ref["config"]["train"]["epochs"]
        cb_eps = sorted({r["config"]["train"]["epochs"] for r in present(runs, TA8_CB)})
        out.append(f"Referencia sin callbacks: {quoted(ref)} ({ep} épocas fijas); los runs de "
                   f"la parte 3 permiten hasta {join_es([str(e) for e in cb_eps])} épocas, así "
                   "que la comparación mezcla callbacks y presupuesto de épocas.")
        out += [compare_runs(r, ref) for r in present(runs, TA8_CB)]
    cbs = sorted(present(runs, TA8_CB), key=lambda r: -stat(r, "test_accuracy")["mean"])
    if len(cbs) >= 2:
        out.append("Entre callbacks, el mejor frente al segundo: " + compare_runs(cbs[0], cbs[1]))
    es = runs.get("cb_early_stopping")
    if es and stat(es, "epochs_run"):
        e = stat(es, "epochs_run")
        out.append(f"{quoted(es)} se detuvo tras {e['mean']:.1f} épocas de media (rango "
                   f"{e['min']:.0f}–{e['max']:.0f}) de {es['config']['train']['epochs']}.")
    rl = runs.get("cb_reduce_lr")
    if rl and stat(rl, "lr_reductions"):
        s = stat(rl, "lr_reductions")
        out.append(f"{quoted(rl)} redujo el LR {s['mean']:.1f} veces de media (rango "
                   f"{s['min']:.0f}–{s['max']:.0f}).")
    return out


def ta8_config(doc: dict) -> str:
    runs = doc.get("runs", [])

    def per_part(fn) -> str:
        parts = {}
        for r in runs:
            vals = parts.setdefault(r.get("part", 0), [])
            v = fn(r)
            if v not in vals:
                vals.append(v)
        return " · ".join(f"parte {p}: {', '.join(map(str, v))}" for p, v in sorted(parts.items()))
    rows = [["Épocas (máximas)", per_part(lambda r: r["config"]["train"]["epochs"])],
            ["Batch size", per_part(lambda r: r["config"]["train"]["batch_size"])],
            ["Optimizadores", per_part(lambda r: describe_optim(r["config"]["optim"]))],
            ["Runs por parte", " · ".join(
                f"parte {p}: {sum(1 for r in runs if r.get('part') == p)}"
                for p in sorted({r.get("part", 0) for r in runs}))],
            ["Semillas por run", ", ".join(map(str, doc.get("settings", {}).get("seeds", [])))],
            ["Total de entrenamientos", str(sum(len(r.get("seeds", [])) for r in runs))]]
    return table(["Parámetro", "Valor"], rows)


def ta8_identical(doc: dict) -> str:
    groups = [g for g in identical_groups(doc.get("runs", [])) if len(g) > 1]
    if not groups:
        return "Ningún par de runs comparte exactamente la misma configuración.\n"
    lines = []
    for g in groups:
        c = g[0]["config"]
        what = (f"{describe_model(c['model'])}; {describe_optim(c['optim'])}; batch "
                f"{c['train']['batch_size']}; {c['train']['epochs']} épocas")
        diffs = [abs(a - b) for r in g[1:] for a, b in
                 zip(seed_values(g[0], "test", "accuracy"), seed_values(r, "test", "accuracy"))]
        same = all(same_numbers(g[0], r) for r in g[1:])
        lines.append(f"{join_es([quoted(r) for r in g])} son **la misma configuración** "
                     f"({what}), repetida en varias tablas como en el seed. "
                     + ("Con las mismas semillas dan exactamente las mismas cifras: no son "
                        "mediciones independientes." if same else
                        f"Aun así sus cifras difieren hasta {pp(100 * max(diffs or [0]))} pp "
                        "entre sí: con las mismas semillas, la diferencia solo puede venir del "
                        "cálculo numérico (p. ej. otro agrupamiento vectorizado)."))
    return bullets(lines)


def ta8_params_check(runs: dict) -> str:
    ref = SEED_TA8["params"]
    rows, wrong = [], []
    for name in ref:
        if name not in runs:
            continue
        r = runs[name]
        ours = r["params"]["total"]
        ok = ours == ref[name]
        rows.append([label(r), describe_model(r["config"]["model"]), f"{ref[name]:,}",
                     f"{ours:,}", "sí" if ok else "**no**"])
        if not ok:
            wrong.append(f"{quoted(r)} ({ref[name]:,} en el seed; {ours:,} para "
                         f"{describe_model(r['config']['model'])})")
    if not rows:
        return placeholder("tabla")
    text = table(["Experimento", "Arquitectura", "Parámetros (seed)", "Parámetros (reales)",
                  "¿Coinciden?"], rows, numeric={2, 3})
    if wrong:
        text += ("\nLos recuentos del seed no corresponden a la arquitectura declarada en "
                 + join_es(wrong) + ". Los recuentos reales (Dense: entradas·salidas + "
                 "salidas; BatchNorm: 4 por unidad) son los de `results.json`.\n")
    else:
        text += "\nTodos los recuentos del seed coinciden con las arquitecturas.\n"
    return text


def ta8_top5(doc: dict) -> str:
    groups = [g for g in identical_groups(doc.get("runs", [])) if stat(g[0], "test_accuracy")]
    groups.sort(key=lambda g: -stat(g[0], "test_accuracy")["mean"])
    if not groups:
        return placeholder("tabla")
    medals = ("🥇", "🥈", "🥉", "4", "5")
    rows = []
    for medal, g in zip(medals, groups[:5]):
        r = g[0]
        rows.append([medal, group_label(g), pm(stat(r, "test_accuracy")),
                     pm(stat(r, "val_accuracy")), params_cell(r), epochs_cell(r),
                     time_cell(r)])
    text = table(["Ranking", "Experimento", "Test acc (%)", "Val acc (%)", "Parámetros",
                  "Épocas", "Tiempo (s)"], rows, numeric={2, 3, 4, 5, 6})
    text += time_note([g[0] for g in groups[:5]])
    text += ("\nRanking por exactitud media en test; las configuraciones idénticas ocupan un "
             "solo puesto.")
    if len(groups) >= 2:
        text += " " + compare_sentence(group_label(groups[0]), stat(groups[0][0], "test_accuracy"),
                                       group_label(groups[1]), stat(groups[1][0], "test_accuracy"))
    seed_top = sorted(SEED_TA8["test_accuracy"], key=lambda n: -SEED_TA8["test_accuracy"][n])[:5]
    ours_top = {r["name"] for g in groups[:5] for r in g}
    shared = [n for n in seed_top if n in ours_top]
    runs = runs_of(doc)
    text += (f"\n\nDel top 5 del seed, {len(shared)} de 5 están también en el nuestro"
             + (f" ({join_es([quoted(runs[n]) for n in shared])})." if shared else "."))
    return text + "\n"


def ta8_winner(doc: dict) -> str:
    runs = doc.get("runs", [])
    best = best_of(runs)
    if best is None:
        return placeholder()
    c = best["config"]
    rows = [["Run", group_label(next(g for g in identical_groups(runs) if best in g))],
            ["Arquitectura", describe_model(c["model"])],
            ["Optimizador", describe_optim(c["optim"])],
            ["Callbacks", describe_hooks(c.get("hooks", {}))],
            ["Exactitud en entrenamiento (%)", pm(stat(best, "train_accuracy"))],
            ["Exactitud en validación (%)", pm(stat(best, "val_accuracy"))],
            ["**Exactitud en test (%)**", pm(stat(best, "test_accuracy"))],
            ["Parámetros totales", params_cell(best)],
            ["Mejor época (1 = primera)", f"{best_epoch_cell(best)} de "
             f"{c['train']['epochs']}"],
            ["Épocas entrenadas", epochs_cell(best)],
            ["Tiempo de entrenamiento (s)", time_cell(best)]]
    return table(["Dato", "Valor (media ± std sobre semillas)"], rows) + time_note([best])


def ta8_seed_vs_ours(doc: dict, runs: dict) -> str:
    ref = SEED_TA8["test_accuracy"]
    rows = []
    for r in doc.get("runs", []):
        s = stat(r, "test_accuracy")
        if r["name"] not in ref or not s:
            continue
        seed = ref[r["name"]]
        rows.append([label(r), pct(seed), pm(s), f"{100 * (s['mean'] - seed):+.1f}",
                     "sí" if s["min"] <= seed <= s["max"] else "no"])
    if not rows:
        return placeholder("tabla")
    text = table(["Experimento", "Seed (Keras, %)", "Nosotros (%)", "Diferencia (pp)",
                  "¿Seed dentro de nuestro rango?"], rows, numeric={1, 2, 3})
    inside = sum(1 for row in rows if row[-1] == "sí")
    text += (f"\nEl valor publicado por el seed cae dentro de nuestro rango de semillas en "
             f"{inside} de {len(rows)} experimentos.\n\n")
    return text + bullets(ta8_seed_claims(runs))


def seed_best_claim(runs: dict, names, what: str) -> str | None:
    """«The seed says X was best at <what>; we measure Y», with the noise verdict."""
    ref = SEED_TA8["test_accuracy"]
    cands = present(runs, names)
    if len(cands) < 2:
        return None
    seed_best = max((n for n in names if n in ref), key=lambda n: ref[n])
    ours = best_of(cands)
    twins = next(g for g in identical_groups(cands) if ours in g)
    if seed_best in runs and runs[seed_best] in twins:
        rest = [r for r in cands if r not in twins]
        runner = best_of(rest)
        return (f"{what}: coincidimos con el seed, el mejor es {quoted(ours)}"
                + (". " + compare_runs(ours, runner) if runner else "."))
    if seed_best not in runs:
        return None
    return (f"{what}: el seed señala {quoted(runs[seed_best])} como el mejor; nosotros medimos "
            f"{quoted(ours)}. " + compare_runs(ours, runs[seed_best]))


def ta8_seed_claims(runs: dict) -> list[str]:
    ref = SEED_TA8["test_accuracy"]
    all_names = tuple(runs)
    out = [seed_best_claim(runs, all_names, "Mejor resultado general"),
           seed_best_claim(runs, TA8_ARCH + TA8_REG, "Parte 1 (arquitecturas y regularización)"),
           seed_best_claim(runs, TA8_LR, "Learning rate"),
           seed_best_claim(runs, TA8_OPT, "Optimizador"),
           seed_best_claim(runs, TA8_BATCH, "Batch size"),
           seed_best_claim(runs, TA8_CB, "Callbacks")]
    best = best_of(list(runs.values()))
    if "baseline" in runs and best:
        seed_gain = 100 * (max(ref.values()) - ref["baseline"])
        ours = 100 * (stat(best, "test_accuracy")["mean"]
                      - stat(runs["baseline"], "test_accuracy")["mean"])
        out.append(f"Del baseline al mejor modelo el seed gana {pp(seed_gain)} pp; nosotros "
                   f"{pp(ours)} pp (de {quoted(runs['baseline'])} a {quoted(best)}).")
    if best and gap_stats(best):
        seed_gap = 100 * (SEED_TA8["train_accuracy"]["cb_combined"] - ref["cb_combined"])
        out.append(f"Sobreajuste del modelo ganador: el seed mide {pp(seed_gap)} pp entre "
                   f"train y test; nuestro ganador {quoted(best)}, {pm(gap_stats(best))} pp.")
    if "gelu" in runs and "pyramid" in runs:
        out.append("El seed dice que GELU rinde peor que ReLU; nosotros: "
                   + lower_first(compare_runs(runs["gelu"], runs["pyramid"])))
    adam = best_of(present(runs, ("opt_adam", "opt_adamw")))
    sgd = best_of(present(runs, ("opt_sgd_momentum", "opt_sgd_nesterov")))
    if adam and sgd:
        out.append("El seed afirma que Adam y AdamW superan consistentemente a SGD; entre los "
                   "mejores de cada familia: " + lower_first(compare_runs(adam, sgd)))
    if "cb_combined" in runs and "opt_adam" in runs:
        seed_gain = 100 * (ref["cb_combined"] - ref["opt_adam"])
        claim = SEED_TA8["claimed_callback_gain_pp"]
        out.append(f"Callbacks frente a sin callbacks: el seed habla de {claim} pp y sus propias "
                   f"tablas dan {pp(seed_gain)} pp; nosotros: "
                   + lower_first(compare_runs(runs["cb_combined"], runs["opt_adam"])))
    batch = present(runs, TA8_BATCH)
    if len(batch) == 3 and all(time_stats(r) for r in batch):
        t = [time_stats(r)["mean"] for r in batch]
        times = ", ".join(f"{label(r)}: {x:.1f} s" for r, x in zip(batch, t))
        if len({tuple(group_sizes([r])) for r in batch}) > 1:
            out.append("El seed observa que un batch mayor entrena más rápido; nuestros tiempos "
                       f"por run ({times}) no sirven para comprobarlo, porque esos runs se "
                       "entrenaron en grupos vectorizados de tamaños distintos.")
        else:
            faster = t[0] > t[1] > t[2]
            out.append("El seed observa que un batch mayor entrena más rápido; nuestros "
                       f"tiempos {'lo confirman' if faster else 'no lo confirman'} ({times}).")
    return [x for x in out if x]


def ta8_findings(runs: dict) -> list[str]:
    """Generated «hallazgos»: the best of each family and how far it stands from the rest."""
    out = []
    for names, what in ((TA8_ARCH, "Arquitecturas sin regularizar"),
                        (TA8_REG, "Técnicas sobre la pirámide"), (TA8_LR, "Learning rates"),
                        (TA8_OPT, "Optimizadores"), (TA8_BATCH, "Batch sizes"),
                        (TA8_CB, "Callbacks")):
        cands = present(runs, names)
        best = best_of(cands)
        if best is None or len(cands) < 2:
            continue
        worst = min(cands, key=lambda r: stat(r, "test_accuracy")["mean"])
        out.append(f"{what}: el mejor es {quoted(best)} ({pm(stat(best, 'test_accuracy'))} %) "
                   f"y el peor {quoted(worst)}. " + compare_runs(best, worst))
    return out


def part_figure(doc: dict, part: int, out: Output) -> str:
    runs = [r for r in doc.get("runs", []) if r.get("part") == part
            and stat(r, "test_accuracy")]
    if not runs:
        return placeholder("figura")
    with rc_context(STYLE):
        fig, (ax,) = new_figure(9, 0.9 + 0.36 * len(runs))
        accuracy_bars(ax, runs, SEED_TA8["test_accuracy"])
        ax.set_title(f"Parte {part}: exactitud en test por experimento")
        legend_below(fig, ax)
        return out.figure(f"part{part}", fig, f"Parte {part}: exactitud en test",
                          f"Parte {part}: barra = media de las semillas, línea = ± desviación "
                          "estándar, puntos = cada semilla; rombo = valor publicado por el "
                          "seed (Keras).")


def key_curves_figure(doc: dict, runs: list[dict], out: Output) -> str:
    runs = [r for r in runs if curves(doc, r, "val_accuracy")]
    if not runs:
        return placeholder("figura")
    with rc_context(STYLE):
        fig, axes = new_figure(10, 3.8, ncols=2)
        for i, r in enumerate(runs):
            band(axes[0], curves(doc, r, "val_accuracy"), COLORS[i % 10], label(r))
            band(axes[1], curves(doc, r, "val_loss"), COLORS[i % 10], label(r))
        for ax, y in zip(axes, ("Exactitud de validación", "Pérdida de validación")):
            ax.set_xlabel("Época")
            ax.set_ylabel(y)
        legend_below(fig, axes[0])
        return out.figure("curves", fig, "Curvas de validación de runs clave",
                          "Validación por época de algunos runs clave (media en trazo grueso, "
                          "semillas en trazo fino, rango mín–máx sombreado).")


def overfitting_figure(doc: dict, out: Output) -> str:
    runs = [r for r in doc.get("runs", []) if gap_stats(r) and stat(r, "train_accuracy")]
    if not runs:
        return placeholder("figura")
    with rc_context(STYLE):
        fig, (ax,) = new_figure(9, 0.9 + 0.3 * len(runs))
        y = np.arange(len(runs))[::-1]
        tr = [100 * stat(r, "train_accuracy")["mean"] for r in runs]
        te = [100 * stat(r, "test_accuracy")["mean"] for r in runs]
        ax.hlines(y, te, tr, color="#999999", lw=2)
        ax.plot(tr, y, "o", color=COLORS[3], label="entrenamiento")
        ax.plot(te, y, "o", color=COLORS[0], label="test")
        ax.set_yticks(y, [label(r) for r in runs])
        ax.set_xlabel("Exactitud (%)")
        ax.set_title("Brecha de sobreajuste: exactitud en entrenamiento frente a test")
        legend_below(fig, ax)
        img = out.figure("overfitting", fig, "Brecha train − test por run",
                         "Exactitud media en entrenamiento y en test de cada run; la línea es "
                         "la brecha de sobreajuste.")
    gaps = sorted(runs, key=lambda r: gap_stats(r)["mean"])
    best = best_of(runs)
    lines = [f"Menor brecha: {quoted(gaps[0])} ({pm(gap_stats(gaps[0]))} pp); mayor: "
             f"{quoted(gaps[-1])} ({pm(gap_stats(gaps[-1]))} pp)."]
    if best:
        lines.append(f"El mejor run en test, {quoted(best)}, tiene una brecha de "
                     f"{pm(gap_stats(best))} pp (train {pm(stat(best, 'train_accuracy'))} %, "
                     f"test {pm(stat(best, 'test_accuracy'))} %).")
    return img + "\n" + bullets(lines)


def time_figure(doc: dict, out: Output) -> str:
    runs = [r for r in doc.get("runs", []) if time_stats(r)]
    if not runs:
        return placeholder("figura")
    grouped = any(s.get("group_size", 1) > 1 for r in runs for s in r.get("seeds", []))
    with rc_context(STYLE):
        fig, (ax,) = new_figure(9, 0.9 + 0.3 * len(runs))
        y = np.arange(len(runs))[::-1]
        ts = [time_stats(r) for r in runs]
        colors = [COLORS[(r.get("part", 1) - 1) % 10] for r in runs]
        ax.barh(y, [t["mean"] for t in ts], xerr=[t["std"] for t in ts], color=colors,
                alpha=0.8, capsize=3, height=0.6)
        ax.set_yticks(y, [label(r) for r in runs])
        ax.set_xlabel("Segundos de entrenamiento por run y semilla"
                      + (" (tiempo del grupo repartido)" if grouped else ""))
        ax.set_title("Tiempo de entrenamiento por run (color = parte)")
        img = out.figure("time", fig, "Tiempo por run",
                         "Tiempo de entrenamiento medio por run y semilla (suma de los tiempos "
                         "de época), con ± std.")
    engine = doc.get("environment", {}).get("engine", "—")
    fast = min(runs, key=lambda r: time_stats(r)["mean"])
    slow = max(runs, key=lambda r: time_stats(r)["mean"])
    lines = [f"Motor `{engine}` en {doc.get('environment', {}).get('device', '—')}. "
             f"Más rápido: {quoted(fast)} ({time_cell(fast)} s); más lento: {quoted(slow)} "
             f"({time_cell(slow)} s)."]
    return img + "\n" + bullets(lines) + time_note(runs)


# ---------------------------------------------------------------- bench

def bench_fragment(bench_dir: Path) -> str:
    files = sorted(bench_dir.glob("*.json")) if bench_dir.is_dir() else []
    if not files:
        return (f"No benchmark results committed yet ({PLACEHOLDER}). Run `python -m "
                "jaxmlp.bench --json experiments/bench/epoch.json` or `python -m "
                "jaxmlp.bench_sweep --json experiments/bench/sweep.json`, then "
                "`python -m jaxmlp.report`.\n")
    return "\n".join(bench_one(f.stem, json.loads(f.read_text(encoding="utf-8")))
                     for f in files)


PARITY_WHO = {"keras": "Keras 3 `fit`", "jaxmlp": "`jaxmlp` (épsilon de optax)",
              "jaxmlp keras_epsilon": "`jaxmlp` (Adam de Keras)"}


def ta8_parity_fragment(bench_dir: Path, ta8: dict | None) -> str:
    """For the TA8 page: what Keras 3 itself reaches on the same models and data (from the
    committed `keras_parity*.json`), next to jaxmlp and, where the parity run trained as many
    epochs as the TA8 run, the seed's published number."""
    epochs = {r["name"]: r["config"]["train"]["epochs"] for r in (ta8 or {}).get("runs", [])}
    files = sorted(bench_dir.glob("keras_parity*.json")) if bench_dir.is_dir() else []
    docs = [(f.stem, json.loads(f.read_text(encoding="utf-8"))) for f in files]
    docs = [(n, b) for n, b in docs if b.get("benchmark") == "keras_parity"]
    if not docs:
        return ("Todavía no hay una comparación con Keras 3 (`python -m jaxmlp.keras_parity "
                "--json experiments/bench/keras_parity_cpu.json`).\n")
    lines = []
    for name, b in docs:
        for model, by in b["models"].items():
            parts = []
            for who, curves in by.items():
                last = [100 * c["val_accuracy"][-1] for c in curves]
                parts.append(f"{PARITY_WHO.get(who, who)} {np.mean(last):.1f} % "
                             f"({min(last):.1f}–{max(last):.1f})")
            seed = SEED_TA8["test_accuracy"].get(model)
            seed_text = ""
            if seed and epochs.get(model) == b["epochs"]:
                seed_text = (f" El seed publicó {100 * seed:.1f} % de test para este modelo "
                             "(una ejecución, y test en lugar de validación).")
            elif seed and model in epochs:
                seed_text = (f" Nuestro run `{model}` entrena {epochs[model]} épocas, así que "
                             "esta línea no se compara con la cifra del seed.")
            lines.append(f"- `{model}`, {b['epochs']} épocas, {len(by.get('keras', []))} "
                         f"semillas (`{name}.json`): exactitud de validación en la última época, "
                         f"media (rango): {'; '.join(parts)}.{seed_text}")
    return ("Con los mismos datos (la copia JPEG de CIFAR-10), modelo, optimizador y batch:\n\n"
            + "\n".join(lines) + "\n")


def parity_verdicts(models: dict) -> list[str]:
    """Per model and jaxmlp variant: do its last-epoch val accuracies overlap Keras's range?"""
    lines = []
    for model, by in models.items():
        keras = [c["val_accuracy"][-1] for c in by.get("keras", [])]
        for who, curves in by.items():
            if who == "keras" or not keras:
                continue
            ours = [c["val_accuracy"][-1] for c in curves]
            gap = 100 * (np.mean(ours) - np.mean(keras))
            if max(ours) >= min(keras) and max(keras) >= min(ours):
                verdict = (f"the seed ranges overlap: the {gap:+.1f} pp difference of the "
                           "means is within seed noise")
            else:
                verdict = (f"the seed ranges do not overlap: {who} is {gap:+.1f} pp from Keras, "
                           "beyond seed noise")
            lines.append(f"- {model}, {who} vs Keras ({len(ours)} and {len(keras)} seeds): "
                         f"{verdict}.")
    return lines


def bench_one(name: str, b: dict) -> str:
    env = b.get("environment", {})
    text = (f"### `{name}.json`\n\nDevice: {env.get('device', '—')} ({env.get('platform', '—')},"
            f" {env.get('device_count', '—')} device(s)); JAX `{env.get('jax', '—')}`; "
            f"{b.get('n_train', '—'):,} training examples per epoch.\n\n")
    kind = b.get("benchmark")
    if kind == "epoch_vs_floor":
        text += table(["Batch", "Epoch (s)", "Examples/s", "Achieved GFLOP/s", "Matmul GFLOP/s",
                       "Floor (s)", "Epoch / floor"],
                      [[r["batch"], f"{r['epoch_s']:.3f}", f"{r['examples_per_s']:,.0f}",
                        f"{r['achieved_gflops']:.1f}", f"{r['matmul_gflops']:.1f}",
                        f"{r['floor_s']:.3f}", f"{r['ratio']:.2f}"] for r in b.get("rows", [])],
                      numeric=set(range(7)))
    elif kind == "sweep":
        text += table(["Members in one vmapped group", "Group epoch (s)", "Per member (s)"],
                      [[r["members"], f"{r['epoch_s']:.3f}", f"{r['per_member_s']:.3f}"]
                       for r in b.get("scaling", [])], numeric={0, 1, 2})
        g = b.get("group_vs_solo")
        if g:
            text += (f"\n{g['members']} members as one vmapped group: {g['group_epoch_s']:.3f} "
                     f"s per epoch; one after another: {g['solo_epochs_s']:.3f} s "
                     f"({g['speedup']:.2f}× speed-up).\n")
        k = b.get("keras")
        if k:
            text += (f"\njaxmlp {k['jaxmlp_epoch_s']:.3f} s per epoch vs Keras 3 `fit` (JAX "
                     f"backend) {k['keras_epoch_s']:.3f} s: {k['speedup']:.2f}× "
                     + ("faster" if k["speedup"] >= 1 else "slower") + ".\n")
    elif kind == "keras_parity":
        text = (f"### `{name}.json`\n\nDevice: {env.get('device', '—')}; JAX "
                f"`{env.get('jax', '—')}`, Keras `{b.get('keras', '—')}` (JAX backend). "
                f"{b['dataset'].get('name', '—')} ({b['n_train']:,} training examples, "
                f"source: {b['dataset'].get('source', '—')}), Adam 1e-3, batch {b['batch']}, "
                f"{b['epochs']} epochs, the same seeds in both (their random streams differ)."
                f"\n\n{b['dataset'].get('note', '')}\n\n")
        rows = []
        for model, by in b["models"].items():
            for who, curves in by.items():
                last = [c["val_accuracy"][-1] for c in curves]
                train_last = [c["accuracy"][-1] for c in curves]
                per_epoch = np.mean([c["val_accuracy"] for c in curves], axis=0)
                rows.append([model, who, len(curves), f"{100 * np.mean(train_last):.1f}",
                             f"{100 * np.mean(last):.1f} ({100 * min(last):.1f}–"
                             f"{100 * max(last):.1f})",
                             " ".join(f"{100 * v:.1f}" for v in per_epoch)])
        text += table(["Model", "Trained by", "Seeds", "Train acc. last epoch (%)",
                       "Val acc. last epoch (%), range", "Mean val acc. per epoch (%)"], rows,
                      numeric={2, 3})
        text += "\n" + "\n".join(parity_verdicts(b["models"])) + "\n"
    elif kind == "whole_sweep":
        text = (f"### `{name}.json`\n\nDevice: {env.get('device', '—')} "
                f"({env.get('platform', '—')}, {env.get('device_count', '—')} device(s)); JAX "
                f"`{env.get('jax', '—')}`; engine `{env.get('engine', '—')}`.\n\n"
                f"The whole {b['experiment'].upper()} sweep ({b['dataset']}, "
                f"{b['n_train']:,} training examples): {b['runs']} runs × seeds = "
                f"{b['members']} trainings, {b['epochs']:,} epochs in all, {b['groups']} "
                f"compiled groups, in **{b['wall_time_s']:.1f} s** of wall time "
                f"(`{b['command']}`, {b['created']}).\n")
        if b.get("note"):
            text += f"\n{b['note']}\n"
    else:
        scalars = [[k, v] for k, v in b.items() if isinstance(v, (int, float, str))]
        text += table(["Field", "Value"], scalars) if scalars else "(no scalar fields)\n"
    if b.get("note") and kind != "whole_sweep":
        text += f"\n{b['note']}\n"
    return text


# ---------------------------------------------------------------- entry points

def experiment(doc: dict | None, exp: str, out: Output, bench_dir: Path) -> None:
    names = {"p8d": P8D_FRAGMENTS, "ta8": TA8_FRAGMENTS}[exp]
    if doc is None:
        frags = {n: placeholder() for n in names}
    else:
        frags = (p8d_fragments if exp == "p8d" else ta8_fragments)(doc, out)
    frags["status"] = status_fragment(doc, exp)
    if exp == "ta8":  # what Keras 3 itself reaches, from the committed parity benchmarks
        frags["parity"] = ta8_parity_fragment(bench_dir, doc)
    missing = set(names) - set(frags)
    if missing:
        raise RuntimeError(f"report: fragments not produced for {exp}: {sorted(missing)}")
    for name in names:
        out.text(name, frags[name])


def generate(experiments_dir, docs_dir) -> list[Path]:
    """Regenerate every figure and fragment from `experiments_dir`; return the files."""
    experiments_dir, docs_dir = Path(experiments_dir), Path(docs_dir)
    written = []
    for exp in ("p8d", "ta8"):
        out = Output(docs_dir, exp)
        experiment(load(experiments_dir / exp), exp, out, experiments_dir / "bench")
        out.prune()
        written += out.written
    out = Output(docs_dir, "bench")
    out.text("results", bench_fragment(experiments_dir / "bench"))
    out.prune()
    return written + out.written


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m jaxmlp.report", description=__doc__.split("\n")[0])
    p.add_argument("--experiments", default="experiments", help="results folder (default: "
                   "experiments)")
    p.add_argument("--docs", default="docs", help="MkDocs docs_dir to write into (default: docs)")
    args = p.parse_args(argv)
    files = generate(args.experiments, args.docs)
    print(f"report: {len(files)} files under {args.docs}/generated and "
          f"{args.docs}/assets/generated")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
