"""Probe: does one loop over batches that steps several groups cost less than a loop per group?

    python -m jaxmlp.bench.merge_probe [--experiment ta8] [--batch 64] [--epochs-budget 20]
                                       [--n-train 45000] [--rounds 3] [--max-groups K]
                                       [--json PATH]

A sweep trains its groups one after another, each its own compiled loop over batches, so its
train time on an accelerator follows its serial steps (`jaxmlp.bench.schedule`: 246,380 for
TA8, 105,580 if every group that shares a batch size and an epoch budget were one program).
Merging pays only if a step of the merged program costs less than the steps of its parts: on
a GPU a small group's step is mostly kernel launches and the loop's own round trip, which a
merged step pays once per iteration instead of once per group; on a CPU the cores are busy
either way. This measures that before anything is built.

The groups are the experiment's own (`jaxmlp.runner.groups` over its main job's members) that
train with `--batch` for `--epochs-budget` epochs: their models as defined
(`jaxmlp.models.build`) and each group's optimizer (`jaxmlp.optim.make` of its first run, for
every member), members vmapped (`lax.map` on the CPU, as
`jaxmlp.group.member_axis` picks), on synthetic data of the dataset's shape. The step is the
plain one (forward, cross-entropy with the L2 term, backward, the optimizer's update): no
dropout masks, no hooks, no per-epoch evaluation, which are the same in both arrangements.
Timed: each group's epoch in its own program ("apart", summed over the groups), and one epoch
of the program whose loop steps every group ("merged"), in `--rounds` alternating rounds; the
first call of each program (compilation) is timed apart. Both arrangements compute the same
numbers (checked leaf by leaf after the first epoch, to float32 rounding).

Prints one line per program and the ratio merged / apart per round; a JSON record with --json.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxmlp import atomic, models, optim, records, runner
from jaxmlp.bench import code_version
from jaxmlp.group import member_axis


def probe_groups(experiment: str, batch: int, budget: int) -> list[list]:
    """The experiment's groups (main job) that train with `batch` for `budget` epochs."""
    from jaxmlp.experiments import cli

    exp = importlib.import_module(f"jaxmlp.experiments.{experiment}").EXPERIMENT
    args = cli.parse(exp, [])
    items = cli.experiment_members(exp, args, cli.select(exp, args))
    return [g for g in runner.groups(items, "group")
            if g[0].run.train.batch_size == batch and g[0].run.train.epochs == budget]


def group_parts(group, axis: str):
    """(initial state, step) of one group: state = (params, batch_stats, opt_state, l2) stacked
    over members; step(state, x, y) one train step of every member on its own batch."""
    run = group[0].run
    model = dataclasses.replace(run.model, dropout=0.0)  # no masks: the same in both programs
    fns, tx = models.build(model), optim.make(run.optim)
    l2 = jnp.asarray([list(models.l2_coefs(m.run.model)) for m in group], jnp.float32)
    keys = jax.random.split(jax.random.key(0), len(group))
    params, stats = jax.vmap(fns.init)(keys)
    opt = jax.vmap(tx.init)(params)

    def one(state, x, y):
        p, s, o, c = state

        def loss_fn(p, s):
            logits, s = fns.apply(p, s, x, train=True, dropout_rates=None, key=None)
            return fns.loss(logits, y).mean() + models.l2_penalty(p, c), s

        (loss, s), grads = jax.value_and_grad(loss_fn, has_aux=True)(p, s)
        updates, o = tx.update(grads, o, p)
        return (optax.apply_updates(p, updates), s, o, c), loss

    def step(state, x, y):  # x: (members, batch, features), y: (members, batch)
        if axis == "vmap":
            return jax.vmap(one)(state, x, y)
        return jax.lax.map(lambda a: one(*a), (state, x, y))

    return (params, stats, opt, l2), step


def make_epoch(steps, n_train: int, batch: int, members: list[int]):
    """One epoch of the given groups' steps in one loop over batches. `keys[g]` seeds group g's
    members' permutations of the data, so a group reads the same batches apart or merged."""
    n_batches = n_train // batch

    def epoch(states, x_all, y_all, keys):
        perms = [jax.vmap(lambda k: jax.random.permutation(k, n_train)[:n_batches * batch])(
            jax.random.split(keys[g], m)).reshape(m, n_batches, batch)
            for g, m in enumerate(members)]

        def body(states, t):
            out, losses = [], []
            for step, state, perm in zip(steps, states, perms):
                idx = perm[:, t]
                state, loss = step(state, x_all[idx], y_all[idx])
                out.append(state)
                losses.append(loss)
            return tuple(out), tuple(losses)

        states, losses = jax.lax.scan(body, tuple(states), jnp.arange(n_batches))
        return states, tuple(jnp.mean(v) for v in losses)

    return jax.jit(epoch)


def timed(fn, *args):
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - start


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m jaxmlp.bench.merge_probe",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--experiment", default="ta8", choices=("ta8", "p8d"))
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--epochs-budget", type=int, default=20)
    p.add_argument("--n-train", type=int, default=45_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--max-groups", type=int, default=None,
                   help="only the first K of those groups (a short run on a CPU)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    for name in ("batch", "epochs_budget", "n_train", "rounds"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} {getattr(args, name)}: at least 1")
    if args.max_groups is not None and args.max_groups < 2:
        p.error(f"--max-groups {args.max_groups}: at least 2 (the probe compares groups)")
    if args.n_train < args.batch:
        p.error(f"--n-train {args.n_train}: at least one batch of {args.batch}")

    groups = probe_groups(args.experiment, args.batch, args.epochs_budget)[:args.max_groups]
    if len(groups) < 2:
        p.error(f"{args.experiment}: {len(groups)} group(s) train with batch {args.batch} for "
                f"{args.epochs_budget} epochs; the probe needs two or more")
    axis = member_axis()
    parts = [group_parts(g, axis) for g in groups]
    states = [s for s, _ in parts]
    members = [len(g) for g in groups]
    features = groups[0][0].run.model.input_dim
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(size=(args.n_train, features)).astype(np.float32))
    y = jnp.asarray(rng.integers(0, groups[0][0].run.model.num_classes, args.n_train,
                                 dtype=np.int32))
    keys = jax.random.split(jax.random.key(1), len(groups))
    apart = [make_epoch([step], args.n_train, args.batch, [m])
             for (_, step), m in zip(parts, members)]
    merged = make_epoch([step for _, step in parts], args.n_train, args.batch, members)

    # First calls (compile, then one epoch), and the numbers they give: the same either way.
    first_apart, compile_apart = [], []
    for g, (fn, state) in enumerate(zip(apart, states)):
        out, seconds = timed(fn, [state], x, y, keys[g:g + 1])
        first_apart.append(out[0][0])
        compile_apart.append(seconds)
    out, compile_merged = timed(merged, states, x, y, keys)
    same = all(np.allclose(a, b, rtol=2e-5, atol=1e-6)
               for s1, s2 in zip(first_apart, out[0])
               for a, b in zip(jax.tree.leaves(s1), jax.tree.leaves(s2)))

    rounds = []
    for _ in range(args.rounds):
        t_apart = [timed(fn, [state], x, y, keys[g:g + 1])[1]
                   for g, (fn, state) in enumerate(zip(apart, states))]
        t_merged = timed(merged, states, x, y, keys)[1]
        rounds.append({"apart_s": t_apart, "merged_s": t_merged})
    n_batches = args.n_train // args.batch
    ratios = [r["merged_s"] / sum(r["apart_s"]) for r in rounds]
    apart_med = [statistics.median(r["apart_s"][g] for r in rounds) for g in range(len(groups))]
    merged_med = statistics.median(r["merged_s"] for r in rounds)
    record = {
        "created": records.now(), "benchmark": "merge_probe", "code": code_version(),
        "environment": {**records.environment("group"), "member_axis": axis},
        "experiment": args.experiment, "batch": args.batch, "epochs_budget": args.epochs_budget,
        "n_train": args.n_train, "steps_per_epoch": n_batches, "rounds": args.rounds,
        "groups": [{"group": runner.group_id(g), "runs": sorted({m.run.name for m in g}),
                    "members": len(g), "compile_and_first_epoch_s": c, "epoch_s": t}
                   for g, c, t in zip(groups, compile_apart, apart_med)],
        "merged": {"compile_and_first_epoch_s": compile_merged, "epoch_s": merged_med},
        "apart_epoch_s": sum(apart_med), "ratios": ratios,
        "ratio": statistics.median(ratios), "same_numbers": bool(same),
    }
    for row in record["groups"]:
        print(f"apart  {row['group']:<40} {row['members']:>3} members  first call "
              f"{row['compile_and_first_epoch_s']:7.2f} s  epoch {row['epoch_s']:.4f} s "
              f"({row['epoch_s'] / n_batches * 1e6:.0f} us a step)")
    print(f"apart, summed over {len(groups)} programs: epoch {record['apart_epoch_s']:.4f} s "
          f"({len(groups) * n_batches} serial steps)")
    print(f"merged, one program: first call {compile_merged:.2f} s  epoch {merged_med:.4f} s "
          f"({n_batches} serial steps, {merged_med / n_batches * 1e6:.0f} us a step)")
    print(f"merged / apart: {record['ratio']:.3f} (rounds: "
          f"{', '.join(f'{r:.3f}' for r in ratios)}); same numbers: {same}")
    if args.json:
        atomic.write_json(args.json, record)
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
