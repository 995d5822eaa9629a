"""Sweep benchmarks: group scaling, one group program vs one-by-one, and jaxmlp vs Keras 3 `fit`.

    python -m jaxmlp.bench.sweep [--n 45000] [--members 1 2 4 8 16 32] [--keras] [--json PATH]
    python -m jaxmlp.bench.sweep --whole-sweep runs/ta8-cpu/results.json --json PATH

Every comparison is measured side by side in one process on synthetic CIFAR-shaped data
(3072 features, 10 classes) with TA8's combined run (jaxmlp/experiments/ta8.py) at batch 64:
- scaling: epoch time of a group of M members (different learning rates) -> cost per member;
- group vs solo: M members as one program (vmapped, or a lax.map loop on the CPU: see
  jaxmlp.group.member_axis) vs the same M trained one after another;
- Keras: `keras.Sequential` of the same model on the JAX backend, `model.fit` for the same
  epochs, data and batch, against `jaxmlp` (median epoch after a warm-up epoch for both).
Group vs solo and Keras are timed interleaved: every program (the group, each solo member,
Keras) is compiled and warmed up, then `--rounds` rounds of one epoch each, in turn, so that a
slow stretch of a shared machine falls on every side alike; each side's median is kept.
`--whole-sweep` instead records the wall time of a finished experiment run (its results.json,
written by one uninterrupted `python -m jaxmlp.experiments.<name>` invocation).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys

from jaxmlp import atomic, group, records
from jaxmlp import config as C
from jaxmlp.bench import code_version
from jaxmlp.bench.epoch_floor import (
    combined_run,
    epoch_times,
    jaxmlp_epochs,
    keras_epochs,
    synthetic_cifar,
)


def members(m: int, batch: int) -> list[C.RunConfig]:
    base = combined_run(batch)
    return [dataclasses.replace(base, name=f"m{i}", optim=C.OptimConfig(
        "adam", 1e-3 * (0.5 + i / max(m, 1))), train=dataclasses.replace(base.train, seed=i))
        for i in range(m)]


def group_epoch(runs, data, repeats: int) -> float:
    """Median wall time of one epoch of the whole group, after a warm-up epoch."""
    return statistics.median(epoch_times(runs, data, repeats))


def scaling(data, sizes, batch, repeats) -> list[dict]:
    rows = []
    for m in sizes:
        t = group_epoch(members(m, batch), data, repeats)
        rows.append({"members": m, "epoch_s": t, "per_member_s": t / m})
        print(f"group of {m:>2}: epoch {t:.3f} s, {t / m:.3f} s per member", flush=True)
    return rows


def whole_sweep(results_path: str) -> dict:
    """The wall time of one complete, uninterrupted sweep, from its results.json."""
    with open(results_path) as f:
        doc = json.load(f)
    inv = doc["settings"].get("this_invocation", {})
    if not inv.get("complete"):
        raise SystemExit(f"{results_path}: not one complete uninterrupted run "
                         f"({inv or 'no this_invocation record'}); rerun it from scratch")
    members = sum(len(r["seeds"]) for r in doc["runs"])
    epochs = sum(s["epochs_run"] for r in doc["runs"] for s in r["seeds"])
    out = {"benchmark": "whole_sweep", "experiment": doc["experiment"], "command": doc["command"],
           "runs": len(doc["runs"]), "members": members, "epochs": epochs,
           "groups": inv["groups_total"], "wall_time_s": inv["wall_time_s"],
           "n_train": doc["dataset"]["n_train"], "dataset": doc["dataset"]["name"],
           "created": doc["created"], "environment": doc["environment"]}
    # Newer records also say where the time went (runner.Clock) and the time from the first
    # load on; a sweep's epochs_per_call is in its command.
    for key in ("since_start_s", "time_split_s", "observers_first", "cpu_s"):
        if key in inv:
            out[key] = inv[key]
    # Several processes (--processes N, or one per host): the time split is process 0's, the
    # wall time until the last process's records reached it; the group count is every
    # process's (with the part process 0 trained) since groups are claimed, process 0's before.
    if inv.get("processes", 1) > 1:
        out["processes"] = inv["processes"]
        for key in ("cores_per_process", "groups_trained_by_process_0"):
            if key in inv:
                out[key] = inv[key]
    return out


def command(argv: list[str]) -> str:
    """The invocation as a record shows it: without the note (recorded apart) and the output
    path."""
    shown, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in ("--note", "--json"):
            skip = True
        elif not a.startswith(("--note=", "--json=")):
            shown.append(a)
    return " ".join(["python -m jaxmlp.bench.sweep", *shown])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m jaxmlp.bench.sweep",
                                description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=45000, help="training examples per epoch")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--members", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--solo", type=int, default=4, help="members for the group-vs-solo check")
    p.add_argument("--rounds", type=int, default=7,
                   help="interleaved rounds (one epoch per side) for group vs solo and Keras")
    p.add_argument("--keras", action="store_true", help="also time Keras 3 fit (JAX backend)")
    p.add_argument("--json", help="write the numbers to this JSON file")
    p.add_argument("--whole-sweep", metavar="RESULTS_JSON",
                   help="record the wall time of a finished sweep instead of benchmarking")
    p.add_argument("--note", help="recorded with the numbers, e.g. what else ran on the machine")
    p.add_argument("--cache", choices=("cold", "warm"),
                   help="with --whole-sweep: whether JAX's persistent compilation cache was "
                   "empty (cold) or held the sweep's programs (warm)")
    p.add_argument("--process-wall", type=float, metavar="S",
                   help="with --whole-sweep: the process's wall time measured outside it "
                   "(interpreter start and imports included)")
    p.add_argument("--process-exit", type=float, metavar="S",
                   help="with --whole-sweep: seconds from the results.json write to the "
                   "process's end (interpreter teardown), measured outside it")
    p.add_argument("--label", help="with --whole-sweep: what sets this record apart from "
                   "another of the same sweep and machine (shown in its heading)")
    p.add_argument("--code", metavar="REV",
                   help="the commit the timed code was at (default: this checkout's "
                   "`git describe --always --dirty`)")
    args = p.parse_args(argv)
    for name in ("n", "repeats", "rounds", "solo"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    code = args.code or code_version()
    if args.whole_sweep:
        out = whole_sweep(args.whole_sweep)
        if args.note:
            out["note"] = args.note
        if args.cache:
            out["compile_cache"] = args.cache
        if args.process_wall is not None:
            out["process_wall_time_s"] = args.process_wall
        if args.process_exit is not None:
            out["process_exit_s"] = args.process_exit
        if code:
            out["code"] = code
        if args.label:
            out["label"] = args.label
        print(f"{out['experiment']}: {out['runs']} runs x seeds = {out['members']} members, "
              f"{out['epochs']} epochs, {out['groups']} groups: {out['wall_time_s']:.1f} s on "
              f"{out['environment']['device']}")
        for key, label in (("time_split_s", "time split"), ("cpu_s", "CPU by thread")):
            if key in out:
                print(f"{label} (s): " + ", ".join(f"{k} {v:.1f}" for k, v in out[key].items()))
        if args.json:
            atomic.write_json(args.json, out)
        return 0
    data = synthetic_cifar(args.n)
    env = records.environment("group")
    print(f"device: {env['device']} ({env['platform']}), jax {env['jax']}, n={args.n}, "
          f"batch {args.batch}", flush=True)
    out = {"created": records.now(), "benchmark": "sweep",
           "command": command(sys.argv[1:] if argv is None else argv),
           "n_train": args.n, "batch": args.batch, "member_axis": group.member_axis(),
           "environment": env}
    if code:
        out["code"] = code
    out["scaling"] = scaling(data, args.members, args.batch, args.repeats)

    runs = members(args.solo, args.batch)
    sides = {"group": jaxmlp_epochs(runs, data),
             **{f"solo{i}": jaxmlp_epochs([r], data) for i, r in enumerate(runs)}}
    if args.keras:
        sides["keras"] = keras_epochs(combined_run(args.batch), data)
    times = {side: [] for side in sides}
    for _ in range(args.rounds):  # the sides take turns, one epoch each
        for side, more in sides.items():
            times[side] += more(1)
    med = {side: statistics.median(t) for side, t in times.items()}
    grouped, solo = med["group"], sum(med[f"solo{i}"] for i in range(len(runs)))
    out["group_vs_solo"] = {"members": args.solo, "group_epoch_s": grouped,
                            "solo_epochs_s": solo, "speedup": solo / grouped,
                            "rounds": args.rounds}
    print(f"{args.solo} members: one group program {grouped:.3f} s/epoch, one by one "
          f"{solo:.3f} s/epoch, speedup {solo / grouped:.2f}x", flush=True)

    if args.keras:
        # Ours: the first solo member, which is the combined run itself (seed 0, Adam 1e-3
        # x 0.5): the learning rate changes no cost.
        ours, theirs = med["solo0"], med["keras"]
        out["keras"] = {"jaxmlp_epoch_s": ours, "keras_epoch_s": theirs,
                        "speedup": theirs / ours, "rounds": args.rounds}
        print(f"jaxmlp {ours:.3f} s/epoch vs Keras 3 fit (JAX backend) {theirs:.3f} s/epoch: "
              f"{theirs / ours:.2f}x faster", flush=True)
    if args.note:
        out["note"] = args.note
    if args.json:
        atomic.write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
