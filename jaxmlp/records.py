"""The results format, JAX-free: stats, summaries, history CSVs, member paths, parameter counts.

One definition of each, read and written by the runner, observers, CLI and report alike:

    <out>/results.json                         `document(...)`, one `run_entry` per run
    <out>/members/<run>__seed<k>.json           one finished member (`member_file`)
    <out>/histories/<run>/seed<k>.csv           its per-epoch history (`history_file`)

Only numpy and the standard library are imported here (the report builds without JAX);
`environment` imports JAX when called, on the training side.
"""

from __future__ import annotations

import collections
import csv
import datetime as dt
import io
import math
import os
import platform
import re
from importlib import metadata
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jaxmlp import config as C

SUMMARY_FIELDS = {
    "test_accuracy": ("test", "accuracy"), "test_loss": ("test", "loss"),
    "val_accuracy": ("val", "accuracy"), "val_loss": ("val", "loss"),
    "train_accuracy": ("train", "accuracy"), "train_loss": ("train", "loss"),
    "epochs_run": ("epochs_run",), "best_epoch": ("best_epoch",),
    "final_lr": ("final_lr",), "lr_reductions": ("lr_reductions",),
    "wall_time_s": ("wall_time_s",), "examples_per_s": ("examples_per_s",),
}


def stats(values) -> dict | None:
    """Mean, sample std (ddof=1; 0 for one value), min, max and n of the values that are not
    None; None when there are none."""
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if v.size == 0:
        return None
    std = float(v.std(ddof=1)) if v.size > 1 else 0.0
    return {"mean": float(v.mean()), "std": std, "min": float(v.min()), "max": float(v.max()),
            "n": int(v.size)}


def _get(record: dict, path: tuple):
    for key in path:
        record = record[key]
    return record


def summarize(seed_records: list[dict]) -> dict:
    return {name: stats([_get(r, path) for r in seed_records])
            for name, path in SUMMARY_FIELDS.items()}


def run_entry(run: C.RunConfig, seed_records: list[dict]) -> dict:
    """One run's entry in results.json: its config, parameter counts, seeds and summary."""
    cfg = C.to_dict(run)
    return {
        "name": run.name, "part": run.part, "label": run.label or run.name,
        "description": run.description,
        "config": {k: cfg[k] for k in ("model", "optim", "train", "hooks")},
        "params": count_params(run.model),
        "seeds": sorted(seed_records, key=lambda r: r["seed"]),
        "summary": summarize(seed_records),
    }


def cpu_name(info: dict | None = None) -> str:
    """The host CPU's model name, core count and, where /proc/cpuinfo tells them, its family,
    model and widest vector extension, e.g. 'AMD EPYC (2 cores; family 26 model 2, AVX-512)'.

    Cloud machines often report only a brand ('AMD EPYC'), and two such hosts may be different
    generations with twice the matmul rate between them: the family and the vector extension
    tell the records of one from the other."""
    info = cpu_info() if info is None else info
    name = info.get("model name") or platform.processor() or "cpu"
    detail = []
    if info.get("cpu family") and info.get("model"):
        detail.append(f"family {info['cpu family']} model {info['model']}")
    vector = vector_extension(info.get("flags") or info.get("Features", ""))
    if vector:
        detail.append(vector)
    return f"{name} ({os.cpu_count()} cores{'; ' + ', '.join(detail) if detail else ''})"


def cpu_info(path: str = "/proc/cpuinfo") -> dict:
    """The first processor's fields in /proc/cpuinfo ({} where there is no such file)."""
    fields: dict = {}
    try:
        with open(path) as f:
            for line in f:
                if not line.strip():
                    break  # the end of the first processor's block
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


# The widest SIMD extension a CPU flag list names, widest first (x86 names, then Arm's).
_VECTOR_FLAGS = (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"), ("sve", "SVE"),
                 ("asimd", "NEON"))


def vector_extension(flags: str) -> str | None:
    """'AVX-512', 'AVX2', ... for a /proc/cpuinfo flag list; None if it names none of them."""
    present = set(flags.split())
    return next((name for flag, name in _VECTOR_FLAGS if flag in present), None)


def environment(engine: str) -> dict:
    """The machine and library versions the results were measured with."""
    import jax

    device = jax.devices()[0]
    versions = {}
    for dist in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint"):
        try:
            versions[dist.replace("-checkpoint", "")] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    kind = device.device_kind if device.platform != "cpu" else cpu_name()
    return {"device": kind, "platform": device.platform, "device_count": jax.device_count(),
            "python": platform.python_version(), **versions, "engine": engine}


def now() -> str:
    """The current UTC time as results and benchmark records write it."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def document(*, experiment: str, title: str, command: str, engine: str, dataset: dict,
             seeds: list[int], notes: list[str], runs: list[dict]) -> dict:
    """The whole results.json."""
    return {
        "experiment": experiment, "title": title,
        "created": now(), "command": command, "environment": environment(engine),
        "dataset": dataset,
        "settings": {"seeds": list(seeds), "notes": list(notes)}, "runs": runs,
    }


# --- Parameter counts ---------------------------------------------------------------------------

class Layer(NamedTuple):
    """One layer of `MLP` as Keras 3 lists it in `model.summary()`."""

    name: str  # Keras's default name: dense, dense_1, batch_normalization, dropout_2, ...
    kind: str  # Keras's class: Dense, BatchNormalization, Activation, Dropout
    units: int  # the last axis of its output
    params: int
    non_trainable: int  # BatchNorm's moving mean and variance


def keras_layers(cfg: C.ModelConfig) -> list[Layer]:
    """`MLP(cfg)` as the Keras model that computes the same: per hidden layer Dense, then, with
    batch norm, BatchNormalization and a separate Activation (the Dense has none, as the
    activation comes after the normalization), then Dropout where the rate is above 0 (a rate
    of 0 is no layer); the output Dense last."""
    seen: collections.Counter = collections.Counter()

    def layer(kind: str, units: int, params: int = 0, non_trainable: int = 0) -> Layer:
        base = re.sub(r"(?<!^)(?=[A-Z])", "_", kind).lower()  # BatchNormalization -> batch_...
        name = base if not seen[base] else f"{base}_{seen[base]}"
        seen[base] += 1
        return Layer(name, kind, units, params, non_trainable)

    out, width = [], cfg.input_dim
    for i, units in enumerate(cfg.hidden):
        out.append(layer("Dense", units, width * units + units))
        if cfg.batch_norm:
            out.append(layer("BatchNormalization", units, 4 * units, 2 * units))
            out.append(layer("Activation", units))
        if cfg.dropout[i] > 0:
            out.append(layer("Dropout", units))
        width = units
    out.append(layer("Dense", cfg.num_classes, width * cfg.num_classes + cfg.num_classes))
    return out


def count_params(cfg: C.ModelConfig) -> dict:
    """Parameter counts as Keras's count_params (`keras_layers` summed): BatchNorm moving
    statistics are non-trainable."""
    layers = keras_layers(cfg)
    total = sum(la.params for la in layers)
    non_trainable = sum(la.non_trainable for la in layers)
    return {"total": total, "trainable": total - non_trainable, "non_trainable": non_trainable}


# --- Member records and history CSVs ------------------------------------------------------------

def member_id(run_name: str, seed: int) -> str:
    return f"{run_name}__seed{seed}"


def member_file(out_dir, run_name: str, seed: int) -> Path:
    """Where a finished member's record lives."""
    return Path(out_dir) / "members" / f"{member_id(run_name, seed)}.json"


def history_file(run_name: str, seed: int) -> str:
    """A member's history CSV, relative to the results folder (as recorded in its record)."""
    return f"histories/{run_name}/seed{seed}.csv"


def history_csv(rows: list[dict], columns: list[str] | None = None,
                line_end: str = "\n", separator: str = ",") -> str:
    """Keras CSVLogger's layout: `epoch` first, then the metric names sorted (or `columns`); a
    missing value is `NA` (as Keras writes it). Lines end in `line_end`: `\\n` for a sweep's
    logs, `\\r\\n` (the csv module's, as Keras writes them) for `jaxmlp.CSVLogger`; cells
    are separated by `separator` (CSVLogger's)."""
    columns = ["epoch"] + (list(columns) if columns is not None else
                           sorted({k for r in rows for k in r if k != "epoch"}))
    buf = io.StringIO()
    # extrasaction: what `columns` leaves out is not written
    writer = csv.DictWriter(buf, fieldnames=columns, restval="NA", lineterminator=line_end,
                            delimiter=separator, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def read_history(path) -> dict:
    """A history CSV as `{"epoch": [int...], "<metric>": [float...]}`; `NA`, empty or
    unreadable cells are NaN."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {"epoch": []}
    return {k: [int(r[k]) if k == "epoch" else number(r[k]) for r in rows] for k in rows[0]}


def number(text: str | None) -> float:
    """A CSV cell as float; Keras's `NA` (and anything unreadable) becomes NaN."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan
