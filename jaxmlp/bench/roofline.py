"""Benchmark: an honest roofline. Peak matmul rate, then what an epoch and a whole sweep achieve.

    python -m jaxmlp.bench.roofline [--size 8192] [--stream 268435456] [--members 1 8 32]
                                    [--sweep results.json ...] [--json PATH]

- Peak: the best of timed blocks of one large square matmul (default 8192, 2048 on a CPU) in
  float32 at the precision training uses (`jax_default_matmul_precision`; unset means XLA's
  default, which on NVIDIA Ampere/Hopper lets float32 dots run as TF32) and, for reference, at
  `highest` (true float32) and in bfloat16.
- Memory bandwidth: the best of timed blocks of STREAM's triad (z = x * s + z, two float32
  reads and one write an element) over arrays far larger than any cache (default 2^28 elements,
  2^25 on a CPU). A step's weight update is memory traffic, not matrix products
  (`jaxmlp.bench.schedule.update_bytes_per_param`); this is the rate that traffic can reach.
- Epoch: TA8's combined model (jaxmlp/experiments/ta8.py) on synthetic CIFAR-shaped data at batch
  64, as a group of M members; FLOPs per member-epoch: the matrix products the epoch runs
  (`epoch_floor.epoch_flops`: forward, weight gradients, input gradients of every layer but the
  first, and the epoch's evaluation). Records before 2026-11-28 counted 6 x dense weights per
  trained example (no `flop_count` field), which includes the first layer's input gradient that
  no step computes: for TA8's model 1.46 x the products run.
- Sweep: a finished sweep's results.json (one uninterrupted invocation): the same count over
  every member's epochs plus its final evaluation of train, validation and test, divided by the
  invocation's wall time from the first load to the last record (`since_start_s`).
Every rate is reported with its percentage of the training-precision peak; nothing is a ratio
below 1 dressed up as a speedup.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

import jax
import jax.numpy as jnp

from jaxmlp import atomic, records
from jaxmlp.bench import code_version
from jaxmlp.bench.epoch_floor import (
    FLOP_COUNT,
    SYNTHETIC_HELD_OUT,
    best_rate,
    combined_run,
    dense_weights,
    epoch_flops,
    epoch_times,
    synthetic_cifar,
)
from jaxmlp.bench.sweep import members
from jaxmlp.config import ModelConfig


def peak_tflops(size: int, dtype, precision, blocks: int = 5, seconds: float = 0.5) -> float:
    """Best of `blocks` timed blocks of `size`^3 matmuls on random data."""
    ka, kb = jax.random.split(jax.random.key(0))
    a = jax.random.normal(ka, (size, size), dtype)
    b = jax.random.normal(kb, (size, size), dtype)
    f = jax.jit(lambda a, b: jnp.matmul(a, b, precision=precision))
    return best_rate(f, (a, b), 2 * size**3, blocks=blocks, seconds=seconds,
                     calibrate=0.1) / 1e12


def peak_bandwidth_gbs(n: int, sweeps: int = 20, blocks: int = 5, seconds: float = 0.5) -> float:
    """GB/s of STREAM's triad z = x * s + z on `n` float32s, `sweeps` passes in one loop per call
    (12 n bytes a pass: two reads, one write): the best of `blocks` timed blocks. A copy of z
    into the loop's buffer, if XLA makes one, is not counted: the rate errs low, never high."""
    kx, kz = jax.random.split(jax.random.key(1))
    x = jax.random.normal(kx, (n,), jnp.float32)
    z = jax.random.normal(kz, (n,), jnp.float32)
    s = jnp.float32(1e-3)

    def triad(x, z, s):
        return jax.lax.fori_loop(0, sweeps, lambda i, z: x * s + z, z)
    return best_rate(jax.jit(triad), (x, z, s), 12 * n * sweeps, blocks=blocks, seconds=seconds,
                     calibrate=0.1) / 1e9


def epoch_row(members: int, epoch_s: float, flops: float, peak: float) -> dict:
    """An epoch of a group of `members` on the roofline: its TFLOP/s and % of `peak`."""
    return {"members": members, "epoch_s": epoch_s, "tflops": flops / epoch_s / 1e12,
            "percent_of_peak": 100 * flops / epoch_s / 1e12 / peak}


def sweep_flops(doc: dict) -> float:
    """Dense-layer FLOPs of every member's epochs and final evaluation in a results.json."""
    ds = doc["dataset"]
    total = 0.0
    for r in doc["runs"]:
        m = r["config"]["model"]
        model = ModelConfig(hidden=tuple(m["hidden"]), input_dim=m["input_dim"],
                            num_classes=m["num_classes"])
        epochs = sum(s["epochs_run"] for s in r["seeds"])
        final = 2 * dense_weights(model) * (ds["n_train"] + ds["n_val"] + ds["n_test"])
        total += epochs * epoch_flops(model, ds["n_train"], ds["n_val"]) + len(r["seeds"]) * final
    return total


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m jaxmlp.bench.roofline",
                                description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, help="square matmul size for the peak "
                   "(default 8192 on an accelerator, 2048 on a CPU)")
    p.add_argument("--stream", type=int, help="float32 elements per array of the bandwidth "
                   "triad (default 2^28 on an accelerator, 2^25 on a CPU; 0: not measured)")
    p.add_argument("--members", type=int, nargs="*", default=[1, 8, 32],
                   help="group sizes to time an epoch of (none: no epoch rows)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--n", type=int, default=45000, help="training examples per epoch")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sweep", nargs="*", default=[], metavar="RESULTS_JSON",
                   help="finished sweeps to place on the roofline")
    p.add_argument("--json", help="write the numbers to this JSON file")
    p.add_argument("--peak-from", metavar="ROOFLINE_JSON",
                   help="take the peak (and device) from an earlier record of this benchmark "
                   "instead of measuring: to place sweeps timed on that device afterwards")
    p.add_argument("--epoch-from", metavar="STEP_OPTIONS_JSON",
                   help="with --peak-from: the epoch row of a later jaxmlp.bench.step_options "
                   "record (its default variant) instead of the earlier record's rows, which "
                   "timed the code of their day")
    p.add_argument("--note")
    args = p.parse_args(argv)
    if args.stream is not None and args.stream < 0:
        p.error(f"--stream {args.stream}: allowed 0 (not measured) or a number of elements")
    if args.peak_from:
        with open(args.peak_from) as f:
            out = json.load(f)
        out.pop("sweeps", None)
        if out.get("flop_count") != FLOP_COUNT:
            out["epoch"] = []  # counted the older way: not mixed with this record's rows
        out["created"] = records.now()  # this record's rows; the note says when the peak was
        out["flop_count"] = FLOP_COUNT
        env, peak = out["environment"], out["peak_tflops"]
        if args.epoch_from:
            with open(args.epoch_from) as f:
                probe = json.load(f)
            v = next(v for v in probe["variants"] if v["name"] == "default" and "error" not in v)
            model = combined_run(probe["batch"]).model  # step_options's model and data
            flops = probe["members"] * epoch_flops(model, probe["n_train"], SYNTHETIC_HELD_OUT)
            out["epoch"] = [{**epoch_row(probe["members"], v["epoch_s"], flops,
                                         peak["float32_training_precision"]),
                             "from": args.epoch_from}]
            out["n_train"], out["batch"] = probe["n_train"], probe["batch"]
        print(f"peak from {args.peak_from} ({env['device']}): "
              + ", ".join(f"{k} {v:.2f} TFLOP/s" for k, v in peak.items()))
    else:
        env = records.environment("group")
        size = args.size or (8192 if env["platform"] != "cpu" else 2048)
        training_precision = jax.config.jax_default_matmul_precision
        print(f"device: {env['device']} ({env['platform']}), jax {env['jax']}; training matmul "
              f"precision: {training_precision or 'default (XLA: TF32 on Ampere/Hopper GPUs)'}",
              flush=True)
        peak = {"float32_training_precision": peak_tflops(size, jnp.float32, None),
                "float32_highest": peak_tflops(size, jnp.float32, "highest"),
                "bfloat16": peak_tflops(size, jnp.bfloat16, None)}
        for k, v in peak.items():
            print(f"peak {k} ({size}^3 matmul): {v:.2f} TFLOP/s", flush=True)
        out = {"benchmark": "roofline", "matmul_size": size, "code": code_version(),
               "training_matmul_precision": training_precision or "default",
               "created": records.now(), "peak_tflops": peak, "environment": env,
               "batch": args.batch, "n_train": args.n, "flop_count": FLOP_COUNT,
               "epoch": []}
        stream = args.stream if args.stream is not None else (
            2**28 if env["platform"] != "cpu" else 2**25)
        if stream:
            out["bandwidth_gbs"] = peak_bandwidth_gbs(stream)
            out["bandwidth_elements"] = stream
            print(f"memory bandwidth (triad over 2 x {stream:,} float32): "
                  f"{out['bandwidth_gbs']:.0f} GB/s", flush=True)
    ref = peak["float32_training_precision"]

    data = synthetic_cifar(args.n) if args.members and not args.peak_from else None
    for m in args.members if data is not None else []:
        runs = members(m, args.batch)
        t = statistics.median(epoch_times(runs, data, args.repeats))
        row = epoch_row(m, t, m * epoch_flops(runs[0].model, args.n, data.x_val.shape[0]), ref)
        out["epoch"].append(row)
        print(f"epoch, group of {m:>2}: {t:.4f} s, {row['tflops']:.2f} TFLOP/s = "
              f"{row['percent_of_peak']:.1f} % of peak", flush=True)

    out["sweeps"] = []
    for path in args.sweep:
        with open(path) as f:
            doc = json.load(f)
        inv = doc["settings"].get("this_invocation", {})
        wall = inv.get("since_start_s") or inv.get("wall_time_s")
        flops = sweep_flops(doc)
        if doc["environment"]["device"] != env["device"]:
            raise SystemExit(f"{path} ran on {doc['environment']['device']}, the peak is "
                             f"{env['device']}'s")
        row = {"experiment": doc["experiment"], "results": os.path.basename(path),
               "wall_time_s": wall,
               "complete": inv.get("complete"), "pflop": flops / 1e15,
               "tflops": flops / wall / 1e12, "percent_of_peak": 100 * flops / wall / 1e12 / ref,
               "device": doc["environment"]["device"]}
        out["sweeps"].append(row)
        print(f"sweep {doc['experiment']} ({path}): {flops / 1e15:.3f} PFLOP in {wall:.1f} s = "
              f"{row['tflops']:.2f} TFLOP/s = {row['percent_of_peak']:.2f} % of peak "
              f"(on {row['device']})", flush=True)
    if args.note:
        out["note"] = args.note
    if args.json:
        atomic.write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
