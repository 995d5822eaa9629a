"""Benchmark: where one epoch's time goes, op by op, from a JAX profiler trace.

    python -m jaxmlp.bench.epoch_profile [--batch 64 128] [--n 45000] [--top 12] [--json PATH]

The model is TA8's combined run (jaxmlp/bench/epoch_floor.combined_run), one member, on
synthetic CIFAR-shaped data. After a warm-up epoch, one epoch runs under `jax.profiler.trace`;
the trace's per-op durations are summed by XLA instruction name and each instruction is put in
a category read from the compiled HLO (its opcode, what its fused computation contains, its
output shape):
- matmul: a dot, or a fusion around one;
- parameter-sized update: an elementwise fusion whose output has a weight's shape (the
  optimizer's moments and the new weights; the gradient's L2 term is fused in);
- reduction: a fusion that reduces (bias and BatchNorm gradients, losses, BatchNorm statistics);
- batch elementwise: activations, BatchNorm, dropout masks (an output with the batch's rows);
- dropout masks ahead: the masks of every full batch of the epoch, drawn before the loop over
  batches (on the CPU; `jaxmlp.epoch.make_epoch`'s masks_ahead);
- batch gather: the rows of the shuffled batch taken from the training set;
- copy, sort (the epoch's permutation), loop (a while loop's own kernels) and other.
Prints the table per batch size, the top instructions, and how much of the epoch's wall time
the instructions cover (the rest is the runtime between them and the profiler itself).
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import re
import sys
import tempfile
import time

import jax

from jaxmlp import atomic, records
from jaxmlp.bench import code_version
from jaxmlp.bench.epoch_floor import combined_run, synthetic_cifar
from jaxmlp.group import build_group, init_group

CATEGORIES = ("matmul", "parameter-sized update", "reduction", "batch elementwise",
              "dropout masks ahead", "batch gather", "copy", "sort", "loop", "other")

_INSTRUCTION = re.compile(r"^\s+(?:ROOT )?%([\w.\-]+) = (.*)$")
_COMPUTATION = re.compile(r"^(?:ENTRY )?%?([\w.\-]+) .*\{$")


def _shape_and_rest(text: str) -> tuple[str, str]:
    """Split 'SHAPE opcode(...)...' where SHAPE may be a parenthesised tuple."""
    if not text.startswith("("):
        shape, _, rest = text.partition(" ")
        return shape, rest
    depth = 0
    for i, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth == 0:
            return text[:i + 1], text[i + 2:]
    return text, ""


def hlo_instructions(text: str) -> dict[str, dict]:
    """{instruction name: {opcode, shape, body}} of a compiled module's text, `body` being the
    text of the computation a fusion calls ('' otherwise)."""
    bodies, current, lines = {}, None, []
    for line in text.splitlines():
        if current is None and (m := _COMPUTATION.match(line)) and not line.startswith(" "):
            current, lines = m.group(1), []
        elif current is not None and line.startswith("}"):
            bodies[current], current = "\n".join(lines), None
        elif current is not None:
            lines.append(line)
    out = {}
    for line in text.splitlines():
        if (m := _INSTRUCTION.match(line)):
            shape, rest = _shape_and_rest(m.group(2))
            called = re.search(r"calls=%([\w.\-]+)", rest)
            out[m.group(1)] = {"opcode": rest.partition("(")[0], "shape": shape,
                               "body": bodies.get(called.group(1), "") if called else ""}
    return out


def _dims(shape: str) -> tuple[int, ...]:
    m = re.match(r"\(?\w+\[([\d,]*)\]", shape)
    return tuple(int(d) for d in m.group(1).split(",") if d) if m else ()


def category(ins: dict, weight_shapes: set, batch: int) -> str:
    op, body, dims = ins["opcode"], ins["body"], _dims(ins["shape"])
    if op == "dot" or " dot(" in body:
        return "matmul"
    if op == "gather" or " gather(" in body:
        return "batch gather"
    if op in ("copy", "sort", "while"):
        return {"while": "loop"}.get(op, op)
    if " reduce(" in body or op == "reduce":
        return "reduction"
    if op == "fusion" and dims in weight_shapes:
        return "parameter-sized update"
    if ins["shape"].startswith("pred[") and len(dims) == 3 and dims[1] == batch:
        return "dropout masks ahead"
    if dims and dims[0] == batch:
        return "batch elementwise"
    return "other"


def trace_ops(fn, *args, directory: str) -> tuple[dict[str, float], float]:
    """({trace event name: total µs}, wall seconds) of one traced call `fn(*args)`."""
    with jax.profiler.trace(directory, create_perfetto_trace=True):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        wall = time.perf_counter() - start
    path = sorted(glob.glob(f"{directory}/**/*perfetto_trace.json.gz", recursive=True))[-1]
    with gzip.open(path) as f:
        doc = json.load(f)
    events = doc["traceEvents"] if isinstance(doc, dict) else doc
    total: dict[str, float] = collections.Counter()
    for e in events:
        if e.get("ph") == "X":
            total[e["name"]] += e.get("dur", 0)
    return total, wall


def profile(batch: int, n: int, top: int) -> dict:
    data = synthetic_cifar(n)
    run = combined_run(batch)
    group = build_group([run], data)
    state = init_group(group)
    step = group.step.lower(state, data).compile()  # the program traced is the one read
    instructions = hlo_instructions(step.as_text())
    state, _ = step(state, data)  # warm-up epoch
    jax.block_until_ready(state)
    weight_shapes = {tuple(a.shape) for a in jax.tree.leaves(state.params)}
    weight_shapes |= {s[1:] for s in weight_shapes}  # with and without the member axis
    with tempfile.TemporaryDirectory() as tmp:
        times, wall = trace_ops(step, state, data, directory=tmp)
    ops = {k: v / 1e6 for k, v in times.items() if k in instructions}
    cats = {k: category(instructions[k], weight_shapes, batch) for k in ops}
    by_cat = dict.fromkeys(CATEGORIES, 0.0)
    for name, s in ops.items():
        by_cat[cats[name]] += s
    covered = sum(ops.values())
    steps = -(-n // batch)
    return {"batch": batch, "epoch_s": wall, "steps": steps, "ops_s": covered,
            "categories_s": by_cat,
            "top": [{"op": k, "s": v, "category": cats[k], "shape": instructions[k]["shape"]}
                    for k, v in sorted(ops.items(), key=lambda kv: -kv[1])[:top]]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m jaxmlp.bench.epoch_profile",
                                description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, nargs="+", default=[64, 128])
    p.add_argument("--n", type=int, default=45000, help="training examples per epoch")
    p.add_argument("--top", type=int, default=12, help="instructions listed per batch size")
    p.add_argument("--json", help="also write the numbers to this JSON file")
    p.add_argument("--note", help="recorded with the numbers, e.g. what else ran on the machine")
    args = p.parse_args(argv)
    if min(args.batch) < 1 or args.n < max(args.batch) or args.top < 0:
        p.error(f"need batch sizes >= 1, --n >= the largest batch and --top >= 0; got "
                f"--batch {args.batch} --n {args.n} --top {args.top}")
    rows = [profile(b, args.n, args.top) for b in args.batch]
    out = {"created": records.now(), "benchmark": "epoch_profile", "n_train": args.n,
           "environment": records.environment("solo"), "code": code_version(), "rows": rows}
    if args.note:
        out["note"] = args.note
    env = out["environment"]
    print(f"device: {env['device']} ({env['platform']}), jax {env['jax']}")
    for r in rows:
        print(f"\nbatch {r['batch']}: traced epoch {r['epoch_s']:.3f} s, {r['steps']} steps; "
              f"XLA instructions {r['ops_s']:.3f} s ({r['ops_s'] / r['epoch_s']:.0%} of it)")
        for cat, s in sorted(r["categories_s"].items(), key=lambda kv: -kv[1]):
            if s:
                print(f"  {cat:<24} {s:7.3f} s  {s / r['ops_s']:6.1%}  "
                      f"{s / r['steps'] * 1e3:6.3f} ms/step")
        for t in r["top"]:
            print(f"    {t['op']:<28} {t['s']:7.3f} s  {t['category']:<24} {t['shape']}")
    if args.json:
        atomic.write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
