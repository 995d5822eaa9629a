"""`python -m jaxmlp.report`: regenerate every page and figure from the committed results."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jaxmlp.report.render import ReportError, generate


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m jaxmlp report", description=(
        "Regenera las páginas y figuras de docs/ a partir de experiments/*/results.json."))
    p.add_argument("--experiments", default="experiments", help="results folder")
    p.add_argument("--docs", default="docs", help="MkDocs docs_dir to write into")
    args = p.parse_args(argv)
    experiments, docs = Path(args.experiments), Path(args.docs)
    problem = None
    if not experiments.is_dir():
        problem = f"--experiments {experiments}: not a folder; allowed a folder of results"
    elif args.docs == "docs" and not Path("mkdocs.yml").is_file():
        problem = ("no mkdocs.yml here: run it from the site's folder (the one with mkdocs.yml "
                   "and docs/), or give --docs DIR")
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    # The landing and bench pages list every experiment: another folder's results are shown
    # beside the site's own (./experiments), which from that folder alone they would lose.
    own = Path("experiments")
    also = ()
    if own.is_dir() and experiments.resolve() != own.resolve():
        experiments, also = own, (experiments,)
        print(f"{args.experiments}: sus páginas se añaden a las de experiments/", file=sys.stderr)
    try:
        files = generate(experiments, docs, also=also)
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{len(files)} archivos al día en {args.docs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
