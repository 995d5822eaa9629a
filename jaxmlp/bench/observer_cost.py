"""What a sweep's writer thread costs the host, where training is fast (as on a GPU).

    python -m jaxmlp.bench.observer_cost [--experiment ta8] [--seeds 3] [--epochs 100]
                                         [--epochs-per-call 5] [--tb-epochs 3000] [--json PATH]

On an H200 the TA8 sweep's observers (checkpoints, history files, TensorBoard, progress, on
one writer thread beside training) took 25 s of the thread and kept the main thread waiting
20 s (ta8_sweep_gpu_h200_v2_warm.json): on a GPU, the host side is on the critical path. This
measures that side on any machine, two ways:

1. TensorBoard scalars alone: CPU seconds of this thread per epoch of a Keras row (loss,
   accuracy, learning rate, epoch time, val_loss, val_accuracy) written through
   `observers.TensorBoardLog` (one event per folder and epoch), and the bytes written; the
   files are read back with TensorBoard's own reader (every value, every epoch, once). Beside
   it, in alternating rounds, the same rows the way the writer made them before 3d044a7:
   tensorboardX's `summary.scalar`, one event per value.
2. The experiment's sweep with `--quick` (its real runs and groups, tiny synthetic data, so
   the device part is small, as on a GPU) in a child process, into a temporary folder: the
   writer thread's CPU seconds (results.json `cpu_s.io`), its wall seconds
   (`time_split_s.observe_thread`), the main thread's wait for it (`observe`) and the training
   time, each per member-epoch.

Prints the numbers; a JSON record with --json. The CPU seconds are what to compare between
code versions; wall seconds move with whatever else the machine runs.
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
from pathlib import Path

from jaxmlp import atomic, observers, records
from jaxmlp.bench import code_version

ROW = {"loss": 0.52, "accuracy": 0.81, "learning_rate": 1e-3, "epoch_time_s": 0.012,
       "val_loss": 0.61, "val_accuracy": 0.77}


def per_value_scalars(tb: observers.TensorBoardLog, epoch: int, metrics: dict) -> None:
    """The writer before 3d044a7: tensorboardX's `summary.scalar`, one event per value."""
    from tensorboardX.summary import scalar

    for name, value in metrics.items():
        split, base = ("validation", name[4:]) if name.startswith("val_") else ("train", name)
        tb._add(split, scalar(f"epoch_{base}", float(value)), epoch)


def _write(epochs: int, per_value: bool) -> tuple[float, int]:
    """(CPU seconds of this thread, bytes) for `epochs` rows, checked by reading them back."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with tempfile.TemporaryDirectory() as folder:
        tb = observers.TensorBoardLog(Path(folder), flush_every=5.0)
        start = time.thread_time()
        for epoch in range(epochs):
            if per_value:
                per_value_scalars(tb, epoch, ROW)
            else:
                tb.scalars(epoch, ROW)
        seconds = time.thread_time() - start
        tb.close()
        size = sum(f.stat().st_size for f in Path(folder).rglob("events.*"))
        for split, names in (("train", ("loss", "accuracy", "learning_rate", "epoch_time_s")),
                             ("validation", ("loss", "accuracy"))):
            acc = EventAccumulator(str(Path(folder) / split), size_guidance={"scalars": 0})
            acc.Reload()
            for name in names:
                steps = [e.step for e in acc.Scalars(f"epoch_{name}")]
                if steps != list(range(epochs)):
                    raise AssertionError(f"{split}/epoch_{name}: steps read back {steps[:5]}...")
    return seconds, size


def tensorboard_cost(epochs: int, rounds: int = 3) -> dict:
    """CPU microseconds and bytes per epoch, now and per value (before 3d044a7), the median
    of `rounds` alternating rounds."""
    now, before = [], []
    for _ in range(rounds):
        now.append(_write(epochs, per_value=False))
        before.append(_write(epochs, per_value=True))
    us = [s / epochs * 1e6 for s, _ in now]
    us_before = [s / epochs * 1e6 for s, _ in before]
    return {"epochs": epochs, "rounds": rounds, "cpu_us_per_epoch": statistics.median(us),
            "bytes_per_epoch": now[0][1] / epochs, "rounds_us": us,
            "per_value": {"cpu_us_per_epoch": statistics.median(us_before),
                          "bytes_per_epoch": before[0][1] / epochs, "rounds_us": us_before}}


def sweep_cost(experiment: str, seeds: int, epochs: int, per_call: int) -> dict:
    """The experiment's --quick sweep in a child process: the writer thread against training."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / experiment
        command = [sys.executable, "-m", f"jaxmlp.experiments.{experiment}", "--quick",
                   "--seeds", str(seeds), "--epochs", str(epochs),
                   "--epochs-per-call", str(per_call), "--out", str(out), "--no-report",
                   "--quiet"]
        subprocess.run(command, check=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
        doc = json.loads((out / "results.json").read_text())
    inv = doc["settings"]["this_invocation"]
    split, cpu = inv["time_split_s"], inv.get("cpu_s", {})
    member_epochs = sum(s["epochs_run"] for run in doc["runs"] for s in run["seeds"])
    per = 1e3 / member_epochs
    return {"command": " ".join(["python", *command[1:-4]]), "member_epochs": member_epochs,
            "writer_cpu_s": cpu.get("io"), "writer_wall_s": split["observe_thread"],
            "main_waits_s": split["observe"], "train_s": split["train"],
            "writer_cpu_ms_per_member_epoch": cpu["io"] * per if "io" in cpu else None,
            "writer_wall_ms_per_member_epoch": split["observe_thread"] * per,
            "train_ms_per_member_epoch": split["train"] * per}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--experiment", default="ta8")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--epochs-per-call", type=int, default=5)
    p.add_argument("--tb-epochs", type=int, default=3000)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    tb = tensorboard_cost(args.tb_epochs)
    old = tb["per_value"]
    print(f"TensorBoard scalars: {tb['cpu_us_per_epoch']:.1f} us of CPU an epoch "
          f"({len(ROW)} values), {tb['bytes_per_epoch']:.0f} bytes an epoch; one event per "
          f"value (before 3d044a7): {old['cpu_us_per_epoch']:.1f} us, "
          f"{old['bytes_per_epoch']:.0f} bytes; both read back whole")
    sweep = sweep_cost(args.experiment, args.seeds, args.epochs, args.epochs_per_call)
    print(f"{args.experiment} --quick sweep, {sweep['member_epochs']} member-epochs: writer "
          f"thread {sweep['writer_cpu_s']:.2f} s CPU ({sweep['writer_cpu_ms_per_member_epoch']:.2f}"
          f" ms a member-epoch), {sweep['writer_wall_s']:.2f} s wall; main thread waited "
          f"{sweep['main_waits_s']:.2f} s; training {sweep['train_s']:.2f} s "
          f"({sweep['train_ms_per_member_epoch']:.2f} ms a member-epoch)")
    if args.json:
        atomic.write_json(args.json, {
            "created": records.now(), "benchmark": "observer_cost", "code": code_version(),
            "environment": records.environment("group"), "tensorboard": tb, "sweep": sweep})


if __name__ == "__main__":
    main()
