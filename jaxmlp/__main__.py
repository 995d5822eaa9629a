"""`python -m jaxmlp run | report | list`: train a user's experiment file, render the site's
pages from committed results, list the experiments and their results.

    python -m jaxmlp run path/to/exp.py [--quick] [--out DIR] [...]   # the file's EXPERIMENT
    python -m jaxmlp report [--experiments experiments] [--docs docs]
    python -m jaxmlp list [path]                                      # results folders
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import shlex
import sys
import traceback
from pathlib import Path

USAGE = __doc__.split("\n\n", 1)[1]
GUIDE = "docs/guide/experimento-propio.md"


class BadInput(Exception):
    """Bad command-line input: printed as one `error:` line, exit status 2."""


def load_experiment(path: Path):
    """The module-level EXPERIMENT of a Python file (imported from its path); BadInput says
    what is wrong with the file, in one line (an error while importing it: where in the file)."""
    from jaxmlp.experiments.cli import Experiment

    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise BadInput(f"{path} {what}; allowed: a Python file that defines EXPERIMENT "
                       f"({GUIDE})")
    spec = importlib.util.spec_from_file_location(f"jaxmlp_user_{path.stem}", path)
    if spec is None:
        raise BadInput(f"{path}: not a Python file; allowed: a .py file that defines EXPERIMENT")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        raise BadInput(f"{path}:{e.lineno}: {type(e).__name__}: {e.msg}") from None
    except Exception as e:  # the file's own error: its line, not jaxmlp's traceback
        mine = [f for f in traceback.extract_tb(e.__traceback__)
                if Path(f.filename).absolute() == path.absolute()]
        where = f"{path}:{mine[-1].lineno}" if mine else str(path)
        text = (str(e).strip().splitlines() or [""])[0]
        raise BadInput(f"{where}: {type(e).__name__}: {text}") from None
    exp = getattr(module, "EXPERIMENT", None)
    if not isinstance(exp, Experiment):
        found = " defines no module-level EXPERIMENT" if exp is None else \
            f": its EXPERIMENT is not an Experiment (found {type(exp).__name__})"
        raise BadInput(f"{path}{found}; allowed: EXPERIMENT = Experiment(...) ({GUIDE})")
    return exp


def run(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        help_asked = argv[:1] in (["-h"], ["--help"])
        print("usage: python -m jaxmlp run path/to/exp.py [flags]  (the file's flags: python -m "
              "jaxmlp run path/to/exp.py --help)", file=sys.stdout if help_asked else sys.stderr)
        return 0 if help_asked else 2
    from jaxmlp.experiments import cli

    file = Path(argv[0])
    try:
        exp = load_experiment(file)
        if exp.name in cli.builtin_names():  # its folders are another experiment's
            taken = ("experiments/bench, the benchmark records" if exp.name == "bench" else
                     f"the built-in python -m jaxmlp.experiments.{exp.name}")
            raise BadInput(f"{file}: experiment name {exp.name!r} is taken by {taken}; allowed: "
                           "a name of its own")
        if exp.template:  # relative to the file; results.json records it from the site's root
            template = (file.parent / exp.template).absolute()
            if not template.is_file():
                raise BadInput(f"{file}: template={exp.template!r}: {template} does not exist; "
                               "allowed a Jinja2 page template, relative to the experiment's file")
            exp = dataclasses.replace(exp, template=str(template))
    except BadInput as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    # The command as results.json records it: the file relative to here when it is below (an
    # absolute path names one machine's folders).
    shown = file.absolute()
    shown = shown.relative_to(Path.cwd()) if shown.is_relative_to(Path.cwd()) else file
    return cli.run(exp, argv[1:], prog=f"python -m jaxmlp run {shlex.quote(str(shown))}")


def report(argv: list[str]) -> int:
    from jaxmlp.report.__main__ import main

    return main(argv)


def listing(argv: list[str]) -> int:
    """Each results folder under `path` (default experiments/): runs, seeds, best run."""
    p = argparse.ArgumentParser(prog="python -m jaxmlp list")
    p.add_argument("path", nargs="?", default="experiments")
    root = Path(p.parse_args(argv).path)
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        print(f"error: {root} {what}; allowed: a folder of results folders (default "
              "experiments)", file=sys.stderr)
        return 2
    docs = sorted(root.glob("*/results.json")) + sorted(root.glob("results.json"))
    if not docs:
        print(f"no results.json under {root}")
        return 0
    rows = []
    for f in docs:
        try:
            doc = json.loads(f.read_text(encoding="utf-8"))
            runs = [r for r in doc.get("runs", []) if r.get("summary", {}).get("test_accuracy")]
        except (OSError, ValueError, AttributeError) as e:
            print(f"{f}: unreadable ({type(e).__name__})", file=sys.stderr)
            continue
        top = max(runs, key=lambda r: r["summary"]["test_accuracy"]["mean"], default=None)
        # Runs may train different numbers of seeds (Experiment.more_seeds): their range.
        seeds = sorted({len(r.get("seeds", [])) for r in runs}) or [0]
        count = f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]}"
        # The highest mean, not "the best": the page says whether it is beyond the others'
        # seed-to-seed range.
        s = top["summary"]["test_accuracy"] if top else None
        rows.append([doc.get("experiment", f.parent.name), _plural(len(runs), "run"), "x",
                     _plural(count, "seed"), str(f.parent),
                     f"highest mean: {top['name']} {100 * s['mean']:.1f} ± "
                     f"{100 * s['std']:.1f} %" if top else ""])
    widths = [max(len(r[i]) for r in rows) for i in range(5)] if rows else []
    for r in rows:
        print("  ".join([r[0].ljust(widths[0]), r[1].rjust(widths[1]), r[2],
                         r[3].ljust(widths[3]), r[4].ljust(widths[4]), r[5]]).rstrip())
    return 0


def _plural(count, word: str) -> str:
    return f"{count} {word}" + ("" if str(count) == "1" else "s")


VERBS = {"run": run, "report": report, "list": listing}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["-h"], ["--help"]):
        print(USAGE)
        return 0
    if not argv:
        print(USAGE, file=sys.stderr)
        return 2
    if argv[0] not in VERBS:
        print(f"error: unknown command {argv[0]!r}; allowed: {', '.join(VERBS)} (python -m "
              "jaxmlp --help)", file=sys.stderr)
        return 2
    return VERBS[argv[0]](argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
