"""Results files: per-run summaries over seeds, the environment and the dataset identity."""

from __future__ import annotations

import datetime as dt
import os
import platform
from importlib import metadata

import numpy as np

from jaxmlp import config as C
from jaxmlp.models import count_params

SUMMARY_FIELDS = {
    "test_accuracy": ("test", "accuracy"), "test_loss": ("test", "loss"),
    "val_accuracy": ("val", "accuracy"), "val_loss": ("val", "loss"),
    "train_accuracy": ("train", "accuracy"), "train_loss": ("train", "loss"),
    "epochs_run": ("epochs_run",), "best_epoch": ("best_epoch",),
    "final_lr": ("final_lr",), "lr_reductions": ("lr_reductions",),
    "wall_time_s": ("wall_time_s",), "examples_per_s": ("examples_per_s",),
}


def stats(values) -> dict:
    """Mean, sample std (ddof=1; 0 for one value), min, max and n."""
    v = np.asarray(values, dtype=np.float64)
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


def cpu_name() -> str:
    """The host CPU's model name and core count, e.g. 'AMD EPYC (2 cores)'."""
    name = platform.processor() or "cpu"
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        name = names[0] if names else name
    except OSError:
        pass
    return f"{name} ({os.cpu_count()} cores)"


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


def document(*, experiment: str, title: str, command: str, engine: str, dataset: dict,
             seeds: list[int], notes: list[str], runs: list[dict]) -> dict:
    """The whole results.json."""
    return {
        "experiment": experiment, "title": title,
        "created": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": command, "environment": environment(engine), "dataset": dataset,
        "settings": {"seeds": list(seeds), "notes": list(notes)}, "runs": runs,
    }
