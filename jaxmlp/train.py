"""The train state and the pure, jit-compiled epoch: permute, scan over batches, evaluate, hooks.

One epoch of one run is `run_epoch(state, data)`. Everything it does is a pure function of
arrays, so a group of runs is `jax.vmap(run_epoch)` over a leading member axis, and several
epochs per host round-trip are a `lax.scan` over it (see `jaxmlp.sweep`).

Batches: each epoch draws a permutation from the state's key, scans over the full batches and
then, as Keras does, trains one more step on the partial last batch (its own shape, traced once).
The reported training loss/accuracy are example-weighted means of the per-batch values in train
mode (dropout on, BatchNorm batch statistics), as Keras logs them; the loss includes the L2 term.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxmlp import hooks as H
from jaxmlp import models, optim
from jaxmlp.config import RunConfig

EVAL_CHUNK = 2048  # examples per evaluation step (bounds memory for big groups)


class Data(NamedTuple):
    """The dataset on device: float32 features, int32 labels."""

    x_train: Any
    y_train: Any
    x_val: Any
    y_val: Any
    x_test: Any
    y_test: Any


class TrainState(NamedTuple):
    """Everything a run is: one pytree, checkpointed and vmapped whole."""

    params: Any
    batch_stats: Any
    opt_state: Any
    key: Any  # raw uint32 key data (jax.random.key_data), checkpoint-friendly
    step: Any
    epoch: Any  # epochs completed
    hooks: H.Hooks
    dropout: Any  # per-layer rates (arrays, so members may differ)
    l2: Any  # (hidden, output) L2 coefficients
    max_epochs: Any
    active: Any  # False once stopped (hooks, NaN or max_epochs): later epochs change nothing


def device_data(ds, mesh: Mesh | None = None) -> Data:
    """Put a `jaxmlp.data.Dataset` on device (replicated over the mesh, if any)."""
    arrays = (ds.x_train, ds.y_train, ds.x_val, ds.y_val, ds.x_test, ds.y_test)
    if mesh is None:
        return Data(*(jnp.asarray(a) for a in arrays))
    replicated = NamedSharding(mesh, P())
    return Data(*(jax.device_put(np.asarray(a), replicated) for a in arrays))


def init_state(run: RunConfig, fns: models.ModelFns | None = None, tx=None) -> TrainState:
    """The initial state of `run`: parameters from its seed, hooks, hyperparameters as arrays.

    `fns` and `tx` are accepted for symmetry with `make_epoch`; the state depends only on `run`.
    """
    del fns, tx
    return jax.tree.map(lambda a: a[0], init_states([run]))


def _param_init(model):
    """The jitted initializer; only the shapes and the kernel initializer matter to it."""
    return _param_init_cached(dataclasses.replace(model, dropout=0.0, l2=0.0, output_l2=0.0))


@functools.lru_cache(maxsize=32)
def _param_init_cached(model):
    return jax.jit(models.build(model).init)


def init_states(runs) -> TrainState:
    """Initial states of `runs` (one group), stacked on a leading member axis.

    Each member is initialised with its own seed and kernel initializer; optimizer state is
    built once (vmapped) and then given each member's own hyperparameters. Host-side stacking
    keeps this to a couple of compilations per group, whatever its size.
    """
    members = []
    for run in runs:
        init_key, train_key = jax.random.split(jax.random.key(run.train.seed))
        params, batch_stats = jax.device_get(_param_init(run.model)(init_key))
        members.append((params, batch_stats, np.asarray(jax.random.key_data(train_key))))
    params, batch_stats, keys = jax.tree.map(lambda *xs: np.stack(xs), *members)
    tx = optim.make(runs[0].optim)
    opt_state = jax.device_get(jax.jit(jax.vmap(tx.init))(params))
    given = [optim.hyperparams(r.optim) for r in runs]
    hyper = {k: np.stack([np.asarray(g[k], v.dtype) for g in given]) if k in given[0] else v
             for k, v in opt_state.hyperparams.items()}
    opt_state = opt_state._replace(hyperparams=hyper)
    hooks = [jax.device_get(H.init(r.hooks, None, np.float32(r.optim.learning_rate)))
             for r in runs]
    hooks = jax.tree.map(lambda *xs: np.stack(xs), *hooks)
    weights = (params, batch_stats)
    hooks = H.with_weights(hooks, weights)
    n = len(runs)
    state = TrainState(
        params=params, batch_stats=batch_stats, opt_state=opt_state, key=keys,
        step=np.zeros(n, np.int32), epoch=np.zeros(n, np.int32), hooks=hooks,
        dropout=np.stack([np.asarray(r.model.dropout, np.float32) for r in runs]),
        l2=np.stack([np.asarray(models.l2_coefs(r.model)) for r in runs]),
        max_epochs=np.asarray([r.train.epochs for r in runs], np.int32),
        active=np.ones(n, bool))
    return jax.tree.map(jnp.asarray, state)


def make_epoch(fns: models.ModelFns, tx, *, batch_size: int, n_train: int, mesh=None,
               schedule_fn=None):
    """Build `run_epoch(state, data) -> (state, record)` for one run (vmap it for a group).

    `record` holds this epoch's metrics vector (config.METRICS order), the LR it trained with
    and whether the run was active (an inactive run's state passes through unchanged).
    """
    n_full, remainder = divmod(n_train, batch_size)
    data_sharding = None
    if mesh is not None and mesh.size > 1:
        data_sharding = NamedSharding(mesh, P(mesh.axis_names[0]))

    def shard(x):
        if data_sharding is None or x.shape[0] % mesh.size:
            return x
        return jax.lax.with_sharding_constraint(x, data_sharding)

    def loss_fn(params, batch_stats, x, y, dropout, l2, key):
        logits, batch_stats = fns.apply(params, batch_stats, x, train=True,
                                        dropout_rates=dropout, key=key)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return ce + models.l2_penalty(params, l2), (batch_stats, logits)

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def train_step(state: TrainState, idx, x_all, y_all):
        x, y = shard(x_all[idx]), shard(y_all[idx])
        key = jax.random.fold_in(jax.random.fold_in(_key(state), 1), state.step)
        (loss, (batch_stats, logits)), grads = grad_fn(
            state.params, state.batch_stats, x, y, state.dropout, state.l2, key)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        correct = jnp.sum(jnp.argmax(logits, -1) == y)
        state = state._replace(params=params, batch_stats=batch_stats, opt_state=opt_state,
                               step=state.step + 1)
        return state, (loss * y.shape[0], correct)

    def train_epoch(state: TrainState, data: Data):
        perm_key = jax.random.fold_in(jax.random.fold_in(_key(state), 0), state.epoch)
        perm = jax.random.permutation(perm_key, n_train)
        batches = perm[: n_full * batch_size].reshape(n_full, batch_size)
        state, (losses, correct) = jax.lax.scan(
            lambda s, idx: train_step(s, idx, data.x_train, data.y_train), state, batches)
        loss_sum, correct_sum = losses.sum(), correct.sum()
        if remainder:
            state, (loss_r, correct_r) = train_step(
                state, perm[n_full * batch_size:], data.x_train, data.y_train)
            loss_sum, correct_sum = loss_sum + loss_r, correct_sum + correct_r
        return state, loss_sum / n_train, correct_sum / n_train

    def run_epoch(state: TrainState, data: Data):
        hooks, lr = H.begin_epoch(state.hooks, state.epoch,
                                  optim.learning_rate(state.opt_state), schedule_fn)
        start = state._replace(hooks=hooks,
                               opt_state=optim.with_learning_rate(state.opt_state, lr))
        new, loss, acc = train_epoch(start, data)
        val_loss, val_acc = evaluate(fns, new.params, new.batch_stats, new.l2,
                                     data.x_val, data.y_val)
        metrics = jnp.stack([loss, acc, val_loss, val_acc]).astype(jnp.float32)
        hooks, next_lr, stop = H.end_epoch(new.hooks, state.epoch, metrics,
                                           (new.params, new.batch_stats), lr)
        epoch = state.epoch + 1
        new = new._replace(hooks=hooks, epoch=epoch,
                           opt_state=optim.with_learning_rate(new.opt_state, next_lr),
                           active=~stop & (epoch < state.max_epochs))
        record = {"metrics": metrics, "lr": lr, "ran": state.active}
        return H.where(state.active, new, state), record

    return run_epoch


def _key(state: TrainState):
    return jax.random.wrap_key_data(state.key)


def evaluate(fns: models.ModelFns, params, batch_stats, l2, x, y):
    """Loss (cross-entropy + L2 term, as Keras's evaluate) and accuracy in inference mode."""
    n = x.shape[0]
    if n == 0:
        return jnp.float32(jnp.nan), jnp.float32(jnp.nan)

    def chunk(xc, yc):
        logits, _ = fns.apply(params, batch_stats, xc, train=False)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, yc).sum()
        return ce, jnp.sum(jnp.argmax(logits, -1) == yc)

    n_full = n // EVAL_CHUNK * EVAL_CHUNK
    ce, correct = jnp.float32(0), jnp.int32(0)
    if n_full:
        xs = x[:n_full].reshape(-1, EVAL_CHUNK, x.shape[1])
        ys = y[:n_full].reshape(-1, EVAL_CHUNK)
        ces, cs = jax.lax.map(lambda a: chunk(*a), (xs, ys))
        ce, correct = ces.sum(), cs.sum()
    if n > n_full:
        ce_r, c_r = chunk(x[n_full:], y[n_full:])
        ce, correct = ce + ce_r, correct + c_r
    return ce / n + models.l2_penalty(params, l2), correct / n


# --- The host loop: a group of runs, vmapped, several epochs per call -------------------------

METRIC_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")


def group_key(run: RunConfig) -> tuple:
    """Runs with equal keys train as one vmapped program (numbers may differ, shapes may not)."""
    m = run.model
    return (m.hidden, m.activation, m.batch_norm, m.input_dim, m.num_classes,
            optim.structure_key(run.optim), run.train.batch_size, run.train.dataset,
            run.train.validation_split, run.train.split)


class Group(NamedTuple):
    """A compiled group: its runs, model functions and the multi-epoch step."""

    runs: tuple
    fns: models.ModelFns
    tx: Any
    step: Any  # jitted (state, data) -> (state, records), `epochs_per_call` epochs per call
    final: Any  # jitted (state, data) -> (weights kept, {split: (loss, accuracy)})
    epochs_per_call: int


def _over_members(run_epoch, n: int, members: str | None):
    """One epoch of every member, in one program: vmapped, or looped with lax.map.

    XLA's CPU backend runs batched (vmapped) matmuls well below its plain matmul speed, so on
    the CPU members are looped over (`lax.map`); on accelerators they are vmapped. A group of
    one is never batched. Both give every member the same numbers as training it alone.
    """
    members = members or ("map" if jax.default_backend() == "cpu" else "vmap")
    if n == 1:
        def squeezed(state, data):
            out = run_epoch(jax.tree.map(lambda a: a[0], state), data)
            return jax.tree.map(lambda a: a[None], out)
        return squeezed
    if members == "map":
        return lambda state, data: jax.lax.map(lambda s: run_epoch(s, data), state)
    if members == "vmap":
        return jax.vmap(run_epoch, in_axes=(0, None))
    raise ValueError(f"members={members!r}: allowed 'vmap', 'map' or None (by backend)")


SHARDS = ("batch", "members")


def build_group(runs, data: Data, *, epochs_per_call: int = 1, mesh=None, schedule_fn=None,
                members: str | None = None, shard: str = "batch"):
    """Compile-ready functions for `runs` (all with one group_key) over a leading member axis.

    `members` picks how the member axis is computed ('vmap' or 'map'; default by backend).
    With a `mesh` of several devices, `shard` picks what is split across them: 'batch' (data
    parallel: every member's batch is split, parameters replicated) or 'members' (each device
    trains its share of the members on whole batches; the member count must divide evenly).
    """
    runs = tuple(runs)
    keys = {group_key(r) for r in runs}
    if len(keys) != 1:
        raise ValueError(f"runs {[r.name for r in runs]} do not share shapes; group them by "
                         "train.group_key first")
    if shard not in SHARDS:
        raise ValueError(f"shard={shard!r}: allowed {', '.join(map(repr, SHARDS))}")
    split_members = shard == "members" and mesh is not None and mesh.size > 1
    if split_members and len(runs) % mesh.size:
        raise ValueError(f"shard='members': {len(runs)} members cannot be split evenly over "
                         f"{mesh.size} devices; use a multiple of {mesh.size} or shard='batch'")
    fns = models.build(runs[0].model)
    tx = optim.make(runs[0].optim)
    run_epoch = make_epoch(fns, tx, batch_size=runs[0].train.batch_size,
                           n_train=data.x_train.shape[0], mesh=None if split_members else mesh,
                           schedule_fn=schedule_fn)
    member_epoch = _over_members(run_epoch, len(runs), "vmap" if split_members else members)
    by_member = NamedSharding(mesh, P(mesh.axis_names[0])) if split_members else None

    def constrain(state):
        if by_member is None:
            return state
        return jax.tree.map(lambda a: jax.lax.with_sharding_constraint(a, by_member), state)

    def step(state, data):
        state, records = jax.lax.scan(lambda s, _: member_epoch(constrain(s), data),
                                      constrain(state), None, length=epochs_per_call)
        return constrain(state), records

    def final(state, data):
        def one(s):
            params, batch_stats = H.finalize(s.hooks, (s.params, s.batch_stats))
            scores = {split: evaluate(fns, params, batch_stats, s.l2, x, y)
                      for split, (x, y) in {"train": (data.x_train, data.y_train),
                                            "val": (data.x_val, data.y_val),
                                            "test": (data.x_test, data.y_test)}.items()}
            return (params, batch_stats), scores
        return jax.vmap(one)(state)

    return Group(runs, fns, tx, jax.jit(step, donate_argnums=0), jax.jit(final), epochs_per_call)


def compile_group(group: Group, state: TrainState, data: Data) -> Group:
    """The group with its step and final programs compiled ahead of time for these shapes.

    Safe to call from several threads at once: XLA compiles in parallel, which is how a sweep
    overlaps the compilation of all its groups.
    """
    step = group.step.lower(state, data).compile()
    final = group.final.lower(state, data).compile()
    return group._replace(step=step, final=final)


def init_group(group: Group) -> TrainState:
    """Initial states of every member, stacked on a leading axis."""
    return init_states(group.runs)


def empty_history() -> dict:
    return {"epoch": [], **{k: [] for k in METRIC_KEYS}, "learning_rate": [], "epoch_time_s": []}


def fit_group(group: Group, data: Data, *, state=None, histories=None, observe=None):
    """Train every member until all have stopped; returns (state, histories).

    `state`/`histories` resume a group (from a checkpoint). `observe(state, histories, chunk)`
    is called on the host after every `epochs_per_call` epochs; it must not change anything.
    Per-epoch times are the chunk's wall time divided by its epochs (one sync per chunk).
    """
    import time

    state = init_group(group) if state is None else state
    histories = histories or [empty_history() for _ in group.runs]
    while bool(jnp.any(state.active)):
        start = time.perf_counter()
        state, rec = group.step(state, data)
        rec = jax.device_get(rec)
        seconds = (time.perf_counter() - start) / group.epochs_per_call
        chunk = _append(histories, rec, seconds)
        if observe is not None:
            observe(state, histories, chunk)
    return state, histories


def _append(histories, rec, seconds):
    """Add the epochs each member actually ran to its history; returns [(member, epoch), ...]."""
    chunk = []
    ran, metrics, lr = rec["ran"], rec["metrics"], rec["lr"]
    for t in range(ran.shape[0]):
        for m, hist in enumerate(histories):
            if not ran[t, m]:
                continue
            hist["epoch"].append(len(hist["epoch"]))
            for i, k in enumerate(METRIC_KEYS):
                hist[k].append(float(metrics[t, m, i]))
            hist["learning_rate"].append(float(lr[t, m]))
            hist["epoch_time_s"].append(seconds)
            chunk.append((m, hist["epoch"][-1]))
    return chunk


def fit(run: RunConfig, data: Data, *, epochs_per_call: int = 1, mesh=None, schedule_fn=None,
        observe=None):
    """Train one run (a group of one). Returns (final state, history dict, final scores)."""
    group = build_group([run], data, epochs_per_call=epochs_per_call, mesh=mesh,
                        schedule_fn=schedule_fn)
    state, histories = fit_group(group, data, observe=observe)
    _, scores = group.final(state, data)
    scores = {k: (float(v[0][0]), float(v[1][0])) for k, v in jax.device_get(scores).items()}
    return jax.tree.map(lambda a: a[0], state), histories[0], scores
