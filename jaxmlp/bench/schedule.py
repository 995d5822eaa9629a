"""Where a sweep's train steps go: its groups, one after another, from its committed results.

    python -m jaxmlp.bench.schedule [--experiments ta8 p8d] [--results DIR] [--json PATH]

For each experiment, the groups its runner forms on an accelerator (`jaxmlp.runner.groups` for
vmapped members: one compiled program each, trained one after another; the CPU splits some of
them, `jaxmlp.group.group_key`) and, from its committed `DIR/<name>/results.json`, how many
epochs each member ran. A group trains until its last member stops, so it runs (its longest
member's epochs) x (steps per epoch) train steps in sequence. Vmapped (on an accelerator) every
member computes every one of those epochs, a stopped member under a mask; looped over (the CPU,
`jaxmlp.group.member_axis`) a stopped member is skipped.

Prints, per group: batch, members, epoch budget, the longest member's epochs, the sequential
steps, the member-epochs run and those a vmapped group computes under a mask; then the totals,
and the sequential steps if every group that shares a batch size and an epoch budget were one
program. On an accelerator a small group's step costs about the same whatever its members (its
time goes to launching kernels: `jaxmlp.bench.roofline`), so a sweep's train time there follows
its sequential steps more than its member-epochs. Each group also gets its model's trainable
parameters and the bytes its optimizer's update must read and write per parameter and step
(`update_bytes_per_param`), and each experiment the total over the steps every member computes
when vmapped: the memory traffic of the weight updates alone, which no arrangement of programs
removes. Counts only: nothing is timed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
from pathlib import Path

from jaxmlp import atomic, records, runner
from jaxmlp.bench import code_version
from jaxmlp.config import OptimConfig

EXPERIMENTS = ("ta8", "p8d")


def update_bytes_per_param(cfg: OptimConfig) -> int:
    """Bytes one float32 update step must move per parameter when nothing stays in cache: it
    reads the weight, its gradient and each weight-sized state array (Adam's m and v; SGD's
    momentum trace; RMSprop's mean square) and writes the weight and each state array back:
    4 (3 + 2k) for k state arrays. Adam/AdamW 28, RMSprop and SGD with momentum 20, SGD 12."""
    k = {"adam": 2, "adamw": 2, "rmsprop": 1}.get(cfg.name, 1 if cfg.momentum else 0)
    return 4 * (3 + 2 * k)


def schedule(exp, results: dict) -> dict:
    """The groups of experiment `exp` (a `cli.Experiment`) with the epochs its committed
    `results` (results.json) record for each member."""
    from jaxmlp.experiments import cli

    args = cli.parse(exp, [])  # the main job's runs and seeds, as its command line selects them
    ran = {(r["name"], s["seed"]): s["epochs_run"] for r in results["runs"]
           for s in r["seeds"]}
    n_train = results["dataset"]["n_train"]
    items = cli.experiment_members(exp, args, cli.select(exp, args))
    missing = [f"{m.run.name} seed {m.seed}" for m in items if (m.run.name, m.seed) not in ran]
    if missing:
        raise ValueError(f"{exp.name}: results.json has no epochs for {', '.join(missing[:5])}"
                         f"{' ...' if len(missing) > 5 else ''}; train them first")
    rows = []
    for group in runner.groups(items, "group", "vmap"):
        first = group[0].run
        epochs = [ran[m.run.name, m.seed] for m in group]
        steps = math.ceil(n_train / first.train.batch_size)
        rows.append({"group": runner.group_id(group), "runs": sorted({m.run.name for m in group}),
                     "batch": first.train.batch_size, "members": len(group),
                     "epoch_budget": first.train.epochs, "longest": max(epochs),
                     "steps_per_epoch": steps, "sequential_steps": max(epochs) * steps,
                     "member_epochs": sum(epochs),
                     "masked_member_epochs": max(epochs) * len(group) - sum(epochs),
                     "vmapped_member_steps": max(epochs) * len(group) * steps,
                     "trainable_params": records.count_params(first.model)["trainable"],
                     "update_bytes_per_param": max(update_bytes_per_param(m.run.optim)
                                                   for m in group)})
    merged: dict[tuple, int] = {}
    for r in rows:
        key = (r["batch"], r["epoch_budget"])
        merged[key] = max(merged.get(key, 0), r["sequential_steps"])
    return {"experiment": exp.name, "n_train": n_train, "groups": rows,
            "sequential_steps": sum(r["sequential_steps"] for r in rows),
            "member_epochs": sum(r["member_epochs"] for r in rows),
            "masked_member_epochs": sum(r["masked_member_epochs"] for r in rows),
            "vmapped_member_steps": sum(r["vmapped_member_steps"] for r in rows),
            "vmapped_update_bytes": sum(r["vmapped_member_steps"] * r["trainable_params"]
                                        * r["update_bytes_per_param"] for r in rows),
            "sequential_steps_one_program_per_batch_and_budget": sum(merged.values()),
            "programs_one_per_batch_and_budget": len(merged)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m jaxmlp.bench.schedule",
                                description=__doc__.split("\n")[0])
    p.add_argument("--experiments", nargs="+", default=list(EXPERIMENTS), choices=EXPERIMENTS)
    p.add_argument("--results", default="experiments",
                   help="the folder holding <name>/results.json (default: experiments)")
    p.add_argument("--json", help="also write the counts to this JSON file")
    args = p.parse_args(argv)
    out = {"created": records.now(), "benchmark": "schedule", "code": code_version(),
           "experiments": []}
    for name in args.experiments:
        path = Path(args.results) / name / "results.json"
        try:
            results = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            print(f"error: cannot read {path}: {e}", file=sys.stderr)
            return 2
        exp = importlib.import_module(f"jaxmlp.experiments.{name}").EXPERIMENT
        try:
            s = schedule(exp, results)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        out["experiments"].append(s)
        print(f"{name}: {len(s['groups'])} groups (programs), trained one after another; "
              f"{s['n_train']} training examples")
        print("  batch  members  budget  longest  sequential steps  member-epochs  masked  runs")
        for r in s["groups"]:
            runs = ", ".join(r["runs"])
            print(f"  {r['batch']:5d}  {r['members']:7d}  {r['epoch_budget']:6d}  "
                  f"{r['longest']:7d}  {r['sequential_steps']:16,d}  {r['member_epochs']:13,d}"
                  f"  {r['masked_member_epochs']:6,d}  {runs[:60]}")
        print(f"  sequential steps: {s['sequential_steps']:,}; member-epochs run: "
              f"{s['member_epochs']:,}; computed under a mask when vmapped: "
              f"{s['masked_member_epochs']:,}")
        print(f"  one program per batch size and epoch budget "
              f"({s['programs_one_per_batch_and_budget']} programs): "
              f"{s['sequential_steps_one_program_per_batch_and_budget']:,} sequential steps")
        print(f"  vmapped, every member computes {s['vmapped_member_steps']:,} steps; their "
              f"weight updates alone move {s['vmapped_update_bytes'] / 1e12:.2f} TB",
              flush=True)
    if args.json:
        atomic.write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
