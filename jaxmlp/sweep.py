"""The sweep runner: runs x seeds -> groups -> vmapped training -> per-member results, resumable.

Each group of members that share shapes (`train.group_key`) trains as one compiled program.
Observers run on the host after every chunk of `epochs_per_call` epochs: the group's latest
Orbax checkpoint (state + histories, for exact resume), per-member history CSVs, TensorBoard
scalars and best-weights checkpoints. A finished member writes `members/<run>__seed<k>.json`;
a rerun skips finished groups and resumes a partial one from its latest checkpoint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxmlp import atomic, observers, train
from jaxmlp import config as C
from jaxmlp import hooks as H
from jaxmlp.config import RunConfig


@dataclasses.dataclass(frozen=True)
class Member:
    """One run with one seed."""

    run: RunConfig
    seed: int

    @property
    def id(self) -> str:
        return f"{self.run.name}__seed{self.seed}"

    @property
    def fingerprint(self) -> str:
        """Changes whenever what this member trains changes (seed included); presentation
        (label, description, part) is not part of it."""
        return config_fingerprint(self.run, self.id)


PRESENTATION = ("label", "description", "part")


def config_fingerprint(run: RunConfig, member_id: str) -> str:
    """A short hash of what a member trains: its id and every config field but presentation."""
    cfg = {k: v for k, v in C.to_dict(run).items() if k not in PRESENTATION}
    return hashlib.sha1(repr((member_id, cfg)).encode()).hexdigest()[:12]


class StaleResult(ValueError):
    """A finished member's record was trained with a different configuration."""


def members(runs, seeds) -> list[Member]:
    """Every run with every seed (the seed replaces run.train.seed)."""
    return [Member(dataclasses.replace(r, train=dataclasses.replace(r.train, seed=s)), s)
            for r in runs for s in seeds]


def groups(items: list[Member], engine: str) -> list[list[Member]]:
    """Members grouped by shapes (engine 'group') or one by one (engine 'solo'), stable order."""
    if engine == "solo":
        return [[m] for m in items]
    out: dict[tuple, list[Member]] = {}
    for m in items:
        out.setdefault(train.group_key(m.run) + (m.run.train.epochs,), []).append(m)
    return list(out.values())


def group_id(group: list[Member]) -> str:
    """Stable name of a group: changes whenever any member's configuration changes."""
    text = repr([m.fingerprint for m in group])
    digest = hashlib.sha1(text.encode()).hexdigest()[:10]
    return f"{group[0].run.name}-{len(group)}-{digest}"


class Observer:
    """Host-side effects after each chunk of epochs; never changes the numbers."""

    def __init__(self, group: list[Member], ckpt: observers.CheckpointStore, histories,
                 calls: int, *, runs_dir: Path, out_dir: Path, label: str, quiet: bool):
        self.group, self.ckpt = group, ckpt
        self.logs = [observers.HistoryLog(
                        out_dir / "histories" / m.run.name / f"seed{m.seed}.csv",
                        initial=histories[i] if histories else None)
                     for i, m in enumerate(group)]
        self.tb = [observers.TensorBoardLog(runs_dir / "tb" / m.run.name / f"seed{m.seed}")
                   for m in group]
        self.best = {i: observers.CheckpointStore(
                        runs_dir / "best" / m.id, monitor=m.run.hooks.checkpoint.monitor,
                        mode=_mode(m.run.hooks.checkpoint))
                     for i, m in enumerate(group) if m.run.hooks.checkpoint is not None}
        self.saved_best = {i: -1 for i in self.best}
        self.label, self.quiet, self.calls = label, quiet, calls

    def __call__(self, state, histories, chunk):
        self.calls += 1
        self.ckpt.save_latest(self.calls, state, extra={"histories": histories,
                                                        "calls": self.calls})
        for m, epoch in chunk:
            row = {k: histories[m][k][epoch] for k in histories[m] if k != "epoch"}
            self.logs[m].append(epoch, row)
            self.tb[m].scalars(epoch, row)
        self._save_best(state)
        self._progress(state, histories, chunk)

    def _save_best(self, state):
        s = H.summary(state.hooks)
        best = jax.device_get((s.checkpoint_best_epoch, s.checkpoint_best))
        for i, store in self.best.items():
            epoch = int(best[0][i])
            if epoch > self.saved_best[i]:
                weights = jax.tree.map(lambda a, i=i: a[i], s.checkpoint_weights)
                store.save_best(epoch, weights, float(best[1][i]))
                self.saved_best[i] = epoch

    def _progress(self, state, histories, chunk):
        if self.quiet or not chunk:
            return
        active = int(jnp.sum(state.active))
        last = max(e for _, e in chunk)
        val_acc = [h["val_accuracy"][-1] for h in histories if h["val_accuracy"]]
        secs = histories[chunk[-1][0]]["epoch_time_s"][-1]
        print(f"{self.label} epoch {last + 1}: {active}/{len(self.group)} active, "
              f"val_accuracy mean {np.mean(val_acc):.4f}, {secs:.2f} s/epoch",
              file=sys.stderr, flush=True)

    def close(self):
        for tb in self.tb:
            tb.close()
        for store in self.best.values():
            store.close()


def _mode(cfg) -> str:
    return "min" if C.monitor_sign(cfg.monitor, cfg.mode) > 0 else "max"


def shard_for(group: list[Member], mesh, shard: str) -> str:
    """What a group splits over the devices: its members when asked and they divide evenly,
    else the batch (data parallel)."""
    if shard == "members" and mesh is not None and len(group) % mesh.size == 0:
        return "members"
    return "batch"


def prepare(group: list[Member], data: train.Data, *, epochs_per_call: int, mesh,
            shard: str = "batch"):
    """Build, initialise and compile one group (thread-safe: groups compile in parallel)."""
    built = train.build_group([m.run for m in group], data, epochs_per_call=epochs_per_call,
                              mesh=mesh, shard=shard_for(group, mesh, shard))
    state = train.init_group(built)
    return train.compile_group(built, state, data), state


def run_group(group: list[Member], data: train.Data, n_train: int, *, out_dir: Path,
              runs_dir: Path, epochs_per_call: int, mesh, label: str, quiet: bool,
              prepared=None) -> list[dict]:
    """Train (or resume) one group; write and return each member's result record."""
    compiled, state = prepared or prepare(group, data, epochs_per_call=epochs_per_call,
                                          mesh=mesh)
    ckpt_dir = runs_dir / "checkpoints" / group_id(group)
    histories = None
    with observers.CheckpointStore(ckpt_dir, monitor="val_loss", mode="min") as ckpt:
        restored = ckpt.restore_latest(state)
        calls, resumed = 0, restored is not None
        if restored is not None:
            _, state, extra = restored
            histories, calls = extra["histories"], extra["calls"]
            if not quiet:
                print(f"{label} resumed after {calls} chunks", file=sys.stderr)
        observer = Observer(group, ckpt, histories, calls, runs_dir=runs_dir, out_dir=out_dir,
                            label=label, quiet=quiet)
        start = time.perf_counter()
        state, histories = train.fit_group(compiled, data, state=state, histories=histories,
                                           observe=observer)
        wall = time.perf_counter() - start
        _, scores = jax.device_get(compiled.final(state, data))
        observer.close()
    state = jax.device_get(state)
    return [{**member_result(m, i, state, histories[i], scores, n_train, len(group), wall),
             "resumed": resumed} for i, m in enumerate(group)]


def member_result(m: Member, i: int, state, history: dict, scores, n_train: int,
                  group_size: int, wall: float) -> dict:
    """The result record of one member (JSON-ready)."""
    h = H.summary(state.hooks)
    es_on, ckpt_on = bool(h.early_stopping[i]), bool(h.checkpoint[i])
    if es_on:
        best_epoch = int(h.es_best_epoch[i])
    elif ckpt_on:
        best_epoch = int(h.checkpoint_best_epoch[i])
    else:
        best_epoch = int(np.argmin(history["val_loss"]))
    epochs_run = len(history["epoch"])
    seconds = float(sum(history["epoch_time_s"]))
    split = {k: {"loss": float(v[0][i]), "accuracy": float(v[1][i])} for k, v in scores.items()}
    return {
        "seed": m.seed, "epochs_run": epochs_run, "best_epoch": best_epoch,
        "stopped_early": bool(h.stopped_early[i]), "diverged": bool(h.diverged[i]),
        "final_lr": history["learning_rate"][-1], "lr_reductions": int(h.lr_reductions[i]),
        **split,
        "wall_time_s": seconds, "examples_per_s": epochs_run * n_train / max(seconds, 1e-9),
        "group_size": group_size, "group_wall_time_s": wall,
        "history_csv": f"histories/{m.run.name}/seed{m.seed}.csv",
    }


def member_path(out_dir: Path, m: Member) -> Path:
    return out_dir / "members" / f"{m.id}.json"


def write_member(out_dir: Path, m: Member, record: dict) -> None:
    atomic.write_json(member_path(out_dir, m), {**record, "config_sha1": m.fingerprint})


def done(out_dir: Path, m: Member) -> bool:
    """Whether `m` has a finished record in `out_dir`; a record of a different configuration of
    the same run is an error, never silently reused (records without a fingerprint, written
    before it existed, are trusted)."""
    path = member_path(out_dir, m)
    if not path.exists():
        return False
    stored = json.loads(path.read_text()).get("config_sha1")
    if stored is not None and stored != m.fingerprint:
        raise StaleResult(
            f"{path} was trained with a different configuration of run {m.run.name!r} (seed "
            f"{m.seed}) than the one asked for now; delete that file to retrain the run, or "
            "write to another --out")
    return True
