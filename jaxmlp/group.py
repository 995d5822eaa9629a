"""Many runs as one program: the member axis (vmap or lax.map), the device mesh, compilation.

Owns `group_key` (which runs may share a program), `build_group` (the jitted multi-epoch step:
a `lax.scan` of `epochs_per_call` epochs of every member, and the final evaluation with the
restored weights), `compile_group` and `compile_final` (ahead of time, thread-safe; groups
with one model and member count share one final program) and `init_group`. The numbers
come from `jaxmlp.epoch`; the host loop that calls the step lives in `jaxmlp.loop`.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxmlp import hooks as H
from jaxmlp import models, optim
from jaxmlp.config import RunConfig
from jaxmlp.epoch import Data, TrainState, evaluate, init_states, make_epoch, schedule_fingerprint


def group_key(run: RunConfig, members: str | None = None) -> tuple:
    """Runs with equal keys train as one program (numbers may differ, shapes may not).

    A group's program computes the dropout layers and L2 term that some member uses
    (`models.Uses`). Where members are computed one at a time (`members='map'`, the CPU's
    default, `member_axis`), runs group only with runs that use the same ones, so that every
    member runs exactly the program it would run alone: its numbers do not depend on what else
    the sweep trains (`--only`, `--retrain NAME` give the main job's numbers bit for bit).
    Vmapped members (`'vmap'`) already round with the group's size, so there runs that differ
    only in those parts share one program, and fewer programs run one after another.
    """
    key = (*_model_key(run), optim.structure_key(run.optim), run.train.batch_size,
           run.train.dataset, run.train.validation_split, run.train.split)
    if (members or member_axis()) == "map":
        key += (models.uses_of([run.model]),)
    return key


def _model_key(run: RunConfig) -> tuple:
    """What the model's inference computation depends on: runs with equal keys (and member
    counts) share one final-evaluation program, whatever their optimizer, batch or epochs."""
    m = run.model
    return (m.hidden, m.activation, m.batch_norm, m.input_dim, m.num_classes, m.output_clip)


class Group(NamedTuple):
    """A compiled group: its runs, model functions and the multi-epoch step."""

    runs: tuple
    fns: models.ModelFns
    tx: Any
    step: Any  # jitted (state, data) -> (state, records), `epochs_per_call` epochs per call
    evaluate: Any  # jitted (final_inputs(state), data) -> what `final` returns
    epochs_per_call: int
    has_val: bool  # the data has validation examples (else hooks on val_* stay idle)
    # Where the state lives on several devices: split by member (shard='members') or whole on
    # every device (data parallel). `init_group` places the initial state there, so that the
    # programs compiled ahead of time for it (step, final evaluation) take the state the step
    # returns, and a checkpoint restored with it as template lands there too.
    state_sharding: Any = None

    def final(self, state, data):
        """Every member's final evaluation: (weights kept, {split: (loss, accuracy)})."""
        return self.evaluate(final_inputs(state), data)


def member_axis() -> str:
    """How a group's members are computed by default on this backend: 'map' on the CPU (XLA's
    CPU backend runs batched matmuls well below its plain matmul speed), 'vmap' elsewhere."""
    return "map" if jax.default_backend() == "cpu" else "vmap"


def _over_members(run_epoch, n: int, members: str | None):
    """One epoch of every member, in one program: vmapped, or looped with lax.map.

    XLA's CPU backend runs batched (vmapped) matmuls well below its plain matmul speed, so on
    the CPU members are looped over (`lax.map`); on accelerators they are vmapped. A group of
    one is never batched. Both give every member the same numbers as training it alone.
    """
    members = members or member_axis()
    if members not in ("map", "vmap"):
        raise ValueError(f"members={members!r}: allowed 'vmap', 'map' or None (by backend)")
    one = _skipping_stopped(run_epoch)
    if n == 1:
        def squeezed(state, data):
            out = one(jax.tree.map(lambda a: a[0], state), data)
            return jax.tree.map(lambda a: a[None], out)
        return squeezed
    if members == "map":
        return lambda state, data: jax.lax.map(lambda s: one(s, data), state)
    return jax.vmap(run_epoch, in_axes=(0, None))


def _skipping_stopped(run_epoch):
    """`run_epoch` that does no work for a stopped member (`lax.cond` on `state.active`).

    Where members run one at a time (the member loop, a group of one), a stopped member costs
    nothing while the rest of its group trains on (in the committed P8D sweep, the members that
    stop early had been computed under a mask for 454 member-epochs, on top of the 1,296 they
    ran; `python -m jaxmlp.bench.sweep --whole-sweep` times a sweep before and after). Under
    vmap a cond becomes a select that computes both branches, so vmapped groups keep
    run_epoch's own mask (an inactive member's state passes through unchanged) and skip nothing.
    A skipped epoch's record is zeros with `ran` False; the host loop drops it.
    """
    def skipped(state, data):
        record = jax.eval_shape(run_epoch, state, data)[1]
        record = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), record)
        return state, {**record, "ran": state.active}

    return lambda state, data: jax.lax.cond(state.active, run_epoch, skipped, state, data)


SHARDS = ("batch", "members")


def build_group(runs, data: Data, *, epochs_per_call: int = 1, mesh=None, schedule_fn=None,
                members: str | None = None, shard: str = "batch", unroll: int = 1,
                reuse: bool = False):
    """Compile-ready functions for `runs` (all with one group_key) over a leading member axis.

    `members` picks how the member axis is computed ('vmap' or 'map'; default by backend).
    With a `mesh` of several devices, `shard` picks what is split across them: 'batch' (data
    parallel: every member's batch is split, parameters replicated) or 'members' (each device
    trains its share of the members on whole batches; the member count must divide evenly).
    `unroll`: train steps per iteration of the compiled loop over batches (see make_epoch).

    The step does not donate its input state: `jaxmlp.loop.fit_group` hands a chunk's state to
    the observers while the next chunk trains.

    `reuse`: return the functions an earlier call built for runs and data of the same key
    (`_BUILT`), with the programs `jax.jit` compiled for them, instead of new ones. `jaxmlp.fit`
    asks for it; a sweep builds each group once, and benchmarks and tests that swap a module's
    function to build a variant (`models.first_layer_dot`, `epoch.masks_ahead_default`) need
    what they build to be traced anew.
    """
    runs = tuple(runs)
    keys = {group_key(r, "vmap") for r in runs}  # whatever they use: see group_key
    if len(keys) != 1:
        raise ValueError(f"runs {[r.name for r in runs]} do not share shapes; group them by "
                         "group.group_key first")
    if shard not in SHARDS:
        raise ValueError(f"shard={shard!r}: allowed {', '.join(map(repr, SHARDS))}")
    # What the functions below close over; the runs' numbers are the state's, not theirs.
    key = (keys.pop(), models.uses_of(r.model for r in runs), len(runs), data.x_train.shape[0],
           epochs_per_call, mesh, shard, unroll,
           members or member_axis(),
           None if schedule_fn is None else schedule_fingerprint(schedule_fn))
    with _BUILT_LOCK:
        built = _BUILT.pop(key, None) if reuse else None
        if built is not None:
            _BUILT[key] = built  # most recently used last
    if built is None:
        built = _build(runs, data, epochs_per_call, mesh, schedule_fn, members, shard, unroll)
        if reuse:
            with _BUILT_LOCK:
                _BUILT[key] = built
                while len(_BUILT) > BUILT_KEEP:
                    _BUILT.pop(next(iter(_BUILT)))
    fns, tx, step, final_evaluation, placed = built
    return Group(runs, fns, tx, step, final_evaluation, epochs_per_call,
                 data.x_val.shape[0] > 0, placed)


# Built groups' functions by what they close over (`build_group`'s key), most recently used
# last: another group with the same key (another seed, learning rate, dropout rate, patience:
# numbers the state holds) reuses them with `reuse=True`, and with them the programs
# `jax.jit` compiled for them, instead of tracing and compiling its own. So `jaxmlp.fit`
# called again on data of the same shapes (a loop over seeds or learning rates) compiles
# nothing (`python -m jaxmlp.bench.refit` times it).
_BUILT: dict[tuple, tuple] = {}
_BUILT_LOCK = threading.Lock()
BUILT_KEEP = 16


def _build(runs, data, epochs_per_call, mesh, schedule_fn, members, shard, unroll):
    split_members = shard == "members" and mesh is not None and mesh.size > 1
    if split_members and len(runs) % mesh.size:
        raise ValueError(f"shard='members': {len(runs)} members cannot be split evenly over "
                         f"{mesh.size} devices; use a multiple of {mesh.size} or shard='batch'")
    # Only what some member uses: no dropout masks, no L2 term where every rate is 0.
    fns = models.build(runs[0].model, models.uses_of(r.model for r in runs))
    tx = optim.make(runs[0].optim)
    run_epoch = make_epoch(fns, tx, batch_size=runs[0].train.batch_size,
                           n_train=data.x_train.shape[0], mesh=None if split_members else mesh,
                           schedule_fn=schedule_fn, unroll=unroll)
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

    def final_evaluation(inputs, data):
        def one(member):
            hooks, weights, l2 = member
            params, batch_stats = H.finalize(hooks, weights)
            scores = {split: evaluate(fns, params, batch_stats, l2, x, y)
                      for split, (x, y) in {"train": (data.x_train, data.y_train),
                                            "val": (data.x_val, data.y_val),
                                            "test": (data.x_test, data.y_test)}.items()}
            return (params, batch_stats), scores
        return jax.vmap(one)(inputs)

    placed = by_member
    if placed is None and mesh is not None and mesh.size > 1:
        placed = NamedSharding(mesh, P())  # data parallel: every device holds the whole state
    return fns, tx, jax.jit(step), jax.jit(final_evaluation), placed


def final_inputs(state: TrainState):
    """What the final evaluation reads from a group's state: the hooks (best weights), the
    weights and the L2 coefficients. Not the optimizer state, so that groups that differ only
    in their optimizer, batch or epochs can share the program."""
    return state.hooks, (state.params, state.batch_stats), state.l2


def compile_group(group: Group, state: TrainState, data: Data,
                  compiler_options: dict | None = None, *, final: bool = True,
                  lowered=None) -> Group:
    """The group with its step (and, unless `final=False`, its final evaluation: see
    `compile_final`) compiled ahead of time for these shapes.

    Safe to call from several threads at once: XLA compiles in parallel, which is how a sweep
    overlaps the compilation of all its groups. `compiler_options` (XLA debug options, e.g.
    {"xla_cpu_use_fusion_emitters": False}) are dropped, with the default compile, when this
    XLA does not know one of them. `lowered`: the step already traced and lowered
    (`group.step.lower(state, data)`), so that only XLA's part, which runs without Python's
    lock, is left.
    """
    step = _compile(group.step, (state, data), compiler_options, lowered=lowered)
    group = group._replace(step=step)
    return compile_final(group, state, data, compiler_options) if final else group


# Compiled final evaluations by (model key, input shapes and shardings, options): a sweep's
# groups that differ only in optimizer, batch size or epochs (TA8 vmapped: 15 groups, 9 final
# programs) compile it once. A Future per key, so that two threads asking at once compile once.
_FINALS: dict[tuple, Future] = {}
_FINALS_LOCK = threading.Lock()


def compile_final(group: Group, state: TrainState, data: Data,
                  compiler_options: dict | None = None) -> Group:
    """The group with its final evaluation compiled ahead of time, or the program an earlier
    group with the same model, member count and shapes compiled (thread-safe); the L2 term
    (`models.Uses.l2`) is part of the model here, as the reported losses include it.

    A sweep compiles it after every group's step (`jaxmlp.experiments.cli`): the final
    evaluation is needed only when a group has finished training."""
    args = (final_inputs(state), data)
    leaves, tree = jax.tree.flatten(args)
    key = (_model_key(group.runs[0]), group.fns.uses.l2, tree,
           tuple((a.shape, str(a.dtype), getattr(a, "sharding", None)) for a in leaves),
           tuple(sorted((compiler_options or {}).items())))
    with _FINALS_LOCK:
        future, owner = _FINALS.get(key), False
        if future is None:
            future, owner = _FINALS.setdefault(key, Future()), True
    if owner:
        try:
            future.set_result(_compile(group.evaluate, args, compiler_options))
        except BaseException as e:
            with _FINALS_LOCK:
                del _FINALS[key]  # a later group tries again
            future.set_exception(e)
            raise
    compiled = future.result()
    return group._replace(evaluate=compiled)


def _compile(fn, args, compiler_options: dict | None, lowered=None):
    lowered = fn.lower(*args) if lowered is None else lowered
    if compiler_options:
        try:
            return lowered.compile(compiler_options=compiler_options)
        except jax.errors.JaxRuntimeError as e:
            if "No such compile option" not in str(e):
                raise
    return lowered.compile()


def init_group(group: Group) -> TrainState:
    """Initial states of every member, stacked on a leading axis, placed as the group trains
    them on several devices (`Group.state_sharding`)."""
    state = init_states(group.runs, group.has_val)
    if group.state_sharding is not None:
        state = jax.device_put(state, group.state_sharding)
    return state



def local_mesh() -> Mesh | None:
    """A data-parallel mesh over every local device; None with one device."""
    if jax.local_device_count() == 1:
        return None
    return Mesh(np.array(jax.local_devices()), ("data",))
