"""Fitting again in one process: `jaxmlp.fit` in a loop over seeds, as a user compares seeds.

    python -m jaxmlp.bench.refit [--fits 4] [--rounds 3] [--keras] [--json PATH]

The workload is the README's block (3,000 x 32 synthetic features, MLP 256-128 with dropout
0.3, Adam 1e-3, 50 epochs at most, batch 128, validation_split 0.1, EarlyStopping(patience=5,
restore_best_weights=True)), fitted with seeds 0, 1, ..., one fit after another in one fresh
process, each fit timed from the call to its return. Five ways, each round in its own child
process, in alternating order:

- `reuse`: today's code. A fit whose programs close over the same things as an earlier one's
  (`jaxmlp.group.build_group`'s key: here only the seed differs) runs that one's compiled
  programs, so only the first fit compiles.
- `rebuild`: the same code with that cache emptied before each fit, as every fit was before:
  each one traced and compiled its own programs.
- `disk`: today's code with JAX's persistent compilation cache in a folder an earlier,
  untimed process filled with these programs (`JAX_COMPILATION_CACHE_DIR`, and
  `JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0` so that the small programs are kept too):
  what running the same script again costs where a user sets those two variables.
- `many`: today's code, the same fits as one `jaxmlp.fit_many` call (one program for the
  seeds: looped over on the CPU, vmapped on accelerators); only its total is timed.
- `keras` (with --keras; needs Keras 3, `pip install -e '.[bench]'`): Keras 3 `fit` on the JAX
  backend with the same model, optimizer, data and callbacks, a new Sequential model a fit.

Prints the first fit's seconds and the mean of the others (median over rounds), and each fit's
epochs (EarlyStopping's stop depends on the seed; the epochs of `reuse` and `rebuild` are the
same, as the numbers are). A JSON record with --json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from jaxmlp import atomic, records
from jaxmlp.bench import code_version, without_compile_cache

MODES = ("reuse", "rebuild", "disk", "many", "keras")


def problem():
    """The README's data: 2,500 training examples of 32 features, 10 classes."""
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 32)).astype("float32")
    y = np.argmax(x[:, :10] + 0.5 * rng.normal(size=(3000, 10)), axis=1)
    return x[:2500], y[:2500]


def fits(mode: str, n: int) -> list[tuple[float, int]]:
    """(seconds, epochs) of `n` fits, seeds 0..n-1, in this process."""
    x, y = problem()
    if mode == "many":
        import jaxmlp

        start = time.perf_counter()
        rs = jaxmlp.fit_many(x, y, [dict(seed=s) for s in range(n)], **readme_fit())
        return [(time.perf_counter() - start, [len(r.history["loss"]) for r in rs])]
    out = []
    for seed in range(n):
        if mode == "keras":
            start = time.perf_counter()
            epochs = _keras_fit(x, y, seed)
        else:
            import jaxmlp
            from jaxmlp import group

            if mode == "rebuild":
                group._BUILT.clear()
            start = time.perf_counter()
            r = jaxmlp.fit(x, y, seed=seed, **readme_fit())
            epochs = len(r.history["loss"])
        out.append((time.perf_counter() - start, epochs))
    return out


def readme_fit() -> dict:
    """fit's arguments in the README's block, but quiet."""
    import jaxmlp

    return dict(model=jaxmlp.MLP(hidden=(256, 128), dropout=0.3), optimizer=jaxmlp.Adam(1e-3),
                epochs=50, batch_size=128, validation_split=0.1, verbose=0,
                callbacks=[jaxmlp.EarlyStopping(patience=5, restore_best_weights=True)])


def _keras_fit(x, y, seed: int) -> int:
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((x.shape[1],)),
        keras.layers.Dense(256, activation="relu"), keras.layers.Dropout(0.3),
        keras.layers.Dense(128, activation="relu"), keras.layers.Dropout(0.3),
        keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=50, batch_size=128, validation_split=0.1, verbose=0,
                        callbacks=[keras.callbacks.EarlyStopping(
                            patience=5, restore_best_weights=True)])
    return len(history.history["loss"])


def child(mode: str, n: int, cache: str) -> list[tuple[float, int]]:
    """`fits(mode, n)` in a fresh process (so that the first fit compiles from nothing, or
    from the persistent cache in `cache` for mode 'disk')."""
    env = without_compile_cache(JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
    if mode == "keras":
        env["KERAS_BACKEND"] = "jax"
    if mode == "disk":
        env.update(JAX_COMPILATION_CACHE_DIR=cache, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    out = subprocess.run([sys.executable, "-m", "jaxmlp.bench.refit", "--child",
                          "reuse" if mode == "disk" else mode,
                          "--fits", str(n)], check=True, capture_output=True, text=True,
                         env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def summary(rounds: list[list]) -> dict:
    """Medians over rounds (processes) of the first fit, the mean of the later ones and all the
    fits together; a `many` round is one timing of every fit."""
    totals = [sum(s for s, _ in r) for r in rounds]
    if len(rounds[0]) == 1 and isinstance(rounds[0][0][1], list):  # fit_many: one call
        return {"first_fit_s": None, "later_fit_s": None, "total_s": statistics.median(totals),
                "epochs": rounds[0][0][1], "rounds_s": totals}
    firsts = [r[0][0] for r in rounds]
    later = [statistics.mean(s for s, _ in r[1:]) for r in rounds if len(r) > 1]
    return {"first_fit_s": statistics.median(firsts),
            "later_fit_s": statistics.median(later) if later else None,
            "total_s": statistics.median(totals), "epochs": [e for _, e in rounds[0]],
            "rounds_s": [[s for s, _ in r] for r in rounds]}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fits", type=int, default=4, help="fits per process (seeds 0..N-1)")
    p.add_argument("--rounds", type=int, default=3, help="processes per way, alternating")
    p.add_argument("--keras", action="store_true", help="also time Keras 3 fit (JAX backend)")
    p.add_argument("--json", default=None)
    p.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.fits < 1 or args.rounds < 1:
        p.error(f"--fits {args.fits} --rounds {args.rounds}: both must be at least 1")
    if args.child:
        print(json.dumps(fits(args.child, args.fits)))
        return
    modes = MODES if args.keras else MODES[:-1]
    runs = {m: [] for m in modes}
    with tempfile.TemporaryDirectory() as cache:
        child("disk", args.fits, cache)  # fills the persistent cache; not timed
        for _ in range(args.rounds):
            for m in modes:
                runs[m].append(child(m, args.fits, cache))
    rows = {m: summary(r) for m, r in runs.items()}
    for m, row in rows.items():
        first = "" if row["first_fit_s"] is None else f"first fit {row['first_fit_s']:.2f} s, "
        later = "" if row["later_fit_s"] is None else f"later fits {row['later_fit_s']:.2f} s, "
        print(f"{m:8s} {first}{later}all {row['total_s']:.2f} s (median of {args.rounds} "
              f"processes; epochs {row['epochs']})")
    if rows["rebuild"]["later_fit_s"] and rows["reuse"]["later_fit_s"]:
        print(f"later fits: x{rows['rebuild']['later_fit_s'] / rows['reuse']['later_fit_s']:.1f}"
              " faster reusing the compiled programs")
    if args.json:
        env = records.environment("solo")
        if "keras" in rows:
            from importlib import metadata
            env["keras"] = metadata.version("keras")
        atomic.write_json(args.json, {
            "created": records.now(), "benchmark": "refit", "code": code_version(),
            "environment": env, "fits": args.fits, "rounds": args.rounds,
            "workload": "README block: 2,500 x 32, MLP 256-128 dropout 0.3, Adam 1e-3, "
                        "batch 128, 50 epochs at most, validation_split 0.1, "
                        "EarlyStopping(patience=5, restore_best_weights=True); seeds 0..fits-1",
            "modes": rows})


if __name__ == "__main__":
    main()
