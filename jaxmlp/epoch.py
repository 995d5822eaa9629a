"""The pure epoch: train state, initial states, one train step, one epoch, evaluation.

Owns everything that changes the numbers of ONE run: `TrainState` (params, batch stats,
optimizer state, key, hooks, per-run hyperparameters as arrays), `init_states`, and
`make_epoch(...) -> run_epoch(state, data) -> (state, record)`, a pure function of arrays.
It knows nothing of groups, devices beyond an optional data-parallel constraint, or the host:
`jaxmlp.group` vmaps / lax.maps it over members and compiles it; `jaxmlp.loop` loops it.

Batches: each epoch draws a permutation from the state's key, scans over the full batches and
then, as Keras does, trains one more step on the partial last batch (its own shape, traced once).
The reported training loss/accuracy are example-weighted means of the per-batch values in train
mode (dropout on, BatchNorm batch statistics), as Keras logs them; the loss includes the L2 term.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.extend.core import ClosedJaxpr, Jaxpr
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxmlp import hooks as H
from jaxmlp import models, optim
from jaxmlp.data import PIXEL_FEATURES

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
    """Put a `jaxmlp.data.Dataset` on device (replicated over the mesh, if any). A dataset of
    uint8 pixels (`Dataset.pixels`) travels as pixels and becomes float32 features there,
    through `data.PIXEL_FEATURES`: the same numbers as `data.features` on the host."""
    arrays = (ds.x_train, ds.y_train, ds.x_val, ds.y_val, ds.x_test, ds.y_test)
    put = (jnp.asarray if mesh is None else
           functools.partial(jax.device_put, device=NamedSharding(mesh, P())))
    out = [put(np.asarray(a)) for a in arrays]
    if getattr(ds, "pixels", False):
        table = put(PIXEL_FEATURES)
        out[0::2] = [_pixel_features(table, x) for x in out[0::2]]
    return Data(*out)


@jax.jit
def _pixel_features(table, pixels):
    return table[pixels]


def _param_init(model):
    """The jitted initializer; only the shapes and the kernel initializer matter to it."""
    return _param_init_cached(dataclasses.replace(model, dropout=0.0, l2=0.0, output_l2=0.0))


@functools.lru_cache(maxsize=32)
def _param_init_cached(model):
    return jax.jit(models.build(model).init)


def init_states(runs, has_val: bool = True) -> TrainState:
    """Initial states of `runs` (one group), stacked on a leading member axis.

    Each member is initialised with its own seed and kernel initializer; optimizer state is
    built once (vmapped) and then given each member's own hyperparameters. Host-side stacking
    keeps this to a couple of compilations per group, whatever its size. `has_val=False` (no
    validation data) leaves hooks on `val_*` metrics idle, with Keras's warning, once.

    Computed on the CPU backend whatever the default device, then put on the default device:
    every backend starts from the same initial weights, and an accelerator is spared dozens of
    tiny compilations and hundreds of one-scalar transfers per group.
    """
    for message in dict.fromkeys(m for r in runs for m in H.unavailable(r.hooks, has_val)):
        warnings.warn(message, stacklevel=2)
    try:  # this process's own CPU (jax.devices lists every process's under jax.distributed)
        host = jax.local_devices(backend="cpu")[0]
    except RuntimeError:  # JAX_PLATFORMS left the CPU backend out
        host = jax.local_devices()[0]
    with jax.default_device(host):
        state = _init_states_host(runs, has_val)
    return jax.device_put(state)


def _init_states_host(runs, has_val: bool) -> TrainState:
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
    hooks = [jax.device_get(H.init(r.hooks, None, np.float32(r.optim.learning_rate), has_val))
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
    return jax.tree.map(np.asarray, state)


def masks_ahead_default(mesh=None) -> bool:
    """Whether an epoch draws its dropout masks before its loop over batches (see make_epoch):
    on the CPU, on one device."""
    return jax.default_backend() == "cpu" and (mesh is None or mesh.size == 1)


def schedule_fingerprint(fn) -> str:
    """A LearningRateScheduler's function as traced on the compiled epoch's arrays: a hash of
    its jaxpr (its operations and literal numbers) and of any arrays it closes over, so that a
    backup made with another schedule is told apart (a lambda's name says nothing)."""
    closed = jax.make_jaxpr(lambda e, lr: jnp.asarray(fn(e, lr), jnp.float32))(
        jax.ShapeDtypeStruct((), jnp.int32), jax.ShapeDtypeStruct((), jnp.float32))
    digest = hashlib.sha1(str(closed.jaxpr).encode())
    for const in _constants(closed):
        digest.update(np.asarray(const).tobytes())
    return "sha1:" + digest.hexdigest()[:16]


def _constants(closed) -> list:
    """A closed jaxpr's constants and those of the jaxprs inside its equations (a `jax.jit`
    function inside the schedule keeps its own, which the printed jaxpr names but not shows)."""
    out = list(getattr(closed, "consts", ()))
    jaxpr = getattr(closed, "jaxpr", closed)
    for eqn in jaxpr.eqns:
        stack = list(eqn.params.values())
        while stack:
            value = stack.pop()
            if isinstance(value, (tuple, list)):
                stack.extend(value)
            elif isinstance(value, (ClosedJaxpr, Jaxpr)):
                out += _constants(value)
    return out


def make_epoch(fns: models.ModelFns, tx, *, batch_size: int, n_train: int, mesh=None,
               schedule_fn=None, unroll: int = 1, masks_ahead: bool | None = None):
    """Build `run_epoch(state, data) -> (state, record)` for one run (vmap it for a group).

    `record` holds this epoch's metrics vector (config.METRICS order), the LR it trained with
    and whether the run was active (an inactive run's state passes through unchanged).
    `unroll`: train steps per iteration of the compiled loop over batches (`lax.scan`'s
    unroll): the same computation in a longer program; equal to float32
    rounding, since XLA may fuse the unrolled steps differently.
    `masks_ahead` (default `masks_ahead_default(mesh)`): draw the full batches' dropout masks
    for the whole epoch in one computation before the loop, and feed each step its own. The
    same keys, the same bits, the same training: a step's mask is a function of the run's key
    and the step number only. Drawn inside the step, XLA's CPU fusion computes the Threefry
    hash twice per unit, once in the forward pass and again in the backward pass that needs the
    mask (it duplicates cheap integer code into both consumers rather than keep a buffer);
    drawn ahead, once. That is about 3 % of a TA8 CPU epoch at batch 128. The masks take one
    byte per hidden unit per training example (45,000 x 448 B = 20 MB for TA8's model).
    """
    n_full, remainder = divmod(n_train, batch_size)
    data_sharding = None
    if mesh is not None and mesh.size > 1:
        data_sharding = NamedSharding(mesh, P(mesh.axis_names[0]))
    if masks_ahead is None:
        masks_ahead = masks_ahead_default(mesh)

    def shard(x):
        if data_sharding is None or x.shape[0] % mesh.size:
            return x
        return jax.lax.with_sharding_constraint(x, data_sharding)

    def loss_fn(params, batch_stats, x, y, dropout, l2, key, masks):
        logits, batch_stats = fns.apply(params, batch_stats, x, train=True,
                                        dropout_rates=dropout, key=key, masks=masks)
        ce = fns.loss(logits, y).mean()
        return fns.regularized(ce, params, l2), (batch_stats, logits)

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    # The optimizer's update is three elementwise passes over each weight on the CPU (first
    # moment, second moment, weight: XLA's CPU backend makes no multi-output fusions), each
    # rereading the gradient and the weight. Tried and dropped (2026-11-28, a scratch build
    # timed in alternating rounds on TA8's combined model, batch 128): carrying each weight
    # stacked with its moments through the loop over batches, so that one fusion updates all
    # three. XLA then copies the stack every step (it cannot update a concatenation in place)
    # and the epoch took 1.19 times as long (1.16 with two steps per loop iteration), and it
    # rounded differently after an epoch with a partial last batch.

    def step_key(state: TrainState, step):
        return jax.random.fold_in(jax.random.fold_in(_key(state), 1), step)

    def train_step(state: TrainState, idx, x_all, y_all, masks=None):
        x, y = shard(x_all[idx]), shard(y_all[idx])
        key = step_key(state, state.step)
        (loss, (batch_stats, logits)), grads = grad_fn(
            state.params, state.batch_stats, x, y, state.dropout, state.l2, key, masks)
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
        masks = None
        if masks_ahead and n_full and any(fns.uses.dropout):
            masks = jax.vmap(lambda s: fns.masks(step_key(state, s), state.dropout, batch_size))(
                state.step + jnp.arange(n_full, dtype=state.step.dtype))
        state, (losses, correct) = jax.lax.scan(
            lambda s, xs: train_step(s, xs[0], data.x_train, data.y_train, xs[1]), state,
            (batches, masks), unroll=unroll)
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
        ce = fns.loss(logits, yc).sum()
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
    return fns.regularized(ce / n, params, l2), correct / n

