"""Benchmark: an epoch that computes only the dropout layers and L2 term its model uses, or every
part with rates and coefficients of 0 (as every program did before `jaxmlp.models.Uses`).

    python -m jaxmlp.bench.unused_parts [--runs p8d:sin_callbacks ta8:pyramid ...]
                                        [--rounds 7] [--n-train N] [--json PATH]

Each run is an experiment's own definition (jaxmlp/experiments/): its model, optimizer and
batch size, with its dataset's input width, one member, on synthetic data of its dataset's
shape (the training examples its validation split leaves, unless `--n-train`). Both programs
(`jaxmlp.epoch.make_epoch` over `models.build(model)` and over `models.build(model,
Uses(every layer, L2))`) are built in this process; a warm-up epoch of each compiles it, then
`--rounds` alternating rounds time one epoch each. Their first epochs from one initial state
are compared leaf by leaf: equal bit for bit, or the largest relative difference (XLA fuses
the two programs differently, so float32 rounding may differ; the numbers of the committed
experiments did not move, checked on the real data). Prints one line per run; a JSON record
with --json. What each program leaves out is the run's `models.uses_of`: where a run uses
every part (TA8's combined model), the two are one program and the run is refused.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import statistics
import sys
import time

import jax
import numpy as np

from jaxmlp import atomic, models, optim, records
from jaxmlp import config as C
from jaxmlp.bench import code_version
from jaxmlp.bench.epoch_floor import synthetic_cifar
from jaxmlp.data import split_indices
from jaxmlp.epoch import Data, init_states, make_epoch

RUNS = ("p8d:sin_callbacks", "ta8:pyramid", "ta8:baseline", "ta8:batchnorm", "ta8:dropout",
        "ta8:l2")
EXAMPLES = {"fashion_mnist": 60000, "cifar10": 50000, "mnist": 60000}  # training files' sizes


def experiment_run(spec: str) -> C.RunConfig:
    """`EXPERIMENT:RUN` as the experiment defines it, with its dataset's input width."""
    experiment, _, name = spec.partition(":")
    try:
        exp = importlib.import_module(f"jaxmlp.experiments.{experiment}").EXPERIMENT
    except ModuleNotFoundError:
        raise ValueError(f"--runs {spec!r}: no experiment {experiment!r}; allowed p8d, ta8"
                         ) from None
    runs = {r.name: r for r in exp.runs}
    if name not in runs:
        raise ValueError(f"--runs {spec!r}: {experiment} has no run {name!r}; allowed "
                         f"{', '.join(runs)}")
    run = runs[name]
    return dataclasses.replace(run, model=dataclasses.replace(
        run.model, input_dim=C.INPUT_DIMS[run.train.dataset]))


def training_examples(run: C.RunConfig) -> int:
    """The training examples the run's dataset leaves after its validation split."""
    return len(split_indices(EXAMPLES[run.train.dataset], run.train.validation_split,
                             run.train.split, run.train.seed)[0])


def difference(a, b) -> float:
    """0.0 when every leaf is equal bit for bit, else the largest relative difference."""
    worst = 0.0
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        if not np.array_equal(x, y, equal_nan=True):
            worst = max(worst, float(np.max(np.abs(x - y) / np.maximum(np.abs(y), 1e-30))))
    return worst


def every_part(run: C.RunConfig) -> models.Uses:
    return models.Uses((True,) * len(run.model.hidden), True)


def measure(run: C.RunConfig, data: Data, rounds: int) -> dict:
    """Both programs' first epoch (compiling), then `rounds` alternating timed epochs."""
    uses, every = models.uses_of([run.model]), every_part(run)
    tx = optim.make(run.optim)
    programs = {
        name: jax.jit(make_epoch(models.build(run.model, u), tx,
                                 batch_size=run.train.batch_size, n_train=data.x_train.shape[0]))
        for name, u in (("used", uses), ("every", every))}
    state = jax.tree.map(lambda a: a[0], init_states([run]))
    first, compile_s = {}, {}
    for name, f in programs.items():
        start = time.perf_counter()
        first[name] = jax.device_get(jax.block_until_ready(f(state, data)))
        compile_s[name] = time.perf_counter() - start
    times = {name: [] for name in programs}
    for r in range(rounds):
        for name in (programs if r % 2 == 0 else list(programs)[::-1]):
            start = time.perf_counter()
            jax.block_until_ready(programs[name](state, data))
            times[name].append(time.perf_counter() - start)
    ratios = [u / e for u, e in zip(times["used"], times["every"])]
    return {"run": run.name, "model": run.model.hidden, "batch": run.train.batch_size,
            "n_train": int(data.x_train.shape[0]), "input_dim": run.model.input_dim,
            "uses": {"dropout": list(uses.dropout), "l2": uses.l2},
            "first_call_s": compile_s, "epoch_s": times,
            "median_epoch_s": {k: statistics.median(v) for k, v in times.items()},
            "ratio_by_round": ratios, "ratio": statistics.median(ratios),
            "ratio_quartiles": [float(q) for q in np.percentile(ratios, [25, 75])],
            "max_rel_difference": difference(first["used"], first["every"])}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m jaxmlp.bench.unused_parts",
                                description=__doc__.split("\n")[0])
    p.add_argument("--runs", nargs="+", default=list(RUNS), metavar="EXPERIMENT:RUN")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--n-train", type=int, help="synthetic training examples (default: the "
                   "experiment's, after its validation split)")
    p.add_argument("--json", help="write the numbers to this JSON file")
    p.add_argument("--note")
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error(f"--rounds {args.rounds}: allowed 1 or more")
    if args.n_train is not None and args.n_train < 1:
        p.error(f"--n-train {args.n_train}: allowed 1 or more")
    try:
        runs = [experiment_run(spec) for spec in args.runs]
        for run in runs:  # refused before anything is timed
            if models.uses_of([run.model]) == every_part(run):
                raise ValueError(f"--runs: {run.name} uses every part (dropout in every layer, "
                                 "an L2 term); nothing to leave out")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = {"benchmark": "unused_parts", "created": records.now(), "code": code_version(),
           "environment": records.environment("solo"), "rounds": args.rounds, "runs": []}
    for spec, run in zip(args.runs, runs):
        data = synthetic_cifar(args.n_train or training_examples(run),
                               features=run.model.input_dim)
        row = {"spec": spec, **measure(run, data, args.rounds)}
        out["runs"].append(row)
        same = ("same numbers bit for bit" if row["max_rel_difference"] == 0 else
                f"first epoch within {row['max_rel_difference']:.1g} (relative)")
        med = row["median_epoch_s"]
        print(f"{spec} (batch {row['batch']}, leaves out: {_left_out(row['uses'])}): "
              f"{med['used']:.3f} s an epoch, every part {med['every']:.3f} s: x{row['ratio']:.3f}"
              f" (median of {args.rounds} rounds); {same}", flush=True)
    if args.note:
        out["note"] = args.note
    if args.json:
        atomic.write_json(args.json, out)
    return 0


def _left_out(uses: dict) -> str:
    parts = [f"dropout {i + 1}" for i, on in enumerate(uses["dropout"]) if not on]
    parts += [] if uses["l2"] else ["L2"]
    return ", ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
