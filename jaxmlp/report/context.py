"""What a page template sees: one experiment's runs with their statistics, what they share and
what varies, per-part tables, figures (written to docs/assets/generated/<name>/) and verdicts.

Run names, labels, parts and seeds all come from results.json; nothing here knows a run.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from jaxmlp import records
from jaxmlp.report import figures, load, tables
from jaxmlp.report.compare import label

DATASETS = {"cifar10": "CIFAR-10", "fashion_mnist": "Fashion-MNIST", "mnist": "MNIST",
            "synthetic": "datos sintéticos"}


def time_stats(run: dict) -> dict | None:
    """Training seconds per run and seed: a vmapped group's time split among its members.
    When every seed has one same share of a group's time, `shared` says so: their spread of 0
    is not a measurement (`compare.pm` then shows the value alone)."""
    seeds = [s for s in run.get("seeds", []) if "wall_time_s" in s]
    stats = records.stats([s["wall_time_s"] / max(s.get("group_size", 1), 1) for s in seeds])
    if stats and len(seeds) > 1 and stats["min"] == stats["max"] \
            and all(s.get("group_size", 1) > 1 for s in seeds):
        stats = {**stats, "shared": True}
    return stats


def lr_varies(doc: dict, run: dict) -> bool:
    lr = load.curves(doc, run, "learning_rate")
    return bool(lr) and any(len(set(c.round(12))) > 1 for c in lr)


class Figures:
    """Writes an experiment's figures and hands templates the Markdown that shows them."""

    def __init__(self, docs: Path, name: str, page: str):
        self.folder = docs / "assets" / "generated" / name
        self.url = "../" * page.count("/") + f"assets/generated/{name}/"
        self.written: list[Path] = []
        self.seen: set[str] = set()

    def add(self, key: str, svgs: dict[str, bytes], title: str, how: str = "") -> str:
        """Write the figure; its Markdown with the caption `title`, plus `how` to read it the
        first time that explanation appears on the page."""
        self.written += figures.write(self.folder, key, svgs)
        caption = title + (f". {how}." if how and how not in self.seen else ".")
        self.seen.add(how)
        sizes = {"wide": svg_size(svgs["light"]), "narrow": svg_size(svgs["narrow"])}
        return (f'<figure markdown="span">\n{images(self.url + key, title, sizes)}\n'
                f"  <figcaption>{caption}</figcaption>\n</figure>\n")


def svg_size(data: bytes) -> tuple[int, int]:
    """An SVG's size in CSS px (matplotlib writes it in pt: 3/4 of a px)."""
    m = re.search(rb'<svg[^>]*?\swidth="([0-9.]+)pt" height="([0-9.]+)pt"', data)
    if not m:
        raise ValueError("not a matplotlib SVG: no width and height in pt on its <svg>")
    return round(float(m[1]) * 4 / 3), round(float(m[2]) * 4 / 3)


def images(base: str, title: str, sizes: dict) -> str:
    """The Markdown of one figure's four SVGs (`base` is its URL without «.svg»): the wide pair
    with Material's #only-light / #only-dark, shown from 720 px up, and the narrow pair, shown
    below (docs/stylesheets/extra.css, which also picks their palette by class: one fragment
    each would put them in glightbox's light/dark galleries, as hidden duplicate slides).
    Each narrow one zooms in a gallery of its own kind. Four lines, no final newline.

    Each is loaded lazily, so a reader's browser fetches only the one of the four it shows
    (a hidden image is never near the viewport), and carries its size (`sizes`: "wide" and
    "narrow", CSS px, from `svg_size`), so the page keeps its layout while they load."""
    def attrs(kind: str, extra: str) -> str:
        width, height = sizes[kind]
        return f"{{ {extra} width={width} height={height} loading=lazy }}"

    narrow = '.fig-narrow .fig-{0} data-gallery="narrow-{0}"'
    return "\n".join([f"  ![{title}]({base}.svg#only-light){attrs('wide', '.fig-wide')}",
                      f"  ![{title}]({base}-dark.svg#only-dark){attrs('wide', '.fig-wide')}",
                      f"  ![{title}]({base}-narrow.svg){attrs('narrow', narrow.format('light'))}",
                      f"  ![{title}]({base}-narrow-dark.svg)"
                      f"{attrs('narrow', narrow.format('dark'))}"])


def figure_images(docs: Path):
    """`images` for a page template (the landing page's figure): the sizes read from the SVGs
    under `docs`, which the experiments' pages have written by then."""
    def markdown(base: str, title: str) -> str:
        sizes = {kind: svg_size((docs / f"{base}{suffix}.svg").read_bytes())
                 for kind, suffix in (("wide", ""), ("narrow", "-narrow"))}
        return images(base, title, sizes)
    return markdown


def part_view(doc: dict, part: int, runs: list[dict], color: dict, times: dict,
              figs: Figures, published: dict, alone: bool = False) -> dict:
    """One part's tables and figures; `alone`: the page's only part, whose captions do not
    name it (the page shows no «Parte N» heading then)."""
    shared, varying = tables.split(runs)
    suffix = f"_part{part}"
    of = "" if alone else f", parte {part}"
    view = {"number": part, "runs": runs, "shared": shared, "varying": varying,
            "shared_table": tables.shared_table(shared) if shared else "",
            "table": tables.results_table(runs, varying),
            "reference": tables.reference(runs, varying) if len(varying) > 1 else {},
            "best": max(runs, key=lambda r: r["summary"]["test_accuracy"]["mean"]),
            "fig": {}}
    marked = any(r["name"] in published for r in runs)
    view["fig"]["accuracy"] = figs.add(
        "accuracy" + suffix, figures.accuracy(runs, color, published),
        f"Exactitud en test{of}",
        "Punto = media de las semillas, barra = ± desviación estándar, anillos = cada semilla"
        + ("; rombo = cifra de la página original" if marked else ""))
    view["fig"]["curves"] = figs.add(
        "curves" + suffix, figures.curves(doc, merged(runs), color, "val_accuracy",
                                          "Exactitud de validación (%)"),
        f"Exactitud de validación por época{of}",
        "Línea = media, banda = rango entre semillas")
    view["fig"]["time"] = figs.add(
        "time" + suffix, figures.seconds(runs, color, times),
        f"Segundos de entrenamiento por run{of}",
        "Barras desde cero; raya = rango entre semillas")
    changing = [r for r in runs if lr_varies(doc, r)]
    if changing:
        view["fig"]["lr"] = figs.add(
            "lr" + suffix, figures.learning_rate(doc, changing, color),
            f"Tasa de aprendizaje por época{of}",
            "Semilla 0; solo los runs en los que cambia")
    return view


def experiment(doc: dict, docs: Path, page: str) -> dict:
    """The template context of one experiment's page at docs/<page>."""
    name = doc["experiment"]
    runs = [r for r in doc.get("runs", []) if r.get("summary", {}).get("test_accuracy")]
    original = load.original(name)
    published = original.get("published", {}).get("test_accuracy", {})
    color = figures.colors(runs)
    times = {r["name"]: time_stats(r) for r in runs}
    figs = Figures(docs, name, page)
    parts = sorted({r.get("part", 1) for r in runs})
    views = [part_view(doc, p, [r for r in runs if r.get("part", 1) == p], color, times, figs,
                       published, alone=len(parts) == 1) for p in parts]
    shared, varying = tables.split(runs)
    ranking = sorted(runs, key=lambda r: -r["summary"]["test_accuracy"]["mean"])
    meta = doc.get("page", {})
    return {
        "doc": doc, "name": name, "title": doc.get("title", name), "page": page,
        "objective": meta.get("objective", ""), "description": meta.get("description", ""),
        "notes": doc.get("settings", {}).get("notes", []),
        "dataset": DATASETS.get(doc.get("dataset", {}).get("name"),
                                doc.get("dataset", {}).get("name", "")),
        "data": doc.get("dataset", {}), "synthetic": load.is_synthetic(doc),
        "jpeg": "JPEG" in (doc.get("dataset", {}).get("note") or ""),
        "seeds": doc.get("settings", {}).get("seeds", []), "env": doc.get("environment", {}),
        "seeds_by_run": doc.get("settings", {}).get("seeds_by_run", {}),
        "runs": runs, "run": {r["name"]: r for r in runs}, "color": color, "times": times,
        "parts": views, "part": {v["number"]: v for v in views},
        "shared": shared, "varying": varying, "shared_table": tables.shared_table(shared),
        "ranking": ranking, "best": ranking[0] if ranking else None,
        "original": original, "figures": figs, "twins": twins(runs),
        "group_sizes": sorted({s.get("group_size", 1) for r in runs for s in r["seeds"]}),
        "tensorboard": lambda run: figs.add(
            "tensorboard", figures.tensorboard(doc, run),
            f"Vista de TensorBoard de «{label(run)}», semilla {run['seeds'][0]['seed']}",
            "Dibujada con el aspecto de los escalares de TensorBoard (suavizado 0.6 sobre la "
            "curva original, tenue) a partir del CSV de historia guardado en el repositorio"),
        "gap": gap,
        "distinct": distinct(ranking),
        "reproduce": reproduce(doc.get("command", "")),
    }


def reproduce(command: str) -> str:
    """The command that trains every result again from scratch: the one recorded, without
    `--retrain NAME...` (which only said what that invocation discarded) and `--quiet`."""
    try:
        words = shlex.split(command)
    except ValueError:
        return command
    kept, skipping = [], False
    for word in words:
        if word in ("--retrain", "--quiet") or word.startswith("--retrain="):
            skipping = word == "--retrain"
            continue
        if skipping and not word.startswith("-"):
            continue
        skipping = False
        kept.append(word)
    return shlex.join(kept)


def gap(run: dict) -> dict | None:
    """Train − test accuracy per seed (the overfitting gap), as stats."""
    return records.stats([s["train"]["accuracy"] - s["test"]["accuracy"]
                          for s in run.get("seeds", [])])


def distinct(ranking: list[dict]) -> list[dict]:
    """The ranking with runs of one same configuration shown once (the first of them)."""
    seen, out = set(), []
    for r in ranking:
        key = json.dumps(r["config"], sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def merged(runs: list[dict]) -> list[dict]:
    """Runs of one same configuration drawn once, labelled «A = B» (identical curves would
    hide each other)."""
    out: dict[str, dict] = {}
    for r in runs:
        key = json.dumps(r["config"], sort_keys=True)
        if key in out:
            out[key] = {**out[key], "label": f"{label(out[key])} = {label(r)}"}
        else:
            out[key] = r
    return list(out.values())


def twins(runs: list[dict]) -> list[list[dict]]:
    """Groups of runs with one and the same configuration (same config dict), in run order."""
    groups: dict[str, list[dict]] = {}
    for r in runs:
        groups.setdefault(json.dumps(r["config"], sort_keys=True), []).append(r)
    return [g for g in groups.values() if len(g) > 1]


def labels(runs) -> str:
    """«A», «B» y «C»."""
    items = [f"«{label(r)}»" for r in runs]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " y " + items[-1]
