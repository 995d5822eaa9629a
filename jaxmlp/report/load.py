"""Reading committed results: results.json, history CSVs and the original pages' data files.

Everything here is plain json/csv/numpy, so the docs build never imports JAX.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from jaxmlp import records

# Data sources that are not measurements (the --quick smoke data, test fixtures).
SYNTHETIC_SOURCES = ("fixture", "generated", "synthetic")
# The original pages' published numbers live beside each experiment definition.
ORIGINALS = Path(__file__).resolve().parents[1] / "experiments"


def experiments(root: Path) -> list[dict]:
    """Every `<root>/<name>/results.json` (benchmarks aside), sorted by folder name."""
    found = sorted(p for p in root.glob("*/results.json") if p.parent.name != "bench")
    return [load(p.parent) for p in found]


def load(exp_dir: Path) -> dict:
    """One results.json, with the folder it came from kept under `_dir`."""
    doc = json.loads((exp_dir / "results.json").read_text(encoding="utf-8"))
    doc["_dir"] = exp_dir
    return doc


def original(name: str) -> dict:
    """The original page's data (`jaxmlp/experiments/<name>_original.json`), or {}."""
    path = ORIGINALS / f"{name}_original.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def is_synthetic(doc: dict) -> bool:
    return doc.get("dataset", {}).get("source") in SYNTHETIC_SOURCES


def history(exp_dir: Path, rel: str | None) -> dict[str, np.ndarray] | None:
    """One seed's history CSV as {column: float array}; None when absent or empty."""
    if not rel or not (exp_dir / rel).is_file():
        return None
    columns = records.read_history(exp_dir / rel)
    if not columns.get("epoch"):
        return None
    return {k: np.asarray(v, dtype=float) for k, v in columns.items()}


def curves(doc: dict, run: dict, column: str) -> list[np.ndarray]:
    """One array per seed of a history column (seeds without that column are left out)."""
    out = []
    for s in run.get("seeds", []):
        h = history(doc["_dir"], s.get("history_csv"))
        if h is not None and column in h:
            out.append(h[column])
    return out


def bench(root: Path) -> list[tuple[str, dict]]:
    """Every benchmark JSON under `<root>/bench` as (file stem, document)."""
    folder = root / "bench"
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    return [(f.stem, json.loads(f.read_text(encoding="utf-8"))) for f in files]
