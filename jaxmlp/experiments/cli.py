"""The command line shared by every experiment: flags, checks, output roots, results.json.

One root per invocation: the experiment's own definition (its runs, seeds and epochs) writes the
committed `experiments/<name>/` with checkpoints and TensorBoard logs in git-ignored
`runs/<name>/`; anything else (--seeds, --epochs, --only, --quick) writes `--out DIR`, or a
folder derived from the flags under `runs/`, with its checkpoints and logs in `DIR/runs/`.
An invocation that trains nothing leaves results.json and the site as they are.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import hashlib
import itertools
import json
import os
import pkgutil
import re
import shlex
import sys
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jax
import numpy as np

from jaxmlp import atomic, distributed, observers, records, runner
from jaxmlp import config as C
from jaxmlp.epoch import device_data
from jaxmlp.group import local_mesh
from jaxmlp.records import count_params


@dataclasses.dataclass(frozen=True)
class Experiment:
    """An experiment is data: its runs and what the results page should say about them."""

    name: str
    title: str
    dataset: str
    runs: tuple[C.RunConfig, ...]
    notes: tuple[str, ...] = ()
    seeds: int = 3  # seeds per run in the committed results
    # Runs that train another number of seeds, e.g. {"cb_early_stopping": 5}: noisy outcomes
    # (the epoch EarlyStopping fires, the plateau's cuts) need more seeds to compare.
    more_seeds: dict = dataclasses.field(default_factory=dict)
    # For its site page (`python -m jaxmlp run` records them in results.json["page"]):
    objective: str = ""     # one or two sentences: what the experiment wants to find out
    description: str = ""   # Markdown: how, and anything a reader needs first
    template: str = ""      # a Jinja2 page template, relative to the experiment's file


class UsageError(Exception):
    """Bad command-line input: printed as one message, exit status 2."""


MAX_EPOCHS, MAX_SEEDS, MAX_EPOCHS_PER_CALL = 100_000, 1_000, 1_000
MAX_UNROLL = 64  # train steps per loop iteration: the program grows with it
MAX_COMPILE_THREADS = 256
MAX_PROCESSES = 1024
# The resume checkpoint's default spacing, in seconds. On a GPU a chunk of TA8 epochs takes
# about 0.5 s, and saving the group's whole state (weights, Adam's moments, the hooks' best
# weights: up to ~16 MB per TA8 member) after each one kept the observer thread busy: it worked
# 35 s in a warm TA8 sweep on an H200, and training waited 15.8 s for it. The same sweep on tiny
# data on this repo's 2-core CPU: 5 s cut the observer thread's time from 18.0 to 10.5 s. A
# kill loses at most this much training; resume is exact from any saved chunk.
CHECKPOINT_EVERY = 5.0


# An experiment's name names its folders (experiments/<name>, runs/<name>): no separators, no
# dots, nothing a shell reads as an option.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
# This package's source checkout, whose experiments/ holds committed results (None when jaxmlp
# is installed elsewhere).
SOURCE = Path(__file__).resolve().parents[2]
SOURCE = SOURCE if (SOURCE / "pyproject.toml").is_file() else None


def builtin_names() -> tuple[str, ...]:
    """The built-in experiments (the modules beside this one) and `bench`, the folder of the
    benchmark records: names an experiment of one's own may not take."""
    here = Path(__file__).parent
    return tuple(sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name != "cli")
                 ) + ("bench",)


def check_name(exp: Experiment) -> None:
    if not isinstance(exp.name, str) or not NAME.fullmatch(exp.name):
        raise UsageError(f"experiment name {exp.name!r}: allowed 1 to 64 letters, digits, '_' "
                         "and '-', starting with a letter or digit (it names the folders "
                         "experiments/<name> and runs/<name>)")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one `error:` line, as for every other bad input (not the usage)
        self.exit(2, f"error: {message} ({self.prog} --help lists the flags)\n")


def parse(exp: Experiment, argv, prog: str | None = None) -> argparse.Namespace:
    """The command line; `prog` is the command that runs the experiment (default
    `python -m jaxmlp.experiments.<name>`), for --help and results.json's "command"."""
    argv = list(argv)
    p = _Parser(prog=prog or f"python -m jaxmlp.experiments.{exp.name}", description=exp.title)
    p.add_argument("--data-dir", help="directory in the Keras cache layout "
                   "(default: $JAXMLP_DATA_DIR, then Keras's cache: $KERAS_HOME/datasets or "
                   "~/.keras/datasets, then tfds)")
    p.add_argument("--download", action="store_true",
                   help="when the dataset is not found, download the official files "
                   "(sha256-checked, resumable) into --data-dir or the first default folder; "
                   "without it nothing is downloaded")
    p.add_argument("--mirror", metavar="URL", help="download from URL/<file name> instead of "
                   "the official hosts (default $JAXMLP_DATA_MIRROR)")
    p.add_argument("--out", help=f"the invocation's root: results, and checkpoints and "
                   f"TensorBoard logs in OUT/runs (default: experiments/{exp.name} with runs/"
                   f"{exp.name}, written only by the experiment's own runs, seeds and epochs; "
                   f"with --seeds/--epochs/--only a folder derived from them under runs/; with "
                   f"--quick runs/quick/{exp.name})")
    p.add_argument("--retrain", nargs="*", metavar="NAME",
                   help="train the selected runs again from scratch: discard their checkpoints, "
                   "member records, histories and TensorBoard logs first; with names, only "
                   "those runs (the others are kept, and the results stay where they are)")
    p.add_argument("--only", nargs="+", metavar="NAME", help="run only these runs")
    p.add_argument("--seeds", type=int,
                   help=f"seeds per run (default {exp.seeds}; 1 with --quick), 1 to {MAX_SEEDS}")
    p.add_argument("--epochs", type=int,
                   help=f"override every run's (maximum) epochs, 1 to {MAX_EPOCHS}")
    p.add_argument("--list", action="store_true",
                   help="list runs and parameter counts; no training")
    p.add_argument("--quick", action="store_true",
                   help="smoke test on tiny synthetic data (seconds)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--engine", choices=("group", "solo"), default="group",
                   help="group: members sharing shapes train as one vmapped program (default); "
                   "solo: one run at a time")
    p.add_argument("--epochs-per-call", type=int,
                   help="epochs per host round-trip (default 1; 3 with --quick); observers see "
                   "every epoch either way, checkpoints are saved once per call")
    p.add_argument("--unroll", type=int, default=1, metavar="K",
                   help="train steps per iteration of the compiled loop over batches (default "
                   "1): larger K gives a longer program with fewer loop iterations; the "
                   "computation is the same (equal to float32 rounding: XLA may fuse the "
                   "unrolled steps differently)")
    p.add_argument("--compile-threads", type=int, metavar="N",
                   help="groups compiled at once while earlier groups train (default: every "
                   "pending group, up to the CPU count); fewer start the first group sooner "
                   "and let later compiles reuse XLA's autotuning of the same matmuls")
    p.add_argument("--checkpoint-every", type=float, metavar="S",
                   help=f"S > 0: save the resume checkpoint after a call at most every S "
                   f"seconds, and never while the previous write is in flight (default "
                   f"{CHECKPOINT_EVERY:g}; skipped calls are harmless: resume is exact from any "
                   f"saved call); 0: after every call, waiting for the previous write")
    p.add_argument("--processes", type=int, default=1, metavar="N",
                   help="train the sweep as N processes on this machine, each on its own share "
                   "of the CPU cores, merged into one results.json (default 1; on a CPU, up to "
                   "one per core: XLA leaves much of a core count unused on one small model's "
                   "matmuls); each process takes its piece of the biggest groups, then the next "
                   "whole group whenever it is free; the numbers equal one process's to float32 "
                   "rounding (XLA may sum a large product in another order on fewer cores)")
    p.add_argument("--shard", choices=("batch", "members"), default="batch",
                   help="with several devices: split each batch over them (default), or split "
                   "a group's members over them (groups whose size does not divide evenly "
                   "fall back to batch)")
    p.add_argument("--no-report", action="store_true", help="do not regenerate the site fragments")
    args = p.parse_args(argv)
    args.command = p.prog + (" " + shlex.join(argv) if argv else "")
    args.seeds_given = args.seeds is not None  # --quick's 1 seed is not a flag the user gave
    if args.seeds is None:
        args.seeds = 1 if args.quick else exp.seeds
    if args.epochs_per_call is None:  # a smoke run saves one checkpoint per group, not three
        args.epochs_per_call = QUICK_EPOCHS if args.quick else 1
    return args


def select(exp: Experiment, args) -> list[C.RunConfig]:
    """The runs asked for, with --epochs and --quick applied."""
    names = [r.name for r in exp.runs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UsageError(f"{exp.name}: duplicate run name {', '.join(twice)}; allowed: a name "
                         "of its own for each run (it names the run's records and files)")
    if not names:
        raise UsageError(f"{exp.name}: runs=() is empty; allowed one or more C.RunConfig(...)")
    dots = [n for n in names if not n.strip(".")]
    if dots:  # RunConfig allows dots; '..' would name the folder above
        raise UsageError(f"{exp.name}: run name {dots[0]!r}: allowed letters, digits, '.', '_' "
                         "and '-', not dots alone")
    long = [n for n in names if len(n) > 64]
    if long:  # it names files (<run>__seed<k>.json): a file system allows ~255 bytes
        raise UsageError(f"{exp.name}: run name {long[0][:20]!r}... has {len(long[0])} "
                         "characters; allowed at most 64")
    other = sorted({r.train.dataset for r in exp.runs} - {exp.dataset}) if exp.dataset else []
    if other:
        raise UsageError(f"{exp.name}: Experiment(dataset={exp.dataset!r}) but its runs train "
                         f"on {', '.join(map(repr, other))} (C.TrainConfig(dataset=...)); allowed "
                         "the runs' own dataset")
    unknown = [n for n in (args.only or []) + (args.retrain or []) if n not in names]
    if unknown:
        raise UsageError(f"unknown run name(s) {', '.join(unknown)}; valid names: "
                         + ", ".join(names))
    bad = {k: v for k, v in exp.more_seeds.items()
           if k not in names or type(v) is not int or not 1 <= v <= MAX_SEEDS}
    if bad:
        raise UsageError(f"{exp.name}: more_seeds {bad}: allowed names of its runs, each with "
                         f"an integer from 1 to {MAX_SEEDS:,} seeds")
    for flag, value, top in (("--seeds", args.seeds, MAX_SEEDS),
                             ("--epochs", args.epochs, MAX_EPOCHS),
                             ("--epochs-per-call", args.epochs_per_call, MAX_EPOCHS_PER_CALL),
                             ("--unroll", args.unroll, MAX_UNROLL),
                             ("--compile-threads", args.compile_threads, MAX_COMPILE_THREADS),
                             ("--processes", args.processes, MAX_PROCESSES)):
        if value is not None and not 1 <= value <= top:
            raise UsageError(f"{flag} {value}: allowed an integer from 1 to {top:,}")
    if args.checkpoint_every is not None and not 0 <= args.checkpoint_every <= 86_400:  # NaN too
        raise UsageError(f"--checkpoint-every {args.checkpoint_every}: allowed seconds from 0 to "
                         "86,400")
    for flag, value in (("--out", args.out), ("--data-dir", args.data_dir),
                        ("--mirror", args.mirror)):
        try:
            (value or "").encode("utf-8")
        except UnicodeEncodeError:
            raise UsageError(f"{flag} {ascii(value)}: not valid UTF-8; allowed: a UTF-8 path or "
                             "URL") from None
    _check_data_flags(args)
    runs = [r for r in exp.runs if not args.only or r.name in args.only]
    runs = [dataclasses.replace(r, model=dataclasses.replace(
        r.model, input_dim=C.INPUT_DIMS[r.train.dataset])) for r in runs]
    if args.epochs is not None:
        runs = [_with_train(r, epochs=args.epochs) for r in runs]
    if args.quick:
        runs = [quick(r, cap_epochs=args.epochs is None) for r in runs]
    return runs


def _check_data_flags(args) -> None:
    """--data-dir and the download mirror, before anything is read or written."""
    from jaxmlp import datasets

    if args.data_dir is not None:
        folder = Path(args.data_dir).expanduser()
        if not args.data_dir.strip():
            raise UsageError("--data-dir '': empty; allowed: a folder in the Keras cache layout")
        if folder.exists() and not folder.is_dir():
            raise UsageError(f"--data-dir {args.data_dir}: is a file, not a folder; allowed: a "
                             "folder in the Keras cache layout")
    env = os.environ.get(datasets.ENV_MIRROR)
    if args.mirror is not None and not args.download:
        raise UsageError(f"--mirror {args.mirror}: nothing is downloaded without --download, so "
                         "the mirror would be ignored; allowed: --mirror with --download")
    try:
        if args.mirror is not None:
            datasets.check_mirror(args.mirror, "--mirror")
        elif args.download and env:  # the mirror a download would use
            datasets.check_mirror(env, f"${datasets.ENV_MIRROR}=")
    except datasets.DataError as e:
        raise UsageError(str(e)) from None


def _with_train(run: C.RunConfig, **changes) -> C.RunConfig:
    return dataclasses.replace(run, train=dataclasses.replace(run.train, **changes))


def quick(run: C.RunConfig, cap_epochs: bool = True) -> C.RunConfig:
    """The smoke version of a run: narrow layers, small input, one batch size for every run (so
    runs that differ only in it share a compiled program), at most 3 epochs (unless --epochs
    says otherwise)."""
    model = dataclasses.replace(run.model, hidden=tuple(max(2, h // 16) for h in run.model.hidden),
                                input_dim=QUICK_DIM)
    run = dataclasses.replace(run, model=model)
    epochs = min(run.train.epochs, QUICK_EPOCHS) if cap_epochs else run.train.epochs
    return _with_train(run, epochs=epochs, batch_size=QUICK_BATCH)


QUICK_DIM, QUICK_SIZES, QUICK_EPOCHS, QUICK_BATCH = 24, (320, 64, 64), 3, 16
# --quick's programs on the CPU: XLA's older loop emitters instead of its MLIR fusion emitters
# (a TA8 --quick step program compiled in 1.1 s instead of 2.1 s here; they run slower, which
# tiny data does not notice). A compile option, not an XLA_FLAGS entry: an XLA that does not
# know it raises an error jaxmlp.group.compile_group catches, where an unknown flag aborts.
QUICK_COMPILE = {"xla_cpu_use_fusion_emitters": False}


def synthetic(num_classes: int = 10, seed: int = 0):
    """A small learnable problem (labels = argmax of a fixed linear map) for --quick."""
    from jaxmlp.data import Dataset

    rng = np.random.default_rng(seed)
    w = rng.normal(size=(QUICK_DIM, num_classes))
    n = sum(QUICK_SIZES)
    x = rng.uniform(size=(n, QUICK_DIM)).astype(np.float32)
    y = np.argmax((x - 0.5) @ w, axis=1).astype(np.int32)
    a, b, _ = np.cumsum(QUICK_SIZES)
    identity = {"name": "synthetic", "source": "generated", "files": {},
                "n_train": QUICK_SIZES[0], "n_val": QUICK_SIZES[1], "n_test": QUICK_SIZES[2],
                "note": "tiny synthetic data for --quick; not a result"}
    return Dataset(x[:a], y[:a], x[a:b], y[a:b], x[b:], y[b:], num_classes, identity)


def check_writable(path: Path) -> None:
    """Fail early if results cannot be written to `path`, without making any folder: the
    nearest folder that exists on its way must be one this process may write in."""
    held = path.absolute()
    while not held.exists() and held != held.parent:
        held = held.parent
    if not held.is_dir():
        where = "it" if held == path.absolute() else str(held)
        raise UsageError(f"cannot write results to {path}: {where} is a file, not a folder")
    if not os.access(held, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write results to {path}: {held} is not writable")


def make_folders(*paths: Path) -> None:
    """Make the output folders (after every check has passed: a failed start leaves none) and
    write a file there, so that a folder results cannot go to fails before any training."""
    for path in paths:
        try:
            path.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path):
                pass
        except OSError as e:
            raise UsageError(f"cannot write results to {path}: {e.strerror or e}") from None


def listing(runs: list[C.RunConfig], seeds: dict | None = None) -> str:
    """A table of the runs, their settings, seeds (`seeds`: {name: count}) and parameter
    counts (Keras count_params)."""
    seeds = seeds or {}
    head = f"{'name':<24} {'part':>4} {'hidden':<16} {'act':<5} {'bn':<3} {'dropout':<15} " \
           f"{'l2':<7} {'init':<15} {'optim':<8} {'lr':<7} {'batch':>5} {'ep':>3} " \
           f"{'hooks':<22} {'lr-mix':<6} {'output':<18} {'seeds':>5} {'params':>9} {'trainable':>9}"
    lines = [head, "-" * len(head)]
    for r in runs:
        m, o, t, h = r.model, r.optim, r.train, r.hooks
        hooks = "+".join(k for k, v in (("es", h.early_stopping), ("plateau", h.reduce_lr),
                                        ("cosine", h.schedule), ("ckpt", h.checkpoint)) if v)
        opt = o.name + ("-nesterov" if o.nesterov else "")
        mix = h.lr_composition if h.schedule and h.reduce_lr else "-"
        output = m.output_init + (f"+l2 {m.output_l2:g}" if m.output_l2 else "")
        output += f"+clip {m.output_clip:g}" if m.output_clip else ""
        p = count_params(m)
        lines.append(
            f"{r.name:<24} {r.part:>4} {'-'.join(map(str, m.hidden)):<16} {m.activation:<5} "
            f"{'y' if m.batch_norm else 'n':<3} {'/'.join(f'{d:g}' for d in m.dropout):<15} "
            f"{m.l2:<7g} {m.kernel_init:<15} {opt:<8} {o.learning_rate:<7g} {t.batch_size:>5} "
            f"{t.epochs:>3} {hooks or '-':<22} {mix:<6} {output:<18} "
            f"{seeds.get(r.name, '-'):>5} {p['total']:>9,} "
            f"{p['trainable']:>9,}")
    return "\n".join(lines)


def load_data(exp: Experiment, args, runs):
    """The data the runs declare: their TrainConfig's dataset, validation_split and split (one
    combination per invocation; runs that differ are run separately with --only)."""
    from jaxmlp import datasets

    if args.quick:
        return synthetic()
    splits = sorted({(r.train.dataset, r.train.validation_split, r.train.split) for r in runs})
    if len(splits) != 1:
        raise UsageError("the selected runs declare different data (dataset, validation_split, "
                         f"split): {splits}; run each group with --only")
    name, validation_split, split = splits[0]
    _say(args, f"[{exp.name}] loading {name}")
    try:
        # uint8 pixels: they become float32 features on the device (epoch.device_data)
        ds = datasets.load(name, data_dir=args.data_dir, download=args.download,
                           mirror=args.mirror, validation_split=validation_split, split=split,
                           pixels=True)
    except datasets.DataError as e:
        raise UsageError(str(e)) from None
    i = ds.identity
    _say(args, f"[{exp.name}] {name}: {i['n_train']} train, {i['n_val']} validation, "
         f"{i['n_test']} test examples ({i['source']}: {i['path']})")
    return ds


def _members(n: int) -> str:
    return f"{n} member" + ("" if n == 1 else "s")


def _runs_of(group) -> str:
    """A group's runs for a progress line: `base` or `base +3 runs` (members of several runs
    that share a program train as one group)."""
    names = list(dict.fromkeys(m.run.name for m in group))
    more = len(names) - 1
    return names[0] + (f" +{more} run" + ("s" if more > 1 else "") if more else "")


def _say(args, text: str) -> None:
    if not args.quiet:
        print(text, file=sys.stderr, flush=True)


def run(exp: Experiment, argv=None, *, prog: str | None = None) -> int:
    """Entry point of `python -m jaxmlp.experiments.<name>` (and of `python -m jaxmlp run FILE`,
    whose command is `prog`); returns the exit status: 0 done, 2 bad input (one line on
    stderr), 3 the output root is in use by another process, 130 interrupted (Ctrl-C)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    runner.quiet_abandoned_reads()
    try:
        check_name(exp)
        args = parse(exp, argv, prog)
        with _warnings_as_lines(exp, args):
            return _run(exp, args, argv)
    except (UsageError, distributed.EnvError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except runner.Locked as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        # The sweep has closed its files on the way out: finished groups keep their records
        # and a group in training its last checkpoint, so the same command goes on from there
        # (without --retrain, which would discard them again).
        retrained = any(a == "--retrain" or a.startswith("--retrain=") for a in argv)
        again = "the same command without --retrain" if retrained else "the same command"
        print(f"[{exp.name}] interrupted; rerun {again} to resume", file=sys.stderr)
        return 130


@contextlib.contextmanager
def _warnings_as_lines(exp: Experiment, args):
    """jaxmlp's own warnings (e.g. a checkpoint restored from an older step) as the command's
    `[name] warning: ...` lines, instead of Python's `path:line: UserWarning:` and source line;
    other packages' warnings are shown as Python shows them."""
    package = Path(__file__).resolve().parents[1]
    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if Path(filename).resolve().is_relative_to(package):
            _say(args, f"[{exp.name}] warning: {message}")
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown


def seed_list(exp: Experiment, args, run_name: str) -> list[int]:
    """The seeds run `run_name` trains in this invocation: --seeds for every run when it differs
    from the definition (and 1 with --quick), else the definition's count for that run."""
    if args.seeds != exp.seeds:
        return list(range(args.seeds))
    return list(range(exp.more_seeds.get(run_name, exp.seeds)))


def experiment_members(exp: Experiment, args, runs) -> list[runner.Member]:
    return [m for r in runs for m in runner.members([r], seed_list(exp, args, r.name))]


def member_cost(m: runner.Member) -> float:
    """A member's training time, up to a factor, for sharing a sweep between processes: its
    epoch budget times its weights (a step's products cost in proportion to them; early
    stopping is not known ahead)."""
    return m.run.train.epochs * count_params(m.run.model)["total"]


def variant(exp: Experiment, args) -> list[str]:
    """The flags by which this invocation differs from the experiment's own definition."""
    given = getattr(args, "seeds_given", True)  # --quick alone means its 1 seed
    out = [f"--seeds {args.seeds}"] if args.seeds != exp.seeds and given else []
    # --epochs equal to every run's own is the definition itself
    out += [f"--epochs {args.epochs}"] if args.epochs is not None and any(
        r.train.epochs != args.epochs for r in exp.runs) else []
    out += ["--only " + " ".join(args.only)] if args.only else []
    return out + (["--quick"] if args.quick else [])


def roots(exp: Experiment, args) -> tuple[Path, Path]:
    """(results folder, checkpoints and TensorBoard folder) of this invocation, checked but not
    made: a variant of the definition never writes the committed results, and no invocation
    writes another experiment's."""
    default = Path("experiments") / exp.name
    if args.out is not None:
        out = Path(args.out)
        _check_out(exp, args)
    elif args.quick:
        out = Path("runs/quick") / exp.name
    elif variant(exp, args):
        out = Path("runs") / f"{exp.name}-{_suffix(args)}"
    else:
        out = default
    _check_not_others(exp, out)
    if _resolved(out) == _resolved(default):
        return out, Path("runs") / exp.name
    return out, out / "runs"


def _resolved(path: Path) -> Path:
    return path.absolute().resolve()


def _check_out(exp: Experiment, args) -> None:
    """--out names a folder of this invocation's own: not empty, not the current folder or the
    source checkout (or a folder above them), not a file, and inside the committed experiments/
    only the definition's own `experiments/<name>`."""
    text, flags = args.out, variant(exp, args)
    if not text.strip():
        raise UsageError(f"--out {text!r}: empty; allowed: a folder for the results, e.g. "
                         f"runs/{exp.name}-mine")
    where = _resolved(Path(text))
    for root, what in ((Path.cwd().resolve(), "the current folder"),
                       (SOURCE, "jaxmlp's source checkout")):
        if root is not None and (where == root or where in root.parents):
            raise UsageError(f"--out {text}: {'is' if where == root else 'holds'} {what}, "
                             f"whose files the results would mix with; allowed: a folder of "
                             f"their own, e.g. runs/{exp.name}-mine")
    if where.exists() and not where.is_dir():
        raise UsageError(f"--out {text}: is a file, not a folder; allowed: a folder (made if "
                         "missing)")
    default = Path("experiments") / exp.name
    committed = {_resolved(Path("experiments"))} | ({SOURCE / "experiments"} if SOURCE else set())
    for folder in committed:
        if where != folder and folder not in where.parents:
            continue
        if where == _resolved(default):
            if flags:
                raise UsageError(f"{' '.join(flags)} would overwrite {default}, which only the "
                                 f"experiment's own definition writes; allowed: another --out")
            continue  # the definition's own folder, as without --out
        shown = "experiments/" if folder == _resolved(Path("experiments")) else f"{folder}/"
        raise UsageError(f"--out {text}: inside {shown}, the committed results, where each "
                         "experiment's folder is written only by that experiment's own "
                         f"definition; allowed: a folder outside it, e.g. runs/{exp.name}-mine")


def _check_not_others(exp: Experiment, out: Path) -> None:
    """Refuse `out` when it, or a folder above it, holds another experiment's results.json."""
    where = _resolved(out)
    for folder in (where, *where.parents):
        try:
            other = json.loads((folder / "results.json").read_text(encoding="utf-8"))
            other = other.get("experiment") if isinstance(other, dict) else None
        except (OSError, ValueError):
            continue
        if isinstance(other, str) and other != exp.name:
            inside = "" if folder == where else f" is inside {folder}, which"
            raise UsageError(f"{out}{inside} holds the results of experiment {other} "
                             f"({folder / 'results.json'}); allowed: a folder of {exp.name}'s "
                             f"own, e.g. --out runs/{exp.name}-mine")


def _announce(exp: Experiment, args, out: Path) -> None:
    """One line saying where the results go when the flags, not --out, chose the folder."""
    if args.out is not None:
        return
    if args.quick:
        _say(args, f"[{exp.name}] --quick: tiny synthetic data, results go to {out}/")
    elif variant(exp, args):
        _say(args, f"[{exp.name}] {' '.join(variant(exp, args))} differs from the experiment's "
             f"definition: results go to {out}/ ({Path('experiments') / exp.name}/ is written "
             "only by the definition)")


def _suffix(args) -> str:
    parts = ([f"seeds{args.seeds}"] + ([f"epochs{args.epochs}"] if args.epochs else []))
    if args.only:
        names = "+".join(args.only)
        parts.append("only-" + (names if len(names) <= 40 else
                                f"{len(args.only)}runs-" + hashlib.sha1(
                                    names.encode()).hexdigest()[:6]))
    return "-".join(parts)


def _run(exp: Experiment, args, argv: list[str]) -> int:
    runs = select(exp, args)
    if args.list:
        print(listing(runs, {r.name: len(seed_list(exp, args, r.name)) for r in runs}))
        return 0
    job = distributed.from_env()  # a bad JAXMLP_* environment is refused before anything is written
    out, runs_dir = roots(exp, args)
    check_writable(out)
    check_writable(runs_dir)
    launch = args.processes > 1 and not os.environ.get(distributed.ENV_LOCAL_CORES)
    shares = _check_launch(exp, args, argv, job) if launch else None
    _announce(exp, args, out)  # after every check of the command line
    if launch:
        return _launch(exp, args, runs, out, shares)
    lock = runner.Lock(runs_dir, _lock_name())
    lock.check()  # in use: refused now, not after loading the data
    with contextlib.ExitStack() as held:  # taken in _train once the data has passed its checks
        return _train(exp, args, runs, out, runs_dir, lambda: held.enter_context(lock))


def _lock_name() -> str:
    """Each process of a multi-process sweep (which may share a filesystem) holds its own lock."""
    process = os.environ.get("JAXMLP_PROCESS_ID", "0") or "0"
    return "lock" if process == "0" else f"lock.process{process}"


def _check_launch(exp: Experiment, args, argv: list[str], job) -> list[list[int]]:
    """--processes N: the cores of each process, or why this command cannot start them."""
    if job is not None:
        raise UsageError(f"--processes {args.processes} starts a job of its own on this machine, "
                         f"but {distributed.ENV_NUM_PROCESSES} already names one; allowed: one "
                         "of the two")
    if sys.argv[len(sys.argv) - len(argv):] != argv or not getattr(sys, "orig_argv", None):
        raise UsageError(f"--processes {args.processes}: allowed on the command line (python -m "
                         f"jaxmlp.experiments.{exp.name} ... or python -m jaxmlp run ...), which "
                         "it starts again N times; this call did not come from it")
    try:
        return distributed.core_shares(args.processes)
    except ValueError as e:
        raise UsageError(str(e)) from None


def _launch(exp: Experiment, args, runs, out: Path, shares) -> int:
    """--processes N: this same command line as N processes of one job on this machine
    (`distributed.launch_local`); each sees JAXMLP_LOCAL_CORES and trains its share."""
    if _finished_without_data(exp, args, runs, out):
        return 0
    _say(args, f"[{exp.name}] {args.processes} processes on this machine: "
         + "; ".join(f"process {i} on core(s) {','.join(map(str, share))}"
                     for i, share in enumerate(shares)))
    return distributed.launch_local(list(sys.orig_argv), args.processes)


def _train(exp: Experiment, args, runs, out: Path, runs_dir: Path, take_lock) -> int:
    if _finished_without_data(exp, args, runs, out):
        return 0
    _compile_settings(runs_dir, quick=args.quick)
    job = distributed.join_sweep()  # JAXMLP_* env: several processes split the members
    if os.environ.get(distributed.ENV_LOCAL_CORES) and jax.default_backend() != "cpu":
        raise UsageError(f"--processes {args.processes}: allowed on CPUs; here JAX runs on "
                         f"{jax.default_backend()}, whose devices one process uses (--shard)")
    clock, begun = runner.Clock(), time.perf_counter()
    cpu = runner.ThreadCPU()
    cpu.mark("main")
    backend = _start_backend()  # while the main thread reads the data files
    with clock("load"):
        ds = load_data(exp, args, runs)
    runs = [_fit_to(r, ds) for r in runs]
    try:
        runner.check_data(runs, ds.x_train, {"train": ds.y_train, "validation": ds.y_val,
                                             "test": ds.y_test}, ds.num_classes)
    except ValueError as e:
        raise UsageError(str(e)) from None
    # The folders and the lock come once the command line and the data have passed every
    # check: a start that fails leaves nothing behind.
    make_folders(out, runs_dir)
    take_lock()
    with clock("backend"):
        backend.result()
    mesh = local_mesh()
    with clock("load"):
        data = jax.block_until_ready(device_data(ds, mesh))
    every_member = experiment_members(exp, args, runs)
    # Several processes: each trains its pieces of the biggest groups and claims whole groups
    # while there are any (distributed.work_units); one process: every group in order.
    units = distributed.work_units(runner.groups(every_member, args.engine), job.count,
                                   member_cost)
    if args.retrain is not None:
        # Named runs: only their members are discarded; a group they shared with other runs
        # loses its (partial-training) checkpoints too, and its finished members are kept.
        chosen = [[m for m in u.members if not args.retrain or m.run.name in args.retrain]
                  for u in units]
        for u, part in zip(units, chosen):
            if part:
                runner.discard(part, out, runs_dir)
                runner.discard_checkpoints(u.members, runs_dir)
        _say(args, f"[{exp.name}] --retrain: discarded the checkpoints and records of "
             f"{sum(map(len, chosen))} member(s) in {sum(1 for c in chosen if c)} group(s)")
    try:
        warn = lambda text: _say(args, f"[{exp.name}] warning: {text}")  # noqa: E731
        finished = {m.id for m in every_member if runner.done(out, m, warn=warn)}
    except runner.StaleResult as e:
        raise UsageError(str(e)) from None
    # A member finished in any process's folder is finished for all (without a shared
    # filesystem each sees only its own; the record reaches process 0 in the merge). The
    # exchange also waits for every process to have discarded and looked before any trains.
    finished = set().union(*distributed.gather(job, "finished", sorted(finished)))
    # Members added to a finished group (more seeds) train as a group of their own; the
    # finished ones are not trained again.
    units = [distributed.Unit(part, u.owner) for u in units for part in (
        [m for m in u.members if m.id in finished],
        [m for m in u.members if m.id not in finished]) if part]
    # A group's resume checkpoint is in the folder of the process that was training it: one
    # that only some processes can read (hosts without a shared filesystem) goes on there,
    # instead of from the start in whichever process claims it first.
    held = distributed.first_holders(distributed.gather(job, "checkpoints", [
        runner.group_id(u.members) for u in units if u.owner is None
        and u.members[0].id not in finished and runner.has_checkpoint(u.members, runs_dir)]))
    units = [u if u.owner is not None else u._replace(owner=held.get(runner.group_id(u.members)))
             for u in units]
    groups = [u.members for u in units]
    number = {id(g): k for k, g in enumerate(groups, 1)}
    pending = [u for u in units if u.members[0].id not in finished]
    start, trained = time.perf_counter(), 0
    shared = f" between {job.count} processes" if job.count > 1 else ""
    _say(args, f"[{exp.name}] {len(every_member)} member(s) in {len(groups)} group(s); "
         f"{len(pending)} to train{shared}" + (", compiling them" if pending else ""))
    # Every pending group compiles in a thread pool while earlier groups train: every step
    # first, then the final evaluations (needed only when a group is done; groups of one model
    # and size share theirs). A group that finishes before the pool reached its final compiles
    # it on the main thread (runner.Once). The pool runs tasks in order, so a final's task
    # starts after its group's step task has started and cannot wait on a task still queued.
    # Several processes: a process with several cores claims the next group when it starts
    # training one, so that it compiles beside the training; with one core, compiling there
    # only shares that core, so it claims the next when it is free (a group claimed early is
    # one that another process, free sooner, could have taken).
    threads = args.compile_threads or max(1, min(len(pending), len(distributed.cores())))
    pool = ThreadPoolExecutor(max_workers=threads, initializer=cpu.mark, initargs=("compile",))
    options = QUICK_COMPILE if args.quick else None
    turns = runner.Turns()  # Python's part of each compile in training order (runner.Turns)
    mine = (u.members for u in pending if u.owner in (job.index, None)
            and (u.owner is not None or distributed.claim(job, runner.group_id(u.members))))
    queue = []  # (group, its compiled program's Future, its final evaluation's Once)

    def submit(count: int | None) -> None:
        taken = list(itertools.islice(mine, count))  # count None: every one left
        steps = [pool.submit(runner.prepare, g, data, epochs_per_call=args.epochs_per_call,
                             compiler_options=options, mesh=mesh, shard=args.shard,
                             clock=clock, unroll=args.unroll, final=False,
                             turn=turns(len(queue) + i)) for i, g in enumerate(taken)]
        finals = [runner.Once(functools.partial(runner.prepare_final, step, data, clock=clock,
                                                compiler_options=options)) for step in steps]
        for once in finals:
            pool.submit(once)
        queue.extend(zip(taken, steps, finals))
        if mesh is not None and not args.quiet:
            for g in taken:
                print(f"[{exp.name}] {_runs_of(g)} ({_members(len(g))}): "
                      f"{runner.shard_for(g, mesh, args.shard)} split over {mesh.size} devices",
                      file=sys.stderr)

    ahead = job.count > 1 and len(distributed.cores()) > 1
    submit(None if job.count == 1 else 1)
    for group in groups:
        if group[0].id in finished:
            _say(args, f"[{exp.name}] group {number[id(group)]}/{len(groups)} "
                 f"({_runs_of(group)}, {_members(len(group))}): done, skipped")
    # Observers, finished models and member records are written on one host thread while the
    # next group trains (runner.IOThread); results.json waits for all of them.
    io = runner.IOThread(clock, cpu)
    try:
        while trained < len(queue):
            group, step, final = queue[trained]
            if ahead:
                submit(1)  # the next group compiles while this one trains
            label = (f"[{exp.name}] group {number[id(group)]}/{len(groups)} "
                     f"({_runs_of(group)}, {_members(len(group))})")
            io.check()  # a failed write stops the sweep before more training is spent
            with clock("compile_wait"):
                compiled = _compiled(step, label, args)
            try:
                records = runner.run_group(group, data, ds.x_train.shape[0], out_dir=out,
                                           runs_dir=runs_dir,
                                           epochs_per_call=args.epochs_per_call, mesh=mesh,
                                           label=label, quiet=args.quiet, prepared=compiled,
                                           final=final, clock=clock,
                                           checkpoint_every=_checkpoint_policy(args), io=io)
            except observers.CheckpointError as e:
                pool.shutdown(cancel_futures=True)
                raise UsageError(f"{str(e).splitlines()[0]} Add --retrain to train group "
                                 f"{group[0].run.name} from scratch.") from None
            queue[trained] = (group, None, None)  # its program can go
            trained += 1
            if job.count > 1 and trained == len(queue):
                submit(1)  # free: the next group, if any is left
            for m, rec in zip(group, records):
                if rec["diverged"] and not args.quiet:
                    print(f"{label} DIVERGED: {m.run.name} seed {m.seed}: "
                          f"{rec['diverged_reason']}", file=sys.stderr)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)  # no queued compile delays the exit
        io.close(raise_errors=False)  # the finished groups' files, whatever stopped the sweep
        raise
    io.close()
    cpu_s = cpu.seconds()  # before the compile threads end with their pool
    pool.shutdown()
    if job.count > 1:
        _say(args, f"[{exp.name}] this process trained {trained} of the {len(pending)} group(s)")
    # Every record this process has (another process's too, on a shared filesystem: process 0
    # leaves a file alone when it has the same text).
    have = [path for m in every_member if (path := runner.member_path(out, m)).exists()]
    if not distributed.merge_files(out, have, job):
        return 0  # process 0 has this process's records and writes results.json
    missing = [m.id for m in every_member if not runner.member_path(out, m).exists()]
    if missing:
        raise RuntimeError(f"{len(missing)} member record(s) missing after the sweep, e.g. "
                           f"{missing[0]}: a process did not send them")
    trained_here, trained = trained, len(pending)  # by process 0, by every process
    wall = time.perf_counter() - start  # across processes: until the last one's records came
    every_args = argparse.Namespace(**{**vars(args), "only": None})
    every = [_fit_to(r, ds) for r in select(exp, every_args)]
    doc = _document(exp, args, every, ds.identity, out)
    if trained == 0 and _unchanged(out / "results.json", doc, ds.identity, args, exp):
        _report_if_pending(exp, args, out)
        return 0
    doc["settings"]["earlier_invocations"] = _earlier(out / "results.json")
    doc["settings"]["this_invocation"] = {
        "groups_trained": trained, "groups_total": len(groups), "wall_time_s": wall,
        "complete": trained == len(groups) and not any(_resumed(out, groups)),
        "processes": job.count,
        **({"groups_trained_by_process_0": trained_here} if job.count > 1 else {}),
        "cores_per_process": len(distributed.cores()),  # process 0's, with --processes
        "since_start_s": time.perf_counter() - begun,  # load and the first compile included
        # runner.IOThread runs observers ahead of closing writes and a group's last observers
        # after training has moved on: what the "observe" phase can hold (the bench page says).
        "observers_first": True,
        "time_split_s": clock.seconds,  # runner.Clock: where the time went, per phase
        **({"cpu_s": cpu_s} if cpu_s else {})}  # runner.ThreadCPU: CPU by kind of thread
    if _feeds_site(exp, args, out):  # first: killed between the two, the next one reports
        _report_pending(out)
    atomic.write_json(out / "results.json", doc)
    _say(args, f"[{exp.name}] wrote {out / 'results.json'}")
    _report_if_pending(exp, args, out)
    return 0


# Classes of the built-in datasets (input sizes are config.INPUT_DIMS).
BUILTIN_CLASSES = {"fashion_mnist": 10, "mnist": 10, "cifar10": 10}


def _finished_without_data(exp: Experiment, args, runs, out: Path) -> bool:
    """A clone with the committed results: every member has its record and results.json holds
    them. Then nothing is loaded (no dataset, no download), trained or written. Any doubt
    (another dataset, --retrain, a process of a multi-process job, a stale or missing record)
    falls through to the full path, which loads the data and says what is wrong."""
    if args.quick or args.retrain is not None or distributed.from_env() is not None:
        return False
    if any(r.train.dataset not in BUILTIN_CLASSES for r in runs):
        return False
    def fitted(selected):
        return [dataclasses.replace(r, model=dataclasses.replace(
            r.model, input_dim=C.INPUT_DIMS[r.train.dataset],
            num_classes=BUILTIN_CLASSES[r.train.dataset])) for r in selected]

    try:
        warn = lambda text: _say(args, f"[{exp.name}] warning: {text}")  # noqa: E731
        if not all(runner.done(out, m, warn=warn)
                   for m in experiment_members(exp, args, fitted(runs))):
            return False
    except (runner.StaleResult, OSError, ValueError):
        return False
    every = fitted(select(exp, argparse.Namespace(**{**vars(args), "only": None})))
    doc = _document(exp, args, every, {}, out)
    if not _unchanged(out / "results.json", doc, None, args, exp):
        return False
    _report_if_pending(exp, args, out)
    return True


def _compiled(future, label: str, args):
    """The group's compiled program, saying so every 5 s while it is still compiling."""
    waited = 0
    while True:
        try:
            return future.result(timeout=5)
        except TimeoutError:
            waited += 5
            _say(args, f"{label}: compiling ({waited} s)")


def _unchanged(path: Path, doc: dict, identity: dict, args, exp) -> bool:
    """Nothing trained: whether results.json already holds these runs with these seed records
    (then it stays as it is, provenance included, and so does the site). Only the records are
    compared, not the layout around them, so results written by an older version of the code
    are not rewritten by a no-op either."""
    try:
        old = json.loads(path.read_text())
        held = [[r["name"], r["seeds"]] for r in old["runs"]]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if held != json.loads(json.dumps(atomic.plain([(r["name"], r["seeds"]) for r in doc["runs"]]))):
        return False
    if _definition(old) != _definition(doc):
        # Edited in the definition since (a title, a label, a part, the notes): what the
        # definition says is written, the results and their provenance are kept.
        old["title"], old["settings"]["notes"] = doc["title"], doc["settings"]["notes"]
        if "page" in doc:
            old["page"] = doc["page"]
        else:
            old.pop("page", None)
        for was, now in zip(old["runs"], doc["runs"]):
            was.update({k: now.get(k) for k in RUN_TEXT})
        atomic.write_json(path, old)
        if _feeds_site(exp, args, path.parent):
            _report_pending(path.parent)
        _say(args, f"[{exp.name}] nothing to train: every run has finished; the title, notes, "
             f"labels, parts and page text in {path} are now the definition's")
    elif (path.parent / REPORT_PENDING).exists():
        _say(args, f"[{exp.name}] nothing to train: every run has finished; {path} is left as "
             "it is (an earlier invocation stopped before the site was regenerated)")
    else:
        _say(args, f"[{exp.name}] nothing to train: every run has finished; {path} and the "
             "site are left as they are")
    if identity is not None and old.get("dataset", {}).get("files") != identity.get("files"):
        _say(args, f"[{exp.name}] note: those results were trained on other data files than "
             "the ones found now; add --retrain to train on these")
    return True


def _checkpoint_policy(args) -> float | None:
    """--checkpoint-every as run_group takes it: None saves after every call (0 on the command
    line), seconds skip saves (default CHECKPOINT_EVERY; and always while a write is in
    flight)."""
    if args.checkpoint_every is None:
        return CHECKPOINT_EVERY
    return None if args.checkpoint_every == 0 else args.checkpoint_every


def _earlier(path: Path) -> list[dict]:
    """The provenance of the invocations that trained the members already in results.json
    (their command, date, machine and this_invocation), kept when a later one adds members."""
    try:
        old = json.loads(path.read_text())
        inv = old["settings"].get("this_invocation", {})
        earlier = list(old["settings"].get("earlier_invocations", []))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []
    if inv.get("groups_trained", 1):
        earlier.append({"command": old.get("command"), "created": old.get("created"),
                        "device": old.get("environment", {}).get("device"), **inv})
    return earlier


def _resumed(out: Path, groups) -> list[bool]:
    """Which groups resumed from a checkpoint in this invocation (their wall time is partial)."""
    return [any(json.loads(runner.member_path(out, m).read_text()).get("resumed", False)
                for m in g) for g in groups]


def _compile_settings(runs_dir: Path, *, quick: bool) -> None:
    """A persistent compilation cache (reruns and resumes skip XLA compiles; in
    $JAXMLP_COMPILE_CACHE when set, else in the runs folder; none for --quick unless that
    variable is set); for --quick, a cheaper XLA CPU pipeline, since compile time dominates a
    smoke run. Must run before JAX
    initialises its backend (the first device use)."""
    import jax

    if quick:
        flags = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flags).strip()
        if not os.environ.get("JAXMLP_COMPILE_CACHE"):
            return  # a smoke run is one-off: serializing its programs to disk only costs time
    cache = os.environ.get("JAXMLP_COMPILE_CACHE") or runs_dir / "jax-cache"
    jax.config.update("jax_compilation_cache_dir", str(Path(cache).absolute()))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def _start_backend():
    """JAX's backend started in a thread of its own (a Future of `jax.devices()`): on a GPU,
    loading the driver and the CUDA libraries and reserving the memory pool take seconds that
    need no data, so they overlap the main thread's reading of the data files, which needs no
    device. Started after `_compile_settings` and `distributed.join_sweep`, which must come
    before the backend."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jaxmlp-backend")
    try:
        return pool.submit(jax.devices)
    finally:
        pool.shutdown(wait=False)


def _fit_to(run: C.RunConfig, ds) -> C.RunConfig:
    """Set the model's input and output sizes from the data."""
    model = dataclasses.replace(run.model, input_dim=ds.x_train.shape[1],
                                num_classes=ds.num_classes)
    return dataclasses.replace(run, model=model)


def _document(exp, args, runs, identity, out: Path) -> dict:
    entries = []
    for r in runs:  # every run of the experiment whose seeds have all finished
        files = [out / "members" / f"{r.name}__seed{s}.json" for s in seed_list(exp, args, r.name)]
        if all(f.exists() for f in files):
            entries.append(records.run_entry(r, [json.loads(f.read_text()) for f in files]))
    doc = records.document(experiment=exp.name, title=exp.title, command=args.command,
                           engine=args.engine, dataset=identity,
                           seeds=list(range(args.seeds)), notes=list(exp.notes), runs=entries)
    counts = {r.name: len(seed_list(exp, args, r.name)) for r in runs}
    more = {name: n for name, n in counts.items() if n != args.seeds}
    if more:
        doc["settings"]["seeds_by_run"] = more  # runs with another number of seeds than "seeds"
    if exp.objective or exp.description or exp.template:  # the report's page
        doc["page"] = {"objective": exp.objective, "description": exp.description}
        if exp.template:  # relative to the folder holding experiments/, as the report reads it
            doc["page"]["template"] = Path(os.path.relpath(exp.template)).as_posix()
    return doc


# A run's fields that come from the experiment's definition, not from training.
RUN_TEXT = ("part", "label", "description")
# Left in the results folder while the site is regenerated from a new results.json: a run
# interrupted then (Ctrl-C, kill -9) leaves it, and the next invocation, which trains nothing,
# regenerates the site instead of leaving it behind its results.
REPORT_PENDING = ".report-pending"


def _definition(doc: dict) -> object:
    """What of a results.json the definition writes: title, notes, page text, the runs' text."""
    return json.loads(json.dumps(atomic.plain({
        "title": doc.get("title"), "notes": doc.get("settings", {}).get("notes"),
        "page": doc.get("page"),
        "runs": [[r.get(k) for k in RUN_TEXT] for r in doc.get("runs", [])]})))


def _feeds_site(exp: Experiment, args, out: Path) -> bool:
    """Whether these results are the site's: the definition's own folder, not --quick's."""
    return not args.quick and out == Path("experiments") / exp.name


def _report_pending(out: Path) -> None:
    atomic.write_text(out / REPORT_PENDING, "the site is not yet regenerated from results.json\n")


def _report_if_pending(exp: Experiment, args, out: Path) -> None:
    """Regenerate the site (docs/) if results.json changed since it was last regenerated, for
    the experiment's own folder only; --no-report leaves the marker for a later invocation."""
    marker = out / REPORT_PENDING
    if not marker.exists() or args.no_report:
        return
    if not _feeds_site(exp, args, out) or not Path("docs").is_dir():
        marker.unlink()  # no site here to regenerate
        return
    try:
        from jaxmlp import report
    except ImportError:
        marker.unlink()
        return
    _say(args, f"[{exp.name}] regenerating the site (docs/) from {out / 'results.json'}")
    try:
        report.generate(Path("experiments"), Path("docs"))
    except report.ReportError as e:  # the results stand; the next invocation tries again
        raise UsageError(f"{e} (results.json is written; the site is not)") from None
    marker.unlink()


def main(exp: Experiment) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(run(exp))
