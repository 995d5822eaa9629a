"""Figures as SVG, each drawn four times: light and dark palette (transparent background), each
wide (desktop) and narrow (phones, below Material's 720 px breakpoint), with one colour per run
across every figure of a page, a legend on every figure and text that stays >= 11 px when the
figure fills the content column: ~700 px at desktop width, ~358 px on a 390 px phone.

Text is kept as SVG <text> (svg.fonttype none) so the browser test can measure it.
"""

from __future__ import annotations

import io
import textwrap
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from matplotlib import rc_context
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, MaxNLocator

from jaxmlp.report import load
from jaxmlp.report.compare import label, seed_values

# Tableau 10 and two more: readable on white and on Material's slate background.
PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
           "#ff9da7", "#9c755f", "#bab0ac", "#17becf", "#bcbd22")
WIDTH = 6.4  # inches; 460.8 pt of SVG user space, shown at ~700 px on a 1280 px screen
# The phone variant: 302.4 pt shown at ~358 px on a 390 px phone, so 9.5 pt text is ~11.2 px.
NARROW = 4.2
# File suffix -> (palette, narrow): NAME.svg, NAME-dark.svg, NAME-narrow.svg, NAME-narrow-dark.svg
VARIANTS = {"light": ("light", False), "dark": ("dark", False),
            "narrow": ("light", True), "narrow-dark": ("dark", True)}
BASE = {"font.size": 10, "axes.titlesize": 10.5, "legend.fontsize": 9.5, "xtick.labelsize": 9.5,
        "ytick.labelsize": 9.5, "axes.grid": True, "grid.alpha": 0.35,
        "axes.spines.top": False, "axes.spines.right": False, "legend.frameon": False,
        "svg.fonttype": "none", "svg.hashsalt": "jaxmlp", "axes.formatter.useoffset": False,
        "font.family": ["DejaVu Sans", "sans-serif"]}
INK = {"light": "#222222", "dark": "#e2e4e9"}
THEMES = {name: {**BASE, "text.color": ink, "axes.labelcolor": ink, "axes.edgecolor": ink,
                 "xtick.color": ink, "ytick.color": ink, "grid.color": ink}
          for name, ink in INK.items()}
ORIGINAL = {"light": "#111111", "dark": "#ffffff"}  # the original page's published values


def colors(runs: list[dict]) -> dict[str, str]:
    """One colour per run: its position within its part, so neighbours always differ."""
    seen: dict[int, int] = {}
    out = {}
    for r in runs:
        i = seen.get(r.get("part", 1), 0)
        seen[r.get("part", 1)] = i + 1
        out[r["name"]] = PALETTE[i % len(PALETTE)]
    return out


def svg_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="svg", transparent=True, metadata={"Date": None, "Creator": None})
    return buf.getvalue()


def themed(draw: Callable[[Figure, str, bool], None], height: float,
           narrow_height: float) -> dict[str, bytes]:
    """Draw a figure once per palette and width, `draw(fig, theme, narrow)`; returns
    {"light": svg, "dark": svg, "narrow": svg, "narrow-dark": svg}."""
    out = {}
    for variant, (theme, narrow) in VARIANTS.items():
        with rc_context(THEMES[theme]):
            size = (NARROW, narrow_height) if narrow else (WIDTH, height)
            fig = Figure(figsize=size, layout="constrained")
            FigureCanvasSVG(fig)
            draw(fig, theme, narrow)
            out[variant] = svg_bytes(fig)
    return out


def write(folder: Path, name: str, svgs: dict[str, bytes]) -> list[Path]:
    """<name>.svg (light), <name>-dark.svg, <name>-narrow.svg and <name>-narrow-dark.svg;
    unchanged bytes are not rewritten."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for variant, data in svgs.items():
        path = folder / (f"{name}.svg" if variant == "light" else f"{name}-{variant}.svg")
        if not (path.is_file() and path.read_bytes() == data):
            path.write_bytes(data)
        paths.append(path)
    return paths


def legend_below(fig: Figure, ax, ncols: int = 3, handles=None, narrow: bool = False) -> None:
    """One legend under the plot: the axes' labelled artists, or the `handles` given."""
    if handles is None:
        handles, _ = ax.get_legend_handles_labels()
    if handles:
        longest = max(len(h.get_label()) for h in handles)
        if narrow:  # two columns of ~20 characters fit the phone variant's width
            ncols = 1 if longest > 20 else min(ncols, 2)
        else:
            ncols = 1 if longest > 40 else 2 if longest > 18 else ncols  # inside the figure
        fig.legend(handles=handles, loc="outside lower center", ncols=min(ncols, len(handles)))


def legend_rows(labels: list[str], ncols: int = 3) -> int:
    """How many rows legend_below takes in the narrow variant (to size its height)."""
    if not labels:
        return 0
    cols = 1 if max(map(len, labels)) > 20 else min(ncols, 2)
    return -(-len(labels) // cols)


def wrapped(text: str, narrow: bool, width: int = 20) -> str:
    """A run's name on the y axis: on two or more lines in the narrow variant, so the axes keep
    most of the phone's width."""
    return textwrap.fill(text, width, break_long_words=False) if narrow else text


def epoch_axis(ax) -> None:
    """Epochs are whole: ticks on integers only (no 2.5 or 7.5)."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def plain(value: float, _pos=None) -> str:
    """A tick label as written, without an offset or a ×1e−3 multiplier: 0.001, 0.0005, 0."""
    text = f"{round(value, 12):.12f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def marker_key(theme: str, published: bool) -> list[Line2D]:
    """The accuracy figure's legend, in the text colour: each run has its own colour, so the
    key explains the marks, not the runs (those are named on the y axis)."""
    ink = INK[theme]
    keys = [Line2D([], [], color=ink, marker="o", ms=6, lw=2, label="media ± desv. estándar"),
            Line2D([], [], color=ink, marker="o", mfc="none", ms=4, ls="none",
                   label="cada semilla")]
    if published:
        keys.append(Line2D([], [], color=ORIGINAL[theme], marker="D", mfc="none", ms=6,
                           ls="none", label="página original (Keras)"))
    return keys


def accuracy(runs: list[dict], color: dict[str, str], published: dict | None = None,
             metric: str = "test_accuracy", xlabel: str = "Exactitud en test (%)"):
    """Per run: mean ± std as a dot with a bar, each seed as a small ring, and the original
    page's published value as a diamond where there is one."""
    runs = [r for r in runs if r["summary"].get(metric)]
    published = published or {}
    path = ("test", "accuracy") if metric == "test_accuracy" else ("val", "accuracy")

    def draw(fig, theme, narrow):
        ax = fig.subplots()
        y, marked = np.arange(len(runs))[::-1], []
        for yi, r in zip(y, runs):
            s, c = r["summary"][metric], color[r["name"]]
            ax.errorbar(100 * s["mean"], yi, xerr=100 * s["std"], fmt="o", color=c, ms=6,
                        capsize=4, lw=2)
            vals = [100 * v for v in seed_values(r, *path)]
            ax.plot(vals, [yi - 0.22] * len(vals), "o", mfc="none", mec=c, ms=4, alpha=0.9)
            if r["name"] in published:
                ax.plot(100 * published[r["name"]], yi + 0.22, "D", mfc="none",
                        mec=ORIGINAL[theme], ms=6)
                marked.append(r["name"])
        ax.set_yticks(y, [wrapped(label(r), narrow) for r in runs])
        ax.set_ylim(-0.7, len(runs) - 0.3)
        ax.set_xlabel(xlabel)
        legend_below(fig, ax, handles=marker_key(theme, bool(marked)), narrow=narrow)
    keys = [h.get_label() for h in marker_key("light", any(r["name"] in published for r in runs))]
    return themed(draw, 1.3 + 0.34 * len(runs), narrow_rows(runs, keys))


def narrow_rows(runs: list[dict], keys: list[str]) -> float:
    """The narrow variant's height for one row per run (as tall as its wrapped name) above a
    legend of `keys`."""
    lines = max((wrapped(label(r), True).count("\n") + 1 for r in runs), default=1)
    return 0.9 + max(0.34, 0.19 * lines) * len(runs) + 0.2 * legend_rows(keys)


def band(ax, series: list[np.ndarray], color: str, name: str) -> None:
    """The mean over seeds as a line and the seeds' min–max range as a band."""
    if not series:
        return
    n = max(len(c) for c in series)
    grid = np.full((len(series), n), np.nan)
    for i, c in enumerate(series):
        grid[i, :len(c)] = c
    x = np.arange(1, n + 1)
    with warnings.catch_warnings():  # an epoch where every seed logged NA: a gap, not an error
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi, mean = np.nanmin(grid, 0), np.nanmax(grid, 0), np.nanmean(grid, 0)
    ax.fill_between(x, lo, hi, color=color, alpha=0.18, lw=0)
    ax.plot(x, mean, color=color, lw=1.8, label=name)


def curves(doc: dict, runs: list[dict], color: dict[str, str], column: str, ylabel: str,
           scale: float = 100.0):
    """One history column per run over epochs: mean line, min–max band over seeds."""
    def draw(fig, theme, narrow):
        ax = fig.subplots()
        for r in runs:
            band(ax, [scale * c for c in load.curves(doc, r, column)], color[r["name"]],
                 label(r))
        ax.set_xlabel("Época")
        epoch_axis(ax)
        ax.set_ylabel(ylabel)
        legend_below(fig, ax, narrow=narrow)
    return themed(draw, 3.2 + 0.25 * len(runs),
                  2.8 + 0.2 * legend_rows([label(r) for r in runs]))


def learning_rate(doc: dict, runs: list[dict], color: dict[str, str]):
    """The learning rate per epoch (seed 0's history: the schedule is the same for every seed
    unless a plateau cut it), linear scale because a cosine can reach exactly 0."""
    def draw(fig, theme, narrow):
        ax = fig.subplots()
        styles = ("-", "--", ":", "-.")
        for i, r in enumerate(runs):
            lr = load.curves(doc, r, "learning_rate")
            if lr:
                ax.plot(np.arange(1, len(lr[0]) + 1), lr[0], color=color[r["name"]], lw=2,
                        ls=styles[i % len(styles)], label=label(r))
        ax.set_xlabel("Época")
        epoch_axis(ax)
        ax.set_ylabel("Tasa de aprendizaje")
        ax.yaxis.set_major_formatter(FuncFormatter(plain))  # 0.001, not 1 with «1e−3» on top
        legend_below(fig, ax, narrow=narrow)
    return themed(draw, 3.4, 2.8 + 0.2 * legend_rows([label(r) for r in runs]))


def seconds(runs: list[dict], color: dict[str, str], times: dict[str, dict]):
    """Training seconds per run as bars from zero, the seeds' range as a whisker."""
    runs = [r for r in runs if times.get(r["name"])]

    def draw(fig, theme, narrow):
        ax = fig.subplots()
        y = np.arange(len(runs))[::-1]
        for yi, r in zip(y, runs):
            t = times[r["name"]]
            ax.barh(yi, t["mean"], color=color[r["name"]], height=0.6,
                    label="media por run" if yi == y[0] else None)
            ax.plot([t["min"], t["max"]], [yi, yi], color=INK[theme], lw=1.5,
                    label="rango entre semillas" if yi == y[0] else None)
        ax.set_xlim(left=0)
        ax.set_yticks(y, [wrapped(label(r), narrow) for r in runs])
        ax.set_xlabel(wrapped("Segundos de entrenamiento por run y semilla", narrow, 30))
        legend_below(fig, ax, narrow=narrow)
    return themed(draw, 1.3 + 0.34 * len(runs),
                  narrow_rows(runs, ["media por run", "rango entre semillas"]) + 0.2)


def smooth(values: np.ndarray, weight: float = 0.6) -> np.ndarray:
    """TensorBoard's scalar smoothing: a debiased exponential moving average."""
    out, last, n = [], 0.0, 0
    for v in values:
        n += 1
        last = last * weight + (1 - weight) * v
        out.append(last / (1 - weight ** n))
    return np.array(out)


def tensorboard(doc: dict, run: dict):
    """A TensorBoard-style scalars view (epoch_accuracy, epoch_loss; train and validation,
    smoothing 0.6 over the faint raw line) drawn from one seed's committed history CSV."""
    seed = run["seeds"][0]
    h = load.history(doc["_dir"], seed.get("history_csv")) or {}
    tb = {"train": "#ff7043", "validation": "#0077bb"}

    def draw(fig, theme, narrow):
        axes = fig.subplots(2 if narrow else 1, 1 if narrow else 2)  # stacked on a phone
        for ax, metric in zip(axes, ("accuracy", "loss")):
            for who, col in (("train", metric), ("validation", f"val_{metric}")):
                if col in h:
                    x = np.arange(len(h[col]))
                    ax.plot(x, h[col], color=tb[who], alpha=0.3, lw=1)
                    ax.plot(x, smooth(h[col]), color=tb[who], lw=1.8, label=who)
            ax.set_title(f"epoch_{metric}", loc="left")
            ax.set_xlabel("epoch")
            epoch_axis(ax)
        legend_below(fig, axes[0], ncols=2, narrow=narrow)
    return themed(draw, 3.0, 5.2)
