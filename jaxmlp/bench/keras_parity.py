"""Keras parity: every P8D and TA8 run trained by Keras 3 `fit` (JAX backend), one record a seed.

    KERAS_BACKEND=jax nice -n 15 python -m jaxmlp.bench.keras_parity --data-dir DATA \\
        [--experiments p8d ta8] [--runs NAME ...] [--until 20:30] [--list]

The runs are the experiment definitions themselves (jaxmlp/experiments/p8d.py, ta8.py), built in
Keras by jaxmlp.bench.keras_replica: same model, optimizer, batch size, epochs and callbacks, on
the same arrays (`jaxmlp.data.load`), with Keras's own `validation_split` (the tail, as our
split). Seeds: 5 for runs that stop early or cut the LR, else 3. Each (experiment, run, seed)
is one JSON record, written atomically under experiments/bench/parity/<experiment>/; a record
that exists is skipped, so an interrupted invocation resumes. It records per epoch loss,
accuracy, val_loss, val_accuracy and the LR the epoch trained with; the epoch EarlyStopping
fired (0-based, as Keras's `stopped_epoch`), the epochs at whose end the plateau cut the LR, and
the test loss/accuracy of the weights `fit` returns (the best ones where restore_best_weights).
Compare with `python -m jaxmlp.bench.parity_table`. Needs `pip install -e '.[bench]'`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from dataclasses import replace
from importlib import metadata
from pathlib import Path

import numpy as np

from jaxmlp import atomic
from jaxmlp import config as C
from jaxmlp.bench import keras_replica as K

OUT = Path("experiments/bench/parity")
# The brief's order: P8D, then TA8's callback runs, then TA8 parts 1-2 (definition order).
PRIORITY = ("cb_early_stopping", "cb_combined", "cb_reduce_lr", "cb_cosine", "cb_none")


def experiments() -> dict:
    """The experiment definitions by name (imported here: they pull in the training engine)."""
    from jaxmlp.experiments import p8d, ta8

    return {"p8d": p8d.EXPERIMENT, "ta8": ta8.EXPERIMENT}


def as_trained(run: C.RunConfig) -> C.RunConfig:
    """`run` with the input width of its dataset, as the experiment runner sets it."""
    return replace(run, model=replace(run.model, input_dim=C.INPUT_DIMS[run.train.dataset]))


def seeds_for(run: C.RunConfig, ours: int = 0) -> int:
    """The Keras seeds of `run` (parity_table.seeds_needed: 5 where the stop epoch or the
    plateau cuts are compared, else 3, and at least `ours`, the seeds our definition trains)."""
    from jaxmlp.bench.parity_table import seeds_needed

    return seeds_needed(C.to_dict(run.hooks), ours)


def ordered(runs) -> list:
    """P8D's order as defined; TA8's callback runs first, in PRIORITY order."""
    first = [r for name in PRIORITY for r in runs if r.name == name]
    return first + [r for r in runs if r not in first]


def record_path(out: Path, experiment: str, run: str, seed: int) -> Path:
    return out / experiment / f"{run}__seed{seed}.json"


def keras_arrays(ds, validation_split: float):
    """The training arrays as the pages passed them to `fit`: train and validation rejoined, so
    that Keras's tail `validation_split` cuts them where jaxmlp.data did."""
    x = np.concatenate([ds.x_train, ds.x_val])
    y = np.concatenate([ds.y_train, ds.y_val])
    cut = int(np.floor(len(x) * (1.0 - validation_split)))
    if cut != len(ds.x_train):
        raise ValueError(f"Keras would cut at {cut}, jaxmlp.data cut at {len(ds.x_train)}")
    return x, y


def plateau_cuts(trained_with, after) -> list[int]:
    """0-based epochs at whose end the LR went down (a plateau cut; a scheduler acts only at
    epoch begin, so it never shows here)."""
    return [e for e, (a, b) in enumerate(zip(trained_with, after)) if b < a * (1 - 1e-6)]


def train(run: C.RunConfig, seed: int, ds) -> dict:
    """Train `run` with Keras `fit` for one seed; the record (without environment)."""
    keras = K.import_keras()
    keras.utils.set_random_seed(seed)
    x, y = keras_arrays(ds, run.train.validation_split)
    net = K.compiled(run)
    recorder = K.lr_recorder()
    with tempfile.TemporaryDirectory(prefix="keras-parity-") as ckpt:
        cbs = K.callbacks(run.hooks, ckpt)
        start = time.perf_counter()
        h = net.fit(x, y, batch_size=run.train.batch_size, epochs=run.train.epochs,
                    validation_split=run.train.validation_split, shuffle=True, verbose=0,
                    callbacks=[*cbs, recorder]).history
        wall = time.perf_counter() - start
    test = net.evaluate(ds.x_test, ds.y_test, batch_size=1024, verbose=0, return_dict=True)
    es = next((c for c in cbs if isinstance(c, keras.callbacks.EarlyStopping)), None)
    fired = es is not None and bool(net.stop_training)
    cuts = plateau_cuts(recorder.trained_with, recorder.after) if run.hooks.reduce_lr else []
    return {
        "keras_callbacks": [type(c).__name__ for c in cbs], "epochs_run": len(h["loss"]),
        "history": {"epoch": list(range(len(h["loss"]))),
                    **{k: [float(v) for v in h[k]]
                       for k in ("loss", "accuracy", "val_loss", "val_accuracy")},
                    "learning_rate": recorder.trained_with, "lr_after_epoch": recorder.after,
                    "epoch_time_s": recorder.epoch_time_s},
        "stopped_early": fired,
        "stopped_epoch": int(es.stopped_epoch) if fired else None,
        "es_best_epoch": int(es.best_epoch) if es is not None else None,
        "restored_best": bool(es is not None and es.restore_best_weights),
        "plateau_cuts": cuts, "lr_reductions": len(cuts),
        "test": {"loss": float(test["loss"]), "accuracy": float(test["accuracy"])},
        "wall_time_s": wall,
    }


def environment() -> dict:
    import jax

    from jaxmlp.records import cpu_name

    dev = jax.devices()[0]
    versions = {d: metadata.version(d) for d in ("keras", "jax", "jaxlib")}
    return {"device": dev.device_kind if dev.platform != "cpu" else cpu_name(),
            "platform": dev.platform, **versions}


def parity_record(exp, run: C.RunConfig, seed: int, ds, env: dict) -> dict:
    cfg = C.to_dict(run)
    return {"benchmark": "keras_parity_run", "experiment": exp.name, "run": run.name,
            "seed": seed, "framework": "keras", "label": run.label,
            "config": {k: cfg[k] for k in ("model", "optim", "train", "hooks")},
            "dataset": ds.identity, **train(run, seed, ds), "environment": env,
            "created": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}


def same_config(exp, run: C.RunConfig, seed: int, out: Path) -> dict | None:
    """An existing record of an earlier run of `exp` with the very same configuration (TA8's
    lr_0.001, opt_adam and batch_64 are its combined model), relabelled for `run`: Keras with
    the same seed would train it to the same numbers."""
    cfg = C.to_dict(run)
    for other in exp.runs:
        if other.name == run.name:
            return None
        path = record_path(out, exp.name, other.name, seed)
        if C.to_dict(as_trained(other)) | {"name": run.name, "label": run.label, "part": run.part,
                               "description": run.description} == cfg and path.exists():
            rec = json.loads(path.read_text())
            return {**rec, "run": run.name, "label": run.label, "same_config_as": other.name}
    return None


def past(until: str | None) -> bool:
    """True once the UTC wall clock is at or past `until` (HH:MM): launch nothing new."""
    if not until:
        return False
    return dt.datetime.now(dt.UTC).strftime("%H:%M") >= until


def plan(names, only=None, min_seeds: int = 0):
    """[(experiment, run, seeds, reason_to_skip)] in the order they are trained."""
    out = []
    for name, exp in experiments().items():
        if name not in names:
            continue
        for run in ordered(exp.runs):
            if only and run.name not in only:
                continue
            ours = exp.more_seeds.get(run.name, exp.seeds)
            out.append((exp, as_trained(run), max(seeds_for(run, ours), min_seeds),
                        K.no_equivalent(run)))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m jaxmlp.bench.keras_parity",
                                description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", help="Keras-cache-layout folder with the datasets")
    p.add_argument("--experiments", nargs="+", default=["p8d", "ta8"], choices=["p8d", "ta8"])
    p.add_argument("--runs", nargs="+", help="only these runs (default: all)")
    p.add_argument("--min-seeds", type=int, default=0, help="at least this many seeds a run")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--until", metavar="HH:MM", help="UTC time after which no run is started")
    p.add_argument("--list", action="store_true", help="print the plan and exit")
    args = p.parse_args(argv)
    todo = plan(args.experiments, args.runs, args.min_seeds)
    if args.list:
        for exp, run, seeds, skip in todo:
            print(f"{exp.name}/{run.name}: {skip or f'{seeds} seeds'}")
        return 0
    from jaxmlp import data as D

    env, loaded = environment(), {}
    for exp, run, seeds, skip in todo:
        if skip:
            print(f"{exp.name}/{run.name}: skipped, {skip}", flush=True)
            continue
        for seed in range(seeds):
            path = record_path(args.out, exp.name, run.name, seed)
            if path.exists():
                continue
            if past(args.until):
                print(f"{args.until} UTC reached: no new runs", flush=True)
                return 0
            if exp.dataset not in loaded:
                loaded.clear()  # one dataset in memory at a time
                loaded[exp.dataset] = D.load(exp.dataset, data_dir=args.data_dir,
                                             validation_split=run.train.validation_split)
            twin = same_config(exp, run, seed, args.out)
            rec = twin or parity_record(exp, run, seed, loaded[exp.dataset], env)
            atomic.write_json(path, rec)
            print(f"{exp.name}/{run.name} seed {seed}: {rec['epochs_run']} epochs, stop "
                  f"{rec['stopped_epoch']}, cuts {rec['plateau_cuts']}, test accuracy "
                  f"{rec['test']['accuracy']:.4f}, {rec['wall_time_s']:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
