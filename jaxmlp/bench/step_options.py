"""Benchmark: one sweep group's compile time and epoch time under XLA options and loop unrolling.

    python -m jaxmlp.bench.step_options [--members 8] [--variant NAME:UNROLL:XLA_FLAGS ...]
                                        [--n-train 45000] [--json PATH]

The group is TA8's combined model (jaxmlp/experiments/ta8.py: 256-128-64, BatchNorm, dropout, L2,
Adam) at batch 64 on synthetic CIFAR-shaped data, `--members` seeds vmapped as a sweep trains
them. Each variant runs in a process of its own (XLA_FLAGS are read once per process, and XLA's
in-process autotuning cache would otherwise hand one variant's results to the next) and reports:
trace and lowering, the XLA compile of the step, the first call, and the median of 3 timed
epochs (one epoch per call; the time of one train step is that over the epoch's batches).
Variants differ only in how the same computation is compiled or laid out (their numbers agree
to float32 rounding; TF32 matmul kernels chosen by other autotuning may differ more).
Prints one line per variant, and a JSON record with --json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

BATCH = 64  # TA8's batch size
DEFAULT_VARIANTS = (
    "default:1:",
    "no_triton_gemm:1:--xla_gpu_enable_triton_gemm=false",
    "autotune_0:1:--xla_gpu_autotune_level=0",
    "unroll_8:8:",
    "graphs_while:1:--xla_gpu_enable_command_buffer=+WHILE,+CONDITIONAL",
)


def parse_variant(text: str) -> dict:
    name, sep, rest = text.partition(":")
    unroll, sep2, flags = rest.partition(":")
    if not (name and sep and sep2 and unroll.isdigit() and int(unroll) >= 1):
        raise SystemExit(f"--variant {text!r}: expected NAME:UNROLL:XLA_FLAGS, e.g. "
                         "'unroll_8:8:' or 'no_triton:1:--xla_gpu_enable_triton_gemm=false'")
    return {"name": name, "unroll": int(unroll), "xla_flags": flags}


def one(members: int, unroll: int, n_train: int) -> dict:
    """Time one variant in this process (its XLA_FLAGS already set)."""
    from dataclasses import replace

    import jax

    from jaxmlp.bench.epoch_floor import combined_run, synthetic_cifar
    from jaxmlp.group import build_group, init_group

    run = combined_run(BATCH)  # TA8's combined model, Adam
    runs = [replace(run, train=replace(run.train, seed=s)) for s in range(members)]
    data = synthetic_cifar(n_train)
    out = {"device": jax.devices()[0].device_kind, "jax": jax.__version__}
    t = time.perf_counter()
    group = build_group(runs, data, unroll=unroll)
    state = jax.block_until_ready(init_group(group))
    out["init_s"] = time.perf_counter() - t
    t = time.perf_counter()
    lowered = group.step.trace(state, data).lower()
    out["trace_lower_s"] = time.perf_counter() - t
    t = time.perf_counter()
    step = lowered.compile()
    out["compile_s"] = time.perf_counter() - t
    t = time.perf_counter()
    state, rec = step(state, data)
    jax.block_until_ready(rec)
    out["first_call_s"] = time.perf_counter() - t
    times = []
    for _ in range(3):
        t = time.perf_counter()
        state, rec = step(state, data)
        jax.block_until_ready(rec)
        times.append(time.perf_counter() - t)
    out["epoch_s"] = statistics.median(times)
    out["epoch_times_s"] = times
    out["step_us"] = out["epoch_s"] / (n_train / BATCH) * 1e6
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m jaxmlp.bench.step_options",
                                description=__doc__.splitlines()[0])
    p.add_argument("--members", type=int, default=8)
    p.add_argument("--n-train", type=int, default=45_000)
    p.add_argument("--variant", action="append", help="NAME:UNROLL:XLA_FLAGS (repeatable)")
    p.add_argument("--timeout", type=float, default=180, help="seconds per variant")
    p.add_argument("--json")
    p.add_argument("--one", nargs=3, type=int, help=argparse.SUPPRESS)  # members unroll n_train
    args = p.parse_args(argv)
    if args.one:
        print("RESULT " + json.dumps(one(*args.one)), flush=True)
        return 0
    variants = [parse_variant(v) for v in (args.variant or DEFAULT_VARIANTS)]
    rows = []
    for v in variants:
        env = {**os.environ, "XLA_FLAGS": (os.environ.get("XLA_FLAGS", "") + " "
                                           + v["xla_flags"]).strip()}
        start = time.perf_counter()
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "jaxmlp.bench.step_options", "--one", str(args.members),
                 str(v["unroll"]), str(args.n_train)],
                env=env, capture_output=True, text=True, timeout=args.timeout)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            result = json.loads(lines[-1][7:]) if lines else {
                "error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]}
        except subprocess.TimeoutExpired:
            result = {"error": f"timed out after {args.timeout:g} s"}
        result["process_s"] = time.perf_counter() - start
        rows.append({**v, **result})
        r = rows[-1]
        if "error" in r:
            print(f"{v['name']:<16} ERROR {r['error']}", flush=True)
        else:
            print(f"{v['name']:<16} compile {r['compile_s']:6.1f} s  trace+lower "
                  f"{r['trace_lower_s']:5.2f} s  init {r['init_s']:5.2f} s  epoch "
                  f"{r['epoch_s']:.4f} s  step {r['step_us']:6.1f} us  ({r['device']})",
                  flush=True)
    if args.json:
        from jaxmlp import atomic, records

        atomic.write_json(args.json, {
            "benchmark": "step_options", "members": args.members, "n_train": args.n_train,
            "batch": BATCH, "model": "TA8 combined (256-128-64, BN, dropout, L2, Adam)",
            "created": records.now(), "environment": records.environment("group"),
            "variants": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
