"""`python -m jaxmlp run | report | list`: train a user's experiment file, render the site's
pages from committed results, list the experiments and their results.

    python -m jaxmlp run path/to/exp.py [--quick] [--out DIR] [...]   # the file's EXPERIMENT
    python -m jaxmlp report [--experiments experiments] [--docs docs]
    python -m jaxmlp list [path]                                      # results folders
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path

USAGE = __doc__.split("\n\n", 1)[1]


def load_experiment(path: Path):
    """The module-level EXPERIMENT of a Python file (imported from its path)."""
    if not path.is_file():
        raise SystemExit(f"error: {path} does not exist")
    spec = importlib.util.spec_from_file_location(f"jaxmlp_user_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    if not hasattr(module, "EXPERIMENT"):
        raise SystemExit(f"error: {path} defines no module-level EXPERIMENT")
    return module.EXPERIMENT


def results_folder(exp, argv: list[str]) -> Path:
    """Where the runner wrote results.json for these flags (the runner's own rule)."""
    from jaxmlp.experiments import cli

    args = cli.parse(exp, argv)
    args.quiet = True  # the runner already announced the folder
    return cli.roots(exp, args)[0]


def record_page(exp, file: Path, out: Path) -> None:
    """Add the experiment's page fields to its results.json, for the report to read."""
    from jaxmlp import atomic

    path = out / "results.json"
    if not path.is_file():
        return
    doc = json.loads(path.read_text(encoding="utf-8"))
    page = {"objective": exp.objective, "description": exp.description}
    if exp.template:
        page["template"] = str((file.parent / exp.template).resolve())
    if doc.get("page") != page:
        doc["page"] = page
        atomic.write_json(path, doc)


def run(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        print("usage: python -m jaxmlp run path/to/exp.py [flags]", file=sys.stderr)
        return 2
    from jaxmlp.experiments import cli

    file = Path(argv[0])
    exp = load_experiment(file)
    status = cli.run(exp, argv[1:])
    process0 = os.environ.get("JAXMLP_PROCESS_ID", "0").strip() in ("", "0")  # writes results
    if status == 0 and process0 and "--list" not in argv and not {"-h", "--help"} & set(argv):
        record_page(exp, file, results_folder(exp, argv[1:]))
    return status


def report(argv: list[str]) -> int:
    from jaxmlp.report.__main__ import main

    return main(argv)


def listing(argv: list[str]) -> int:
    """Each results folder under `path` (default experiments/): runs, seeds, best run."""
    p = argparse.ArgumentParser(prog="python -m jaxmlp list")
    p.add_argument("path", nargs="?", default="experiments")
    root = Path(p.parse_args(argv).path)
    docs = sorted(root.glob("*/results.json")) + sorted(root.glob("results.json"))
    if not docs:
        print(f"no results.json under {root}")
        return 0
    for f in docs:
        doc = json.loads(f.read_text(encoding="utf-8"))
        runs = [r for r in doc.get("runs", []) if r.get("summary", {}).get("test_accuracy")]
        best = max(runs, key=lambda r: r["summary"]["test_accuracy"]["mean"], default=None)
        line = (f"{doc.get('experiment', f.parent.name):<12} {len(runs):>3} runs x "
                f"{len(doc.get('settings', {}).get('seeds', [])):>2} seeds  {f.parent}")
        if best:
            s = best["summary"]["test_accuracy"]
            line += f"  best: {best['name']} {100 * s['mean']:.1f} ± {100 * s['std']:.1f} %"
        print(line)
    return 0


VERBS = {"run": run, "report": report, "list": listing}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in VERBS:
        print(USAGE, file=sys.stderr)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    return VERBS[argv[0]](argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
