"""Benchmark: an experiment's data load, float32 features made on the host or uint8 pixels.

    python -m jaxmlp.bench.load --data-dir DATA [--datasets fashion_mnist cifar10] [--rounds 5]
                                [--json PATH]

What the `load` phase of a sweep does: `jaxmlp.datasets.load` from the Keras-cache files, then
`jaxmlp.epoch.device_data` until the arrays are on the device. Two ways, each in a fresh
process (a sweep loads once, into a process's fresh memory; a second load in the same process
reuses pages and says nothing about the first):
- features: float32 features made on the host (`data.features`), then moved to the device;
- pixels: the uint8 pixels moved, and made features there (`data.PIXEL_FEATURES`), as the
  experiments do.
The two alternate, `--rounds` rounds, so a slow stretch of the machine falls on both. Each
process reports its wall time, its CPU time in user and system mode, and a sha256 of every
array on the device: the two ways must give the same bytes, or the command fails.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time

from jaxmlp import atomic, records
from jaxmlp.bench import code_version

MODES = ("features", "pixels")
DATASETS = ("fashion_mnist", "cifar10")


def one(data_dir: str, name: str, mode: str) -> dict:
    """Load `name` one way in this process; its times and the device arrays' sha256."""
    import jax
    import numpy as np

    from jaxmlp import datasets
    from jaxmlp.epoch import device_data

    jax.devices()  # the backend is up before the clock starts, as in a sweep's load phase
    before, start = os.times(), time.perf_counter()
    ds = datasets.load(name, data_dir=data_dir, pixels=mode == "pixels")
    on_device = jax.block_until_ready(device_data(ds))
    wall, after = time.perf_counter() - start, os.times()
    digest = hashlib.sha256()
    for a in on_device:
        digest.update(np.ascontiguousarray(np.asarray(a)).tobytes())
    return {"wall_s": wall, "user_s": after.user - before.user,
            "system_s": after.system - before.system, "sha256": digest.hexdigest(),
            "n_train": int(ds.x_train.shape[0])}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m jaxmlp.bench.load",
                                description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", required=True, help="datasets in the Keras cache layout")
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--json", help="write the numbers to this JSON file")
    p.add_argument("--note")
    p.add_argument("--one", nargs=2, metavar=("NAME", "MODE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(one(args.data_dir, *args.one)))
        return 0
    if args.rounds < 1:
        p.error(f"--rounds {args.rounds}: allowed 1 or more")
    out = {"benchmark": "load", "created": records.now(), "code": code_version(),
           "environment": records.environment("group"), "rounds": args.rounds, "datasets": []}
    for name in args.datasets:
        times = {mode: [] for mode in MODES}
        for r in range(args.rounds):
            for mode in MODES if r % 2 == 0 else MODES[::-1]:
                proc = subprocess.run([sys.executable, "-m", "jaxmlp.bench.load", "--data-dir",
                                       args.data_dir, "--one", name, mode],
                                      capture_output=True, text=True)
                if proc.returncode != 0:
                    print(f"error: {name} ({mode}) failed: {proc.stderr.strip()[-2000:]}",
                          file=sys.stderr)
                    return 1
                times[mode].append(json.loads(proc.stdout.strip().splitlines()[-1]))
        digests = {m: {x["sha256"] for x in times[m]} for m in MODES}
        if len(digests["features"] | digests["pixels"]) != 1:
            print(f"error: {name}: the two ways put different arrays on the device",
                  file=sys.stderr)
            return 1
        row = {"dataset": name, "n_train": times["features"][0]["n_train"]}
        for m in MODES:
            row[m] = {k: [x[k] for x in times[m]] for k in ("wall_s", "user_s", "system_s")}
            row[m]["median_wall_s"] = statistics.median(row[m]["wall_s"])
        row["speedup"] = row["features"]["median_wall_s"] / row["pixels"]["median_wall_s"]
        out["datasets"].append(row)
        f, px = row["features"], row["pixels"]
        print(f"{name}: features on the host {f['median_wall_s']:.2f} s "
              f"(system {statistics.median(f['system_s']):.2f} s), pixels to the device "
              f"{px['median_wall_s']:.2f} s (system {statistics.median(px['system_s']):.2f} s):"
              f" x{row['speedup']:.2f}, medians of {args.rounds}; same arrays on the device",
              flush=True)
    if args.note:
        out["note"] = args.note
    if args.json:
        atomic.write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
