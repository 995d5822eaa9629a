"""Benchmark: one sweep group's compile time and epoch time under XLA options and loop unrolling.

    python -m jaxmlp.bench.step_options [--members 8] [--batch 64] [--rounds R]
                                        [--variant NAME:UNROLL:XLA_FLAGS ...]
                                        [--n-train 45000] [--json PATH]

The group is TA8's combined model (jaxmlp/experiments/ta8.py: 256-128-64, BatchNorm, dropout, L2,
Adam) at batch 64 on synthetic CIFAR-shaped data, `--members` seeds vmapped as a sweep trains
them. Each variant runs in a process of its own (XLA_FLAGS are read once per process, and XLA's
in-process autotuning cache would otherwise hand one variant's results to the next), started
without any persistent compile cache of the caller's environment, and reports:
trace and lowering, the XLA compile of the step, the first call, and the median of 3 timed
epochs (one epoch per call; the time of one train step is that over the epoch's batches).
Variants differ only in how the same computation is compiled or laid out (their numbers agree
to float32 rounding; TF32 matmul kernels chosen by other autotuning may differ more).

With `--rounds R` every variant is compiled in this one process instead, its flags given to XLA
as compile options (`--xla_cpu_prefer_vector_width=512` becomes {"xla_cpu_prefer_vector_width":
512}; an option this XLA does not know is that variant's error), so that the variants can be
timed in R alternating rounds of one epoch each: on a noisy machine (this project's 2-core CPU) a
slow stretch then falls on every variant of a round, and the ratio to the first variant is read
round by round. Each variant's first epoch, from the same initial state, is compared leaf by
leaf with the first variant's: whether the option changes the numbers. This is how the CPU's
compiler options are judged; the defaults are then CPU_VARIANTS (GPU_VARIANTS otherwise).
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
from dataclasses import replace

from jaxmlp.bench import code_version, per_round, without_compile_cache

BATCH = 64  # TA8's batch size
GPU_VARIANTS = (
    "default:1:",
    "no_triton_gemm:1:--xla_gpu_enable_triton_gemm=false",
    "autotune_0:1:--xla_gpu_autotune_level=0",
    "unroll_8:8:",
    "graphs_while:1:--xla_gpu_enable_command_buffer=+WHILE,+CONDITIONAL",
)
# XLA:CPU options that might speed up the epoch (jaxlib 0.10). Not among them, because it is no
# compile option (a backend extra option, XLA_FLAGS only): multi-output fusion,
# --xla_backend_extra_options=xla_cpu_use_multi_output_fusion (run it in process mode).
CPU_VARIANTS = (
    "default:1:",
    "concurrency_scheduler:1:--xla_cpu_enable_concurrency_optimized_scheduler=true",
    "region_copies:1:--xla_cpu_copy_insertion_use_region_analysis=true",
    "vector_512:1:--xla_cpu_prefer_vector_width=512",
    "ynn_dot:1:--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_DOT,"
    "LIBRARY_FUSION_TYPE_REDUCE",
    "no_fusion_emitters:1:--xla_cpu_use_fusion_emitters=false",
    "unroll_2:2:",
)


def parse_variant(text: str) -> dict:
    name, sep, rest = text.partition(":")
    unroll, sep2, flags = rest.partition(":")
    if not (name and sep and sep2 and unroll.isdigit() and int(unroll) >= 1):
        raise SystemExit(f"--variant {text!r}: expected NAME:UNROLL:XLA_FLAGS, e.g. "
                         "'unroll_8:8:' or 'no_triton:1:--xla_gpu_enable_triton_gemm=false'")
    return {"name": name, "unroll": int(unroll), "xla_flags": flags}


def seeds(batch: int, members: int) -> list:
    """TA8's combined run (256-128-64, BatchNorm, dropout, L2, Adam) at `batch`, seeds 0 to
    members - 1."""
    from jaxmlp.bench import epoch_floor

    run = epoch_floor.combined_run(batch)
    return [replace(run, train=replace(run.train, seed=s)) for s in range(members)]


def compile_options(flags: str) -> dict:
    """XLA_FLAGS-style `--name=value ...` as XLA compile options: true/false as booleans,
    integers as ints, anything else as text."""
    options = {}
    for token in flags.split():
        name, sep, value = token.removeprefix("--").partition("=")
        if not (token.startswith("--") and sep and name):
            raise SystemExit(f"--variant flags {token!r}: with --rounds each flag must read "
                             "--name=value (an XLA option), e.g. "
                             "--xla_cpu_prefer_vector_width=512")
        options[name] = ({"true": True, "false": False}.get(value.lower())
                         if value.lower() in ("true", "false")
                         else int(value) if value.lstrip("-").isdigit() else value)
    return options


def interleaved(variants: list[dict], members: int, batch: int, n_train: int,
                rounds: int) -> list[dict]:
    """Every variant compiled in this process; its first epoch compared with the first
    variant's, bit for bit; then `rounds` alternating rounds of one epoch per variant."""
    import jax
    import numpy as np

    from jaxmlp.bench.epoch_floor import synthetic_cifar
    from jaxmlp.group import build_group, init_group

    data = synthetic_cifar(n_train)
    device = {"device": jax.devices()[0].device_kind, "jax": jax.__version__}
    rows, live, reference = [], [], None
    for v in variants:
        row = {**v, **device}
        rows.append(row)
        options = compile_options(v["xla_flags"])
        group = build_group(seeds(batch, members), data, unroll=v["unroll"])
        start = init_group(group)
        t = time.perf_counter()
        lowered = group.step.trace(start, data).lower()
        row["trace_lower_s"] = time.perf_counter() - t
        t = time.perf_counter()
        try:
            step = lowered.compile(compiler_options=options) if options else lowered.compile()
        except jax.errors.JaxRuntimeError as e:
            row["error"] = (str(e).strip().splitlines() or ["compile failed"])[0][:300]
            continue
        row["compile_s"] = time.perf_counter() - t
        t = time.perf_counter()
        out = jax.block_until_ready(step(start, data))
        row["first_call_s"] = time.perf_counter() - t
        leaves = [np.asarray(a) for a in jax.tree.leaves(out)]
        if reference is None:
            reference = (v["name"], leaves)
        row["equal_to"] = reference[0]
        row["equal"] = len(leaves) == len(reference[1]) and all(
            a.shape == b.shape and np.array_equal(a, b, equal_nan=True)
            for a, b in zip(leaves, reference[1]))
        row["epoch_times_s"] = []
        live.append((row, step, out[0]))
    for r in range(rounds):
        k = r % len(live) if live else 0
        for i, (row, step, state) in enumerate(live[k:] + live[:k]):
            t = time.perf_counter()
            state, rec = step(state, data)
            jax.block_until_ready((state, rec))
            row["epoch_times_s"].append(time.perf_counter() - t)
            j = (i + k) % len(live)
            live[j] = (row, step, state)
    for row, _, _ in live:
        row["epoch_s"] = statistics.median(row["epoch_times_s"]) if rounds else None
        row["step_us"] = row["epoch_s"] / (n_train / batch) * 1e6 if rounds else None
    return rows


def one(members: int, unroll: int, n_train: int, batch: int = BATCH) -> dict:
    """Time one variant in this process (its XLA_FLAGS already set)."""
    import jax

    from jaxmlp.bench.epoch_floor import synthetic_cifar
    from jaxmlp.group import build_group, init_group

    runs = seeds(batch, members)
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
    out["step_us"] = out["epoch_s"] / (n_train / batch) * 1e6
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m jaxmlp.bench.step_options",
                                description=__doc__.splitlines()[0])
    p.add_argument("--members", type=int, default=8)
    p.add_argument("--batch", type=int, default=BATCH)
    p.add_argument("--n-train", type=int, default=45_000)
    p.add_argument("--variant", action="append", help="NAME:UNROLL:XLA_FLAGS (repeatable)")
    p.add_argument("--rounds", type=int,
                   help="all variants in this process, timed in this many alternating rounds "
                        "of one epoch each (flags as XLA compile options)")
    p.add_argument("--timeout", type=float, default=180, help="seconds per variant")
    p.add_argument("--json")
    p.add_argument("--note", help="recorded with the numbers, e.g. what else ran on the machine")
    p.add_argument("--one", nargs=4, type=int, help=argparse.SUPPRESS)  # members unroll n batch
    args = p.parse_args(argv)
    if args.one:
        print("RESULT " + json.dumps(one(*args.one)), flush=True)
        return 0
    for name, value in (("--members", args.members), ("--batch", args.batch),
                        ("--n-train", args.n_train)):
        if value < 1:
            raise SystemExit(f"{name} {value}: must be at least 1")
    if args.rounds is not None and args.rounds < 1:
        raise SystemExit(f"--rounds {args.rounds}: must be at least 1")
    if args.variant:
        variants = [parse_variant(v) for v in args.variant]
    else:
        import jax

        defaults = CPU_VARIANTS if jax.default_backend() == "cpu" else GPU_VARIANTS
        variants = [parse_variant(v) for v in defaults]
    if args.rounds:
        for v in variants:
            compile_options(v["xla_flags"])  # every variant's flags checked before any work
        rows = interleaved(variants, args.members, args.batch, args.n_train, args.rounds)
    else:
        rows = [in_own_process(v, args) for v in variants]
    for r in rows:
        if "error" in r:
            print(f"{r['name']:<22} ERROR {r['error']}", flush=True)
            continue
        line = (f"{r['name']:<22} compile {r['compile_s']:6.1f} s  trace+lower "
                f"{r['trace_lower_s']:5.2f} s  epoch {r['epoch_s']:.4f} s  step "
                f"{r['step_us']:6.1f} us")
        if args.rounds:
            first = next(v for v in rows if "error" not in v)
            line += ("  (the reference)" if r is first else
                     f"  x{r['epoch_s'] / first['epoch_s']:.2f} of {first['name']}"
                     + per_round({"repeats": 1}, first["epoch_times_s"], r["epoch_times_s"]))
            line += f"  bit for bit {'=' if r['equal'] else '!='} {r['equal_to']}"
        print(line + f"  ({r['device']})", flush=True)
    if args.json:
        from jaxmlp import atomic, records

        record = {
            "benchmark": "step_options", "members": args.members, "n_train": args.n_train,
            "batch": args.batch, "model": "TA8 combined (256-128-64, BN, dropout, L2, Adam)",
            "created": records.now(), "environment": records.environment("group"),
            "code": code_version(), "variants": rows}
        if args.note:
            record["note"] = args.note
        if args.rounds:  # one epoch per variant and round (the epoch_floor records' repeats)
            record.update(rounds=args.rounds, repeats=1)
        atomic.write_json(args.json, record)
    return 0


def in_own_process(v: dict, args) -> dict:
    env = without_compile_cache(XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " "
                                          + v["xla_flags"]).strip())  # compiles it times
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "jaxmlp.bench.step_options", "--one", str(args.members),
             str(v["unroll"]), str(args.n_train), str(args.batch)],
            env=env, capture_output=True, text=True, timeout=args.timeout)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        result = json.loads(lines[-1][7:]) if lines else {
            "error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]}
    except subprocess.TimeoutExpired:
        result = {"error": f"timed out after {args.timeout:g} s"}
    result["process_s"] = time.perf_counter() - start
    return {**v, **result}


if __name__ == "__main__":
    sys.exit(main())
