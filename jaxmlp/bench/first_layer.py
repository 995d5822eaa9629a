"""Benchmark: the first layer's kernel gradient with x^T laid out or read transposed, by width.

    python -m jaxmlp.bench.first_layer [--dims 784 1024 1536 2048 3072] [--batch 128]
                                       [--n 45000] [--rounds 3] [--repeats 2]

For each input width, TA8's combined model (jaxmlp/experiments/ta8.py) with that many input
features, on synthetic data, one run: the median epoch with the first layer's x^T copied into
memory before its product (`models.data_matmul`) and with the product reading x transposed (as
autodiff forms it), both built in this process and timed interleaved (`--rounds` rounds of
`--repeats` epochs each). Prints one line per width. `models.LAID_OUT_MIN_FEATURES`, the width
from which the CPU uses the copy, comes from these lines. The training is bit for bit the same
either way; only the time differs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import replace
from unittest import mock

from jaxmlp import models
from jaxmlp.bench.epoch_floor import (
    combined_run,
    jaxmlp_epochs,
    plain_first_layer,
    synthetic_cifar,
)


def laid_out_first_layer():
    """Build models whose first layer uses `models.data_matmul` whatever its width (CPU)."""
    return mock.patch.object(models, "LAID_OUT_MIN_FEATURES", 0)


def compare(dim: int, batch: int, n: int, rounds: int, repeats: int) -> dict:
    run = combined_run(batch)
    run = replace(run, model=replace(run.model, input_dim=dim))
    data = synthetic_cifar(n, features=dim)
    with laid_out_first_layer():  # each model keeps the product it was built with
        laid_out = jaxmlp_epochs([run], data)
    with plain_first_layer():
        plain = jaxmlp_epochs([run], data)
    times = {"laid_out": [], "plain": []}
    for _ in range(rounds):
        times["laid_out"] += laid_out(repeats)
        times["plain"] += plain(repeats)
    a, b = statistics.median(times["laid_out"]), statistics.median(times["plain"])
    return {"input_dim": dim, "laid_out_s": a, "plain_s": b, "speedup": b / a,
            "used": dim >= models.LAID_OUT_MIN_FEATURES}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m jaxmlp.bench.first_layer",
                                description=__doc__.split("\n")[0])
    p.add_argument("--dims", type=int, nargs="+", default=[784, 1024, 1536, 2048, 3072])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--n", type=int, default=45000, help="training examples per epoch")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args(argv)
    for name in ("batch", "n", "rounds", "repeats"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if any(d < 1 for d in args.dims):
        p.error(f"--dims must be positive widths, got {args.dims}")
    for dim in args.dims:
        r = compare(dim, args.batch, args.n, args.rounds, args.repeats)
        print(f"input {dim:>5}: {r['laid_out_s']:.3f} s/epoch with x^T laid out, "
              f"{r['plain_s']:.3f} s read transposed (x{r['speedup']:.3f}); jaxmlp uses "
              f"{'the copy' if r['used'] else 'the plain product'} at this width", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
