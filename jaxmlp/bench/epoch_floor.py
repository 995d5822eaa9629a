"""Benchmark: epoch time of the TA8 combined model against this machine's matmul floor.

    python -m jaxmlp.bench.epoch_floor [--batch 128 64] [--rounds 15] [--repeats 1] [--n 45000]
                                       [--keras] [--json PATH]

The model is TA8's combined run as jaxmlp/experiments/ta8.py defines it. Prints, per batch
size, the median epoch time after a warm-up epoch, examples/s, achieved GFLOP/s (the matrix
products the traced epoch program contains, `jaxmlp.bench.dot_flops`: forward, weight
gradients, input gradients of every layer but the first, and the epoch's evaluation), the
machine's measured f32 matmul GFLOP/s on the model's largest product (the best of timed blocks
before and after the epochs; on this kind of CPU it is the large-matmul peak of
`jaxmlp.bench.roofline`), and `epoch/floor ratio (batch B): R` where floor = FLOPs / matmul rate:
the epoch if every product ran at that rate and nothing else took any time. On the CPU it also
times, interleaved, the same epoch with each of jaxmlp's CPU-specific choices undone alone
(`CPU_ABLATIONS`; each trains bit for bit as ours): the first layer's kernel gradient x^T g
formed as autodiff forms it (x read transposed by the product) instead of `models.data_matmul`
(x^T laid out first), and the dropout masks drawn inside each train step instead of all before
the loop over batches (`epoch.make_epoch`'s masks_ahead).

`--keras` also times Keras 3 `fit` (JAX backend) on the same model (built from the same run
definition by jaxmlp.bench.keras_replica), data and batch, in this process, interleaved with ours.
It prints `Keras/jaxmlp epoch time (batch B): R` from the medians of all the timed epochs, and
with rounds of one epoch per side, the same ratio within each round: its median and quartiles
(a slow stretch of the machine falls on both sides of a round).

Every side (ours, each CPU choice undone, Keras) is compiled and warmed up by one epoch, then
timed in `--rounds` rounds of `--repeats` epochs per side, the sides taking turns. The default,
15 rounds of 1 epoch, lets a slow stretch of a shared machine (seconds long here) fall on every
side alike rather than on one side's whole block; medians then drop it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np

from jaxmlp import atomic, epoch, models, records
from jaxmlp import config as C
from jaxmlp.bench import code_version, dot_flops, keras_replica, per_round
from jaxmlp.epoch import Data
from jaxmlp.experiments import ta8
from jaxmlp.group import build_group, init_group


def combined_run(batch_size: int, epochs: int = 1000) -> C.RunConfig:
    """TA8's combined run (its one definition, jaxmlp/experiments/ta8.py) at `batch_size`."""
    run = next(r for r in ta8.PART1 if r.name == "combined")
    return replace(run, name="bench", model=replace(run.model, input_dim=C.INPUT_DIMS["cifar10"]),
                   train=replace(run.train, epochs=epochs, batch_size=batch_size))


def dense_weights(cfg: C.ModelConfig) -> int:
    widths = (cfg.input_dim, *cfg.hidden, cfg.num_classes)
    return sum(a * b for a, b in zip(widths, widths[1:]))


def epoch_flops(cfg: C.ModelConfig, n_train: int, n_eval: int) -> float:
    """FLOPs of the dense layers' matrix products in an epoch of `n_train` trained and `n_eval`
    evaluated examples, as the compiled epoch runs them: per trained example 2w forward, 2w for
    the weight gradients and 2(w - w1) for the gradients with respect to each layer's input but
    the first's (the first layer's input is data: JAX never forms that product); 2w per
    evaluated example. w = dense weights, w1 = the first layer's. TA8's model: 0.68 of the
    textbook 6w. `jaxmlp.bench.dot_flops` on the traced epoch gives the same count (tested)."""
    w = dense_weights(cfg)
    w1 = cfg.input_dim * cfg.hidden[0]
    return (6 * w - 2 * w1) * n_train + 2 * w * n_eval


# What a record's FLOPs count, so that a reader (and the report) can tell them from records
# before 2026-11-28, which counted 6 x dense weights per trained example.
FLOP_COUNT = "executed matrix products (jaxmlp.bench.dot_flops), evaluation included"

SYNTHETIC_HELD_OUT = 1000  # validation and test examples of synthetic_cifar, each


def synthetic_cifar(n: int, seed: int = 0, features: int = 3072) -> Data:
    rng = np.random.default_rng(seed)
    v = SYNTHETIC_HELD_OUT
    x = rng.random((n + 2 * v, features), dtype=np.float32)
    y = rng.integers(0, 10, n + 2 * v).astype(np.int32)
    return Data(*(jnp.asarray(a) for a in (x[:n], y[:n], x[n:n + v], y[n:n + v],
                                                 x[n + v:], y[n + v:])))


def matmul_gflops(batch: int, blocks: int = 5, seconds: float = 0.4) -> float:
    """The machine's best f32 matmul rate on the model's largest layer shape (batch x 3072 x
    256): the fastest of `blocks` timed blocks of about `seconds` each. The best block, not the
    mean, so that the floor is what this machine can do, whatever else it was doing meanwhile.
    """
    a = jnp.ones((batch, 3072), jnp.float32)
    b = jnp.ones((3072, 256), jnp.float32)
    f = jax.jit(lambda a, b: a @ b)
    return best_rate(f, (a, b), 2 * batch * 3072 * 256, blocks=blocks, seconds=seconds) / 1e9


def plain_first_layer():
    """Build models whose first layer forms its kernel gradient as autodiff does (x read
    transposed by the product) instead of `models.data_matmul`: the before of that change."""
    return mock.patch.object(models, "first_layer_dot", jax.lax.dot_general)


def masks_in_step():
    """Build epochs that draw each step's dropout masks inside the step instead of all of them
    before the loop over batches (`epoch.make_epoch`'s masks_ahead): the before of that change."""
    return mock.patch.object(epoch, "masks_ahead_default", lambda mesh=None: False)


# What jaxmlp does differently on the CPU, each undone alone: {row key: (context to build the
# epoch in, what it then does)}. Each is timed beside ours, interleaved; each trains bit for bit
# as ours does.
CPU_ABLATIONS = {
    "plain_first_layer": (plain_first_layer, "x read transposed by the first layer's kernel "
                                             "gradient instead of x^T laid out first"),
    "masks_in_step": (masks_in_step, "the dropout masks drawn inside each step instead of "
                                     "before the loop"),
}


def best_rate(f, args, flops: float, *, blocks: int, seconds: float,
              calibrate: float = 0.05) -> float:
    """FLOP/s of `f(*args)` (`flops` each call): the best of `blocks` timed blocks of about
    `seconds` each, the block length calibrated over `calibrate` seconds after a warm-up."""
    f(*args).block_until_ready()
    start, reps = time.perf_counter(), 0
    while time.perf_counter() - start < calibrate:
        f(*args).block_until_ready()
        reps += 1
    reps = max(1, int(reps * seconds / calibrate))
    best = 0.0
    for _ in range(blocks):
        start = time.perf_counter()
        for _ in range(reps):
            out = f(*args)
        out.block_until_ready()
        best = max(best, flops * reps / (time.perf_counter() - start))
    return best


def epoch_times(runs: list[C.RunConfig], data: Data, repeats: int) -> list[float]:
    """Wall time of `repeats` epochs of `runs` as one group, after a warm-up (compile) epoch."""
    return jaxmlp_epochs(runs, data)(repeats)


def jaxmlp_epochs(runs: list[C.RunConfig], data: Data):
    """`more(k)`: the wall times of k more epochs of `runs` as one group (compiled and warmed
    up by one epoch first); `more.flops`: the matrix-product FLOPs of one such epoch, counted
    on the traced program (`jaxmlp.bench.dot_flops`)."""
    group = build_group(runs, data)
    state = init_group(group)
    flops = dot_flops(jax.make_jaxpr(group.step)(state, data).jaxpr)
    state, _ = group.step(state, data)
    jax.block_until_ready(state)

    def more(k: int) -> list[float]:
        nonlocal state
        times = []
        for _ in range(k):
            start = time.perf_counter()
            state, _ = group.step(state, data)
            jax.block_until_ready(state)
            times.append(time.perf_counter() - start)
        return times

    more.flops = flops
    return more


def keras_epochs(run: C.RunConfig, data: Data):
    """`more(k)`: the wall times of k more epochs of Keras 3 `fit` (JAX backend) on `run`'s
    model (jaxmlp.bench.keras_replica, the same definition), data and batch; one warm-up
    (compile) epoch first. Each call is one `fit(epochs=k)`; the model keeps training."""
    keras = keras_replica.import_keras()
    model = keras_replica.compiled(run)
    x, y = np.asarray(data.x_train), np.asarray(data.y_train)
    val = (np.asarray(data.x_val), np.asarray(data.y_val))
    times: list[float] = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    def more(k: int) -> list[float]:
        del times[:]
        model.fit(x, y, batch_size=run.train.batch_size, epochs=k, validation_data=val,
                  verbose=0, callbacks=[Timer()])
        return list(times)

    more(1)
    return more


def bench(batches, repeats: int, n: int, rounds: int = 1, keras: bool = False) -> dict:
    data = synthetic_cifar(n)
    cpu = jax.default_backend() == "cpu"  # where the first layer uses models.data_matmul
    rows = []
    for b in batches:
        run = combined_run(b)
        before = matmul_gflops(b)
        sides = {"ours": jaxmlp_epochs([run], data)}
        for name, (undone, _) in (CPU_ABLATIONS.items() if cpu else ()):
            with undone():
                # Built here: its program keeps the change undone for every later call.
                sides[name] = jaxmlp_epochs([run], data)
        if keras:
            sides["keras"] = keras_epochs(run, data)
        times = {side: [] for side in sides}
        for _ in range(rounds):  # the sides take turns, so a slow stretch falls on every side
            for side, more in sides.items():
                times[side] += more(repeats)
        t = statistics.median(times["ours"])
        flops = sides["ours"].flops
        rate = max(before, matmul_gflops(b))  # measured on both sides of the epochs
        row = {"batch": b, "epoch_s": t, "examples_per_s": n / t, "epoch_gflop": flops / 1e9,
               "achieved_gflops": flops / t / 1e9, "matmul_gflops": rate,
               "floor_s": flops / (rate * 1e9), "ratio": t / (flops / (rate * 1e9)),
               "epochs_s": times["ours"]}
        for name in (CPU_ABLATIONS if cpu else ()):
            p = statistics.median(times[name])
            row[name] = {"epoch_s": p, "epochs_s": times[name], "speedup": p / t}
        if keras:
            k = statistics.median(times["keras"])
            row["keras"] = {"epoch_s": k, "epochs_s": times["keras"], "speedup": k / t,
                            "rounds": rounds,
                            "keras": keras_replica.import_keras().__version__}
        rows.append(row)
    return {"created": records.now(), "benchmark": "epoch_vs_floor", "n_train": n,
            "repeats": repeats, "rounds": rounds, "flop_count": FLOP_COUNT,
            "environment": records.environment("solo"), "code": code_version(), "rows": rows}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m jaxmlp.bench.epoch_floor",
                                description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, nargs="+", default=[128, 64])
    p.add_argument("--repeats", type=int, default=1, help="epochs per side per round")
    p.add_argument("--n", type=int, default=45000, help="training examples per epoch")
    p.add_argument("--keras", action="store_true",
                   help="also time Keras 3 fit (JAX backend), interleaved with ours")
    p.add_argument("--rounds", type=int, default=15,
                   help="rounds in which every side times --repeats epochs in turn")
    p.add_argument("--json", help="also write the numbers to this JSON file")
    p.add_argument("--note", help="recorded with the numbers, e.g. what else ran on the machine")
    args = p.parse_args(argv)
    for name in ("repeats", "rounds", "n"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    out = bench(args.batch, args.repeats, args.n, args.rounds, args.keras)
    if args.note:
        out["note"] = args.note
    env = out["environment"]
    print(f"device: {env['device']} ({env['platform']}), jax {env['jax']}")
    for r in out["rows"]:
        print(f"batch {r['batch']}: epoch {r['epoch_s']:.3f} s (median of {len(r['epochs_s'])}), "
              f"{r['examples_per_s']:,.0f} examples/s, {r['achieved_gflops']:.1f} GFLOP/s "
              f"achieved, matmul {r['matmul_gflops']:.1f} GFLOP/s, floor {r['floor_s']:.3f} s")
        if "keras" in r:
            k = r["keras"]
            print(f"batch {r['batch']}: Keras {k['keras']} fit {k['epoch_s']:.3f} s/epoch "
                  f"(median of {len(k['epochs_s'])}), jaxmlp {r['epoch_s']:.3f} s/epoch "
                  f"(median of {len(r['epochs_s'])})")
    for r in out["rows"]:
        for name, (_, what) in CPU_ABLATIONS.items():
            if name in r:
                p = r[name]
                print(f"batch {r['batch']}: jaxmlp {r['epoch_s']:.3f} s/epoch; "
                      f"{p['epoch_s']:.3f} s with {what} (x{p['speedup']:.2f}"
                      f"{per_round(out, r['epochs_s'], p['epochs_s'])})")
    for r in out["rows"]:
        print(f"epoch/floor ratio (batch {r['batch']}): {r['ratio']:.2f}")
    for r in out["rows"]:
        if "keras" in r:
            print(f"Keras/jaxmlp epoch time (batch {r['batch']}): {r['keras']['speedup']:.2f}"
                  + per_round(out, r["epochs_s"], r["keras"]["epochs_s"]))
    if args.json:
        atomic.write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
