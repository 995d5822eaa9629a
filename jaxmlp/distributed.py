"""Training across processes: the jax.distributed job, the global mesh, the sweep split, merge.

Two ways to use several processes (one per host, or several on one host), one engine:

- **One run, data parallel.** Every process loads the same dataset; `global_mesh()` spans every
  process's devices and the epoch's own `device_data(ds, mesh)` replicates the arrays on it
  (`jax.device_put` of identical host arrays, which JAX accepts for a sharding that spans
  processes). The epoch then splits each batch over all devices and all-reduces the gradients
  (gloo over TCP on the CPU, NCCL on GPUs): `fit_run(run, device_data(ds, mesh), mesh=mesh)`,
  the same calls as on one host.
- **A sweep, split by groups.** Each process trains its units of the sweep (`work_units`: its
  pieces of the groups too big for one process, and the whole groups it `claim`s first when it
  is free) as an ordinary one-process JAX program on its own devices, with no communication
  while training but the claims (and so per-process Orbax checkpoints, which refuse host-local
  arrays inside a multi-process JAX job). `join_sweep` connects the processes through JAX's
  coordination service only. Before training they `gather` which members each one's folder has
  finished and which checkpoints it holds (so on resume nothing finished trains twice, and a
  checkpoint only one host holds is resumed there: `first_holders`); at the end `merge_files`
  copies every process's member records and history CSVs into process 0's results folder
  through it, so no shared filesystem is needed, and only process 0 writes results.json.

A process joins a job from three environment variables (see docs/guide/multihost.md):
JAXMLP_COORDINATOR (host:port of process 0), JAXMLP_NUM_PROCESSES and JAXMLP_PROCESS_ID.
`launch_local` starts such a job on this machine alone (an experiment's `--processes N`): N
processes, each on its own share of the CPU cores, split a sweep's members.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh

from jaxmlp import atomic

ENV_COORDINATOR = "JAXMLP_COORDINATOR"
ENV_NUM_PROCESSES = "JAXMLP_NUM_PROCESSES"
ENV_PROCESS_ID = "JAXMLP_PROCESS_ID"
# Set by `launch_local` for each process it starts: the CPU cores it runs on ("0" or "2,3").
ENV_LOCAL_CORES = "JAXMLP_LOCAL_CORES"
# A process that finishes its share early waits this long for the others: in the merge
# (process 0) and in the session's shutdown barrier (every process).
WAIT_S = 7 * 24 * 3600


class Processes(NamedTuple):
    """This process's place in the job: `index` in range(`count`)."""

    index: int
    count: int


class EnvError(ValueError):
    """A JAXMLP_* variable that does not describe a job (one line: what is wrong, what is
    allowed)."""


def from_env(env=None) -> tuple[str, Processes] | None:
    """(coordinator address, Processes) from JAXMLP_* variables; None when not set or count 1."""
    env = os.environ if env is None else env
    if env.get(ENV_NUM_PROCESSES, "1").strip() in ("", "1"):
        return None
    try:
        count, index = int(env[ENV_NUM_PROCESSES]), int(env.get(ENV_PROCESS_ID, ""))
    except ValueError:
        raise EnvError(f"{ENV_NUM_PROCESSES}={env.get(ENV_NUM_PROCESSES)!r} and {ENV_PROCESS_ID}="
                         f"{env.get(ENV_PROCESS_ID)!r}: both must be integers") from None
    if not 0 <= index < count:
        raise EnvError(f"{ENV_PROCESS_ID}={index}: must be in 0..{count - 1} "
                         f"({ENV_NUM_PROCESSES}={count})")
    address = env.get(ENV_COORDINATOR, "")
    if ":" not in address:
        raise EnvError(f"{ENV_COORDINATOR}={address!r}: must be host:port of process 0")
    return address, Processes(index, count)


def start(env=None) -> Processes:
    """Join the one JAX job the environment describes, for data-parallel training across its
    processes (call before any device use); Processes(0, 1) when there is no job.

    CPU collectives go over gloo (TCP), set explicitly although it is JAX's current default.
    """
    job = from_env(env)
    if job is None:
        return Processes(0, 1)
    address, procs = job
    if not jax.distributed.is_initialized():
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(address, procs.count, procs.index)
    return procs


@dataclasses.dataclass
class SweepJob:
    """A sweep split over processes: this process's place and, across several, the session of
    JAX's coordination service that `merge_files` talks through (JAX itself stays one process)."""

    index: int = 0
    count: int = 1
    session: Any = None


def join_sweep(env=None) -> SweepJob:
    """Connect to the sweep's other processes (process 0 hosts the coordination service; each
    waits up to 5 minutes for the others to start); SweepJob(0, 1) when there is no job.

    A session separate from `jax.distributed`'s global one, so JAX keeps seeing one process with
    its local devices. JAX has no public name for that class; it is the one behind
    `jax.distributed.initialize`.
    """
    job = from_env(env)
    if job is None:
        return SweepJob()
    address, procs = job
    from jax._src.distributed import State

    session = State()
    session.initialize(address, procs.count, procs.index, cluster_detection_method="deactivate",
                       shutdown_timeout_seconds=WAIT_S)
    return SweepJob(procs.index, procs.count, session)


def global_mesh() -> Mesh | None:
    """A one-axis ('data') mesh over every device of every process; None for a single device."""
    if jax.device_count() == 1:
        return None
    return Mesh(np.array(jax.devices()), ("data",))


def members_for_process(members: list, index: int, count: int) -> list:
    """This process's share of `members`: every `count`-th one from `index` (round robin).

    Deterministic and disjoint: the shares of processes 0..count-1 cover `members` exactly once.
    Round robin rather than blocks, because a sweep lists a run's seeds together and runs grow
    in cost along the list; every process gets a similar mix.
    """
    if not 0 <= index < count:
        raise ValueError(f"index={index}: must be in 0..{count - 1}")
    return list(members)[index::count]


class Unit(NamedTuple):
    """What one process trains as one program: a whole group, or its piece of a group cut
    between the processes."""

    members: list
    owner: int | None  # the process that trains it; None: whichever claims it first


def work_units(groups: list[list], count: int, cost) -> list[Unit]:
    """A sweep's `groups` (lists of members that compile as one program) as the units its
    `count` processes train, in the order they are taken; `cost(member)`: a number
    proportional to the member's training time (a guess: early stopping is not known ahead).

    One process: every group, in order, its own. Several: a group costing more than half of an
    even share is cut round robin into one piece per process (`members_for_process`), each piece
    owned by its process (the big groups are spread without waiting on anyone); every other
    group is whole, for the first process to claim it (`claim`), the costliest first. A process
    takes its pieces, then claims the next whole group whenever it is free, so a wrong guess
    costs at most the last group's time at the end, and each of those programs is compiled by
    one process only (compiling takes time from the core that trains). A member trains in the
    same group as with one process, unless its group was cut.
    """
    if count == 1:
        return [Unit(list(g), 0) for g in groups]
    weights = [sum(cost(m) for m in g) for g in groups]
    share = sum(weights) / count
    pieces, whole, first = [], [], 0
    for g, w in zip(groups, weights):
        if w > share / 2 and len(g) > 1:
            k = min(count, len(g))
            pieces += [Unit(members_for_process(g, j, k), (first + j) % count) for j in range(k)]
            first = (first + k) % count  # groups with fewer members than processes rotate
        else:
            whole.append((w, g))
    order = sorted(range(len(whole)), key=lambda i: (-whole[i][0], i))
    return pieces + [Unit(list(whole[i][1]), None) for i in order]


def claim(job: SweepJob, key: str) -> bool:
    """Take unit `key` for this process: True for exactly one process of the job (the first to
    ask, through an insert into the coordination service's key-value store that fails when the
    key exists); always True without a job."""
    if job.session is None:
        return True
    try:
        job.session.client.key_value_set(f"jaxmlp/claim/{key}", str(job.index))
    except RuntimeError as e:  # jax.errors.JaxRuntimeError
        if "ALREADY_EXISTS" in str(e):
            return False
        raise
    return True


def gather(job: SweepJob, name: str, value) -> list:
    """Every process's `value` (anything JSON holds) under `name`, in process order; [value]
    without a job. Returns once every process has sent its own, so it is a barrier too."""
    if job.session is None:
        return [value]
    client = job.session.client
    client.key_value_set(f"jaxmlp/gather/{name}/{job.index}", json.dumps(value))
    return [json.loads(client.blocking_key_value_get(f"jaxmlp/gather/{name}/{i}", WAIT_S * 1000))
            for i in range(job.count)]


def first_holders(held: list[list[str]]) -> dict[str, int]:
    """{key: the first process that holds it} for each key that some processes of `held` (one
    list per process, from `gather`) hold and others do not. Hosts without a shared filesystem
    each hold the checkpoints of the groups they trained: a key every process holds (one shared
    folder) is nobody's in particular."""
    first: dict[str, int] = {}
    for i, keys in enumerate(held):
        for key in keys:
            first.setdefault(key, i)
    everyone = set.intersection(*map(set, held)) if held else set()
    return {key: i for key, i in first.items() if key not in everyone}


def merge_files(out: Path, records: list[Path], job: SweepJob) -> bool:
    """Copy each process's member `records` (and the history CSVs they name) into process 0's
    `out`, then end the session; True in the process that writes results.json (process 0).

    The files travel through the coordination service's key-value store, one key per file (so
    no message grows with the sweep), so processes on hosts without a shared filesystem merge as
    well; a file process 0 already has with the same text (a shared filesystem) is left alone.
    A process that finishes early waits here for the rest.
    """
    if job.session is None:
        return True
    out, client = Path(out), job.session.client
    mine = {}
    for path in map(Path, records if job.index else []):  # process 0 has its own files
        text = path.read_text()
        mine[path.relative_to(out).as_posix()] = text
        history = json.loads(text).get("history_csv")
        if history and (out / history).exists():
            mine[history] = (out / history).read_text()
    for rel, text in mine.items():
        client.key_value_set(f"jaxmlp/merge/{job.index}/{rel}", text)
    client.key_value_set(f"jaxmlp/merge/{job.index}", json.dumps(sorted(mine)))  # then the list
    if job.index == 0:
        for peer in range(1, job.count):
            for rel in json.loads(client.blocking_key_value_get(f"jaxmlp/merge/{peer}",
                                                                WAIT_S * 1000)):
                text = client.blocking_key_value_get(f"jaxmlp/merge/{peer}/{rel}", 60_000)
                path = _inside(out, rel)
                if not path.exists() or path.read_text() != text:
                    atomic.write_text(path, text)
    job.session.shutdown()  # a barrier: every process gets here before any leaves
    return job.index == 0


def _inside(out: Path, rel: str) -> Path:
    """Where a peer's file goes: only a member record or a history CSV inside `out` (whoever
    reaches the coordinator port can send names, so a name is data, never a path to follow)."""
    path = (out / rel).resolve()
    if out.resolve() not in path.parents or not rel.startswith(("members/", "histories/")):
        raise ValueError(f"a peer sent a file name outside {out}/members or histories: {rel!r}")
    return path


def cores() -> list[int]:
    """The CPU cores this process may run on (its affinity where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def core_shares(n: int, available: list[int] | None = None) -> list[list[int]]:
    """`available` cores (default `cores()`) in `n` contiguous blocks as even as they go."""
    available = cores() if available is None else list(available)
    if not 1 <= n <= len(available):
        raise ValueError(f"--processes {n}: allowed 1 to {len(available)} on this machine (the "
                         f"CPU cores this process may use); one process per core at most")
    size, extra = divmod(len(available), n)
    starts = np.cumsum([0] + [size + (i < extra) for i in range(n)])
    return [available[a:b] for a, b in zip(starts[:-1], starts[1:])]


def free_port() -> int:
    """A TCP port on localhost that was free a moment ago (for the coordinator)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def local_env(index: int, count: int, port: int, share: list[int], env=None) -> dict:
    """The environment of process `index` of a `count`-process job on this machine."""
    env = dict(os.environ if env is None else env)
    env.update({ENV_COORDINATOR: f"127.0.0.1:{port}", ENV_NUM_PROCESSES: str(count),
                ENV_PROCESS_ID: str(index), ENV_LOCAL_CORES: ",".join(map(str, share))})
    if len(share) == 1:
        # One core: XLA's CPU matmuls in the calling thread instead of a pool of one.
        flags = env.get("XLA_FLAGS", "")
        if "xla_cpu_multi_thread_eigen" not in flags:
            env["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false").strip()
    return env


def launch_local(command: list[str], count: int, *, env=None, stream=None,
                 poll_s: float = 0.2) -> int:
    """Run `command` as the `count` processes of one job on this machine and wait for them.

    Why: XLA's CPU backend splits each of a small model's matmuls over every core of the
    process, and a batch-64 MLP step leaves much of that unused; a sweep's members are
    independent, so `count` processes on `count` disjoint blocks of cores (affinity set before
    the command starts, where the OS has it) each train their share of the groups
    (`work_units`, `claim`), and process 0 merges the records
    (`merge_files`). Each process's output lines go to `stream` (default stderr) prefixed with
    `[i/count]`. When a process fails the others are stopped; returns a failed process's exit
    status (0 when all succeed). A started process is killed if the launcher dies.
    """
    shares = core_shares(count)
    port, stream = free_port(), sys.stderr if stream is None else stream
    procs, pumps, lock = [], [], threading.Lock()

    def pump(i, pipe):
        with pipe:
            for line in pipe:
                with lock:
                    stream.write(f"[{i}/{count}] {line}")
                    stream.flush()

    try:
        for i, share in enumerate(shares):
            p = subprocess.Popen(_child_command(command, share),
                                 env=local_env(i, count, port, share, env),
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 errors="replace", bufsize=1)
            procs.append(p)
            pumps.append(threading.Thread(target=pump, args=(i, p.stdout), daemon=True))
            pumps[-1].start()
        while True:
            codes = [p.poll() for p in procs]
            failed = [c for c in codes if c not in (None, 0)]
            if failed or all(c == 0 for c in codes):
                break
            time.sleep(poll_s)
    except KeyboardInterrupt:  # Ctrl-C: the processes got SIGINT too; make sure they end
        _stop(procs)
        return 130
    except BaseException:
        _stop(procs)
        raise
    _stop(procs)
    for t in pumps:
        t.join(timeout=5)
    if not failed:
        return 0
    return failed[0] if failed[0] > 0 else 128 - failed[0]  # killed by signal S: 128 + S


# What each started process runs first, in an interpreter of its own, before it becomes the
# job's command (Linux): run on its cores, get SIGKILL when the launcher dies (a process of a
# job ignores SIGTERM: JAX's coordination client takes it as a preemption notice; checkpoints
# are atomic and resume is exact from a kill), and end at once if the launcher died before
# that call. Then exec: the affinity and the death signal stay with the command. (Done in the
# launcher between fork and exec, as a `preexec_fn`, this is not safe in a process with
# threads, JAX's included.)
_CHILD = """\
import ctypes, os, signal, sys
os.sched_setaffinity(0, [int(c) for c in sys.argv[2].split(",")])
try:
    ctypes.CDLL(None).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
except (OSError, AttributeError):
    pass
if os.getppid() != int(sys.argv[1]):
    os._exit(128 + int(signal.SIGKILL))
os.execvp(sys.argv[3], sys.argv[3:])
"""


def _child_command(command: list[str], share: list[int]) -> list[str]:
    """`command` started on `share`'s cores and killed with the launcher, where the OS can
    (Linux: `_CHILD`); elsewhere `command` as it is. A command that cannot be found is a
    FileNotFoundError here, in the launcher, as `subprocess.Popen` gives it."""
    if not hasattr(os, "sched_setaffinity"):
        return command
    if shutil.which(command[0]) is None:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", command[0])
    return [sys.executable, "-c", _CHILD, str(os.getpid()), ",".join(map(str, share)),
            *command]


def _stop(procs, grace_s: float = 10.0) -> None:
    """Stop the processes still running: SIGINT (Python's KeyboardInterrupt, which lets a sweep
    write its finished groups' files; JAX's coordination client takes SIGTERM as a preemption
    notice instead), then SIGKILL after `grace_s`."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    deadline = time.monotonic() + grace_s
    for p in procs:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
