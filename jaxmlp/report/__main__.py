"""`python -m jaxmlp.report`: regenerate every page and figure from the committed results."""

from __future__ import annotations

import argparse
from pathlib import Path

from jaxmlp.report.render import generate


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m jaxmlp report", description=(
        "Regenera las páginas y figuras de docs/ a partir de experiments/*/results.json."))
    p.add_argument("--experiments", default="experiments", help="results folder")
    p.add_argument("--docs", default="docs", help="MkDocs docs_dir to write into")
    args = p.parse_args(argv)
    files = generate(Path(args.experiments), Path(args.docs))
    print(f"{len(files)} archivos al día en {args.docs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
