"""Benchmark: whole experiment sweeps, each timed cold and then warm, written as bench records.

    python -m jaxmlp.bench.whole_sweeps --data-dir DATA --work DIR --records DIR
        [--experiments ta8 p8d] [--tag gpu_h200] [--deadline S] [--code REV] [--note TEXT]
        [--label TEXT] [-- EXTRA EXPERIMENT ARGS]

For each experiment, in order: `python -m jaxmlp.experiments.<name> --data-dir DATA --out
DIR/<name> --epochs-per-call 5 --unroll 1 --no-report` in a fresh `DIR/<name>` (so JAX's
persistent compilation cache, kept there, starts empty: cold; the sweeps are run without the
caller's `$JAXMLP_COMPILE_CACHE` or JAX cache variables), then the same with `--retrain`
(every program now in the cache: warm). Each process's wall time is measured from outside
(interpreter start and imports included), and so is its exit: from the results.json write
(its modification time) to the process's end. Each finished sweep becomes a record,
`RECORDS/<name>_sweep_<tag>.json` and `..._<tag>_warm.json`, as `jaxmlp.bench.sweep
--whole-sweep` writes them. Then `python -m jaxmlp report` puts them on the bench page.

`--deadline S`: no sweep starts, and a running one is stopped, once S seconds have passed
since this command started (a lent device's time is short); a stopped sweep leaves no record,
and the command says which. XLA_FLAGS and other settings come from the environment; say so in
`--note` or `--label`. Exit status 1 if any sweep failed or was stopped.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

from jaxmlp.bench import code_version, without_compile_cache
from jaxmlp.bench import sweep as sweep_bench

EXPERIMENTS = ("ta8", "p8d")


def parse(argv):
    p = argparse.ArgumentParser(prog="python -m jaxmlp.bench.whole_sweeps",
                                description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", required=True, help="datasets in the Keras cache layout")
    p.add_argument("--work", required=True, help="a folder for the sweeps' outputs "
                   "(DIR/<experiment> is emptied first)")
    p.add_argument("--records", required=True, help="where the bench records are written")
    p.add_argument("--experiments", nargs="+", default=list(EXPERIMENTS),
                   choices=EXPERIMENTS, metavar="NAME", help="default: ta8 p8d")
    p.add_argument("--tag", default="gpu", help="record names: <experiment>_sweep_<tag>.json")
    p.add_argument("--deadline", type=float, metavar="S",
                   help="start nothing, and stop what runs, S seconds after this started")
    p.add_argument("--epochs-per-call", type=int, default=5)
    p.add_argument("--code", metavar="REV", help="the commit timed (default: this checkout's)")
    p.add_argument("--note", help="recorded with every record")
    p.add_argument("--label", help="recorded with every record: another configuration than "
                   "the command's own (XLA flags, say); the goals table leaves it out")
    p.add_argument("extra", nargs="*", help="after --: more arguments for every experiment")
    args = p.parse_args(argv)
    if args.deadline is not None and not args.deadline > 0:
        p.error(f"--deadline {args.deadline}: allowed seconds above 0")
    if args.epochs_per_call < 1:
        p.error(f"--epochs-per-call {args.epochs_per_call}: allowed 1 or more")
    return args


def main(argv=None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    started = time.monotonic()
    code = args.code or code_version()
    records = Path(args.records)
    records.mkdir(parents=True, exist_ok=True)
    failed = []
    for name in args.experiments:
        out = Path(args.work) / name
        shutil.rmtree(out, ignore_errors=True)
        cold_ok = False
        for cache in ("cold", "warm"):
            stem = f"{name}_sweep_{args.tag}" + ("_warm" if cache == "warm" else "")
            left = None if args.deadline is None else args.deadline - (time.monotonic() - started)
            if cache == "warm" and not cold_ok:
                print(f"{stem}: not started, its cold sweep has no record", flush=True)
                failed.append(stem)
                continue
            if left is not None and left <= 0:
                print(f"{stem}: not started, the deadline has passed", flush=True)
                failed.append(stem)
                continue
            cmd = [sys.executable, "-m", f"jaxmlp.experiments.{name}", "--data-dir",
                   args.data_dir, "--out", str(out), "--epochs-per-call",
                   str(args.epochs_per_call), "--unroll", "1", "--no-report", *args.extra]
            if cache == "warm":
                cmd.append("--retrain")
            print(f"{stem}: {' '.join(cmd[1:])}", flush=True)
            begun = time.perf_counter()
            try:
                # XLA_FLAGS &c. pass through; a $JAXMLP_COMPILE_CACHE would warm the cold run
                done = subprocess.run(cmd, timeout=left, env=without_compile_cache())
            except subprocess.TimeoutExpired:
                print(f"{stem}: stopped at the deadline; no record", flush=True)
                failed.append(stem)
                continue
            wall, ended = time.perf_counter() - begun, time.time()
            if done.returncode != 0:
                print(f"{stem}: exit status {done.returncode}; no record", flush=True)
                failed.append(stem)
                continue
            more = [a for flag, v in (("--code", code), ("--note", args.note),
                                      ("--label", args.label)) if v for a in (flag, v)]
            exit_s = ended - (out / "results.json").stat().st_mtime
            sweep_bench.main(["--whole-sweep", str(out / "results.json"), "--cache", cache,
                              "--process-wall", f"{wall:.2f}", "--process-exit",
                              f"{exit_s:.2f}", "--json",
                              str(records / f"{stem}.json"), *more])
            print(f"{stem}: {wall:.1f} s, the process whole -> {records / stem}.json",
                  flush=True)
            cold_ok = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
