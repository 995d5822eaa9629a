"""Benchmarks and Keras parity, built on the experiment definitions (jaxmlp/experiments/).

    python -m jaxmlp.bench.epoch_floor    epoch time against this machine's matmul floor (--keras)
    python -m jaxmlp.bench.epoch_profile  where an epoch's time goes, XLA op by op, by category
    python -m jaxmlp.bench.first_layer    the first layer's x^T laid out or not, by input width
    python -m jaxmlp.bench.sweep          vmapped groups vs one by one vs Keras 3 fit; sweep times
    python -m jaxmlp.bench.whole_sweeps   each experiment cold then warm, timed from outside
    python -m jaxmlp.bench.load           the data load: float32 made on the host or uint8 pixels
    python -m jaxmlp.bench.unused_parts   an epoch without the dropout and L2 its model does not use
    python -m jaxmlp.bench.schedule       a sweep's groups and steps in series (counts, no timing)
    python -m jaxmlp.bench.merge_probe    a loop per group vs one loop stepping several groups
    python -m jaxmlp.bench.observer_cost  a sweep's writer thread (TensorBoard, files, checkpoints)
    python -m jaxmlp.bench.keras_parity   every P8D/TA8 run by Keras 3 fit, one record a seed
    python -m jaxmlp.bench.parity_table   ours vs Keras per run, from committed records (no JAX)
"""

from __future__ import annotations

import math
import os
import subprocess
from pathlib import Path

import numpy as np


def code_version() -> str | None:
    """The commit this package's checkout is at (`git describe --always --dirty`), recorded with
    a benchmark so a reader knows which code it timed; None outside a git checkout."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=7"],
                             cwd=Path(__file__).resolve().parent, capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


# What points a process at a persistent XLA compilation cache: JAX's own variables and the
# experiment CLI's. A benchmark that times compilation in a fresh process removes them all.
CACHE_VARIABLES = ("JAX_COMPILATION_CACHE_DIR", "JAX_COMPILATION_CACHE_MAX_SIZE",
                   "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS",
                   "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "JAXMLP_COMPILE_CACHE")


def without_compile_cache(env=None, **extra) -> dict:
    """`env` (default: this process's environment) with `extra` set and no persistent compile
    cache: a child started with it compiles every program from nothing (or, for the experiment
    CLI, in its own runs folder's cache), whatever cache the caller's shell or test run set."""
    out = {k: v for k, v in (os.environ if env is None else env).items()
           if k not in CACHE_VARIABLES}
    out.update(extra)
    return out


def round_ratios(b: dict, ours: list | None, other: list | None) -> list[float] | None:
    """other / ours round by round, for two sides of an epoch_floor record `b` timed in
    alternating rounds of one epoch per side (a slow stretch of the machine then falls on both
    sides of a round); None for older records (blocks of epochs, or too few rounds)."""
    if (b.get("repeats") != 1 or not ours or not other or len(ours) != len(other)
            or len(ours) < 4):
        return None
    return [t / o for o, t in zip(ours, other)]


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """(lower quartile, median, upper quartile) of `values` (numpy's linear interpolation)."""
    q1, q2, q3 = np.percentile(values, [25, 50, 75])
    return float(q1), float(q2), float(q3)


def per_round(record: dict, ours: list, other: list) -> str:
    """'; per round: median M (quartiles Q1-Q3)' of other/ours within each alternating round
    (`round_ratios`), or '' where the record has no such rounds: what the bench scripts print
    after a ratio of medians."""
    ratios = round_ratios(record, ours, other)
    if ratios is None:
        return ""
    q1, q2, q3 = quartiles(ratios)
    return f"; per round: median {q2:.2f} (quartiles {q1:.2f}-{q3:.2f})"


def dot_flops(jaxpr) -> float:
    """FLOPs of every matrix product a traced program runs (2 x output size x contracted size per
    `dot_general`), from its jaxpr: a `scan` body counts `length` times, a `cond` its costliest
    branch, and a product whose result nothing uses (XLA drops it) not at all. A floor counted
    this way holds the program to the products it really contains, not to a textbook count
    (`6 x weights` per trained example also counts the gradient with respect to the data, which
    no step computes)."""
    # JAX's own dead-code elimination (what jit does before lowering), with its rules for
    # scan, cond and nested jits; it has no public name.
    from jax._src.interpreters import partial_eval as pe

    return _dot_flops(pe.dce_jaxpr(jaxpr, [True] * len(jaxpr.outvars))[0])


def _dot_flops(jaxpr) -> float:
    from jax.extend import core

    total = 0.0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "dot_general":
            (contract, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            total += (2 * math.prod(eqn.outvars[0].aval.shape)
                      * math.prod(lhs[d] for d in contract))
            continue
        inner = [x.jaxpr if isinstance(x, core.ClosedJaxpr) else x
                 for v in eqn.params.values() for x in (v if isinstance(v, (tuple, list)) else (v,))
                 if isinstance(x, (core.ClosedJaxpr, core.Jaxpr))]
        counts = [_dot_flops(j) for j in inner]
        if name == "cond":
            total += max(counts, default=0.0)
        elif name == "while":
            if any(counts):
                raise ValueError("matrix products inside a while loop: its trip count is not "
                                 "in the program, so its FLOPs cannot be counted")
        else:
            total += eqn.params.get("length", 1) * sum(counts) if name == "scan" else sum(counts)
    return total
