"""Many runs as one program: the member axis (vmap or lax.map), the device mesh, compilation.

Owns `group_key` (which runs may share a program), `build_group` (the jitted multi-epoch step:
a `lax.scan` of `epochs_per_call` epochs of every member, and the final evaluation with the
restored weights), `compile_group` (ahead of time, thread-safe) and `init_group`. The numbers
come from `jaxmlp.epoch`; the host loop that calls the step lives in `jaxmlp.loop`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxmlp import hooks as H
from jaxmlp import models, optim
from jaxmlp.config import RunConfig
from jaxmlp.epoch import Data, TrainState, evaluate, init_states, make_epoch


def group_key(run: RunConfig) -> tuple:
    """Runs with equal keys train as one vmapped program (numbers may differ, shapes may not)."""
    m = run.model
    return (m.hidden, m.activation, m.batch_norm, m.input_dim, m.num_classes, m.output_clip,
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
    has_val: bool  # the data has validation examples (else hooks on val_* stay idle)


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
                members: str | None = None, shard: str = "batch", unroll: int = 1):
    """Compile-ready functions for `runs` (all with one group_key) over a leading member axis.

    `members` picks how the member axis is computed ('vmap' or 'map'; default by backend).
    With a `mesh` of several devices, `shard` picks what is split across them: 'batch' (data
    parallel: every member's batch is split, parameters replicated) or 'members' (each device
    trains its share of the members on whole batches; the member count must divide evenly).
    `unroll`: train steps per iteration of the compiled loop over batches (see make_epoch).

    The step does not donate its input state: `jaxmlp.loop.fit_group` hands a chunk's state to
    the observers while the next chunk trains.
    """
    runs = tuple(runs)
    keys = {group_key(r) for r in runs}
    if len(keys) != 1:
        raise ValueError(f"runs {[r.name for r in runs]} do not share shapes; group them by "
                         "group.group_key first")
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

    def final(state, data):
        def one(s):
            params, batch_stats = H.finalize(s.hooks, (s.params, s.batch_stats))
            scores = {split: evaluate(fns, params, batch_stats, s.l2, x, y)
                      for split, (x, y) in {"train": (data.x_train, data.y_train),
                                            "val": (data.x_val, data.y_val),
                                            "test": (data.x_test, data.y_test)}.items()}
            return (params, batch_stats), scores
        return jax.vmap(one)(state)

    return Group(runs, fns, tx, jax.jit(step), jax.jit(final), epochs_per_call,
                 data.x_val.shape[0] > 0)


def compile_group(group: Group, state: TrainState, data: Data,
                  compiler_options: dict | None = None) -> Group:
    """The group with its step and final programs compiled ahead of time for these shapes.

    Safe to call from several threads at once: XLA compiles in parallel, which is how a sweep
    overlaps the compilation of all its groups. `compiler_options` (XLA debug options, e.g.
    {"xla_cpu_use_fusion_emitters": False}) are dropped, with the default compile, when this
    XLA does not know one of them.
    """
    def compile_(fn):
        lowered = fn.lower(state, data)
        if compiler_options:
            try:
                return lowered.compile(compiler_options=compiler_options)
            except jax.errors.JaxRuntimeError as e:
                if "No such compile option" not in str(e):
                    raise
        return lowered.compile()

    return group._replace(step=compile_(group.step), final=compile_(group.final))


def init_group(group: Group) -> TrainState:
    """Initial states of every member, stacked on a leading axis."""
    return init_states(group.runs, group.has_val)



def local_mesh() -> Mesh | None:
    """A data-parallel mesh over every local device; None with one device."""
    if jax.local_device_count() == 1:
        return None
    return Mesh(np.array(jax.local_devices()), ("data",))
