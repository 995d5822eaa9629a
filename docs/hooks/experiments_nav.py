"""MkDocs hook: pages that `python -m jaxmlp report` writes for new experiments
(docs/experiments/*.md), and guide pages not yet listed, join the nav without editing
mkdocs.yml. Their nav title is the page's front-matter `title`, else its file name."""

from __future__ import annotations

import re
from pathlib import Path

# (folder under docs_dir, the nav section that lists its pages)
SECTIONS = (("experiments", "Portafolio"), ("guide", "Guía"))


def listed(nav) -> set[str]:
    """Every page path already in the nav, at any depth."""
    out = set()
    for item in nav or []:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        if isinstance(value, list):
            out |= listed(value)
        else:
            out.add(value)
    return out


def title(path: Path) -> str:
    match = re.search(r'^title:\s*"?(.+?)"?\s*$', path.read_text(encoding="utf-8"), re.M)
    return match.group(1) if match else path.stem


def on_config(config):
    docs = Path(config["docs_dir"])
    nav = config["nav"]
    known = listed(nav)
    for folder, section in SECTIONS:
        pages = [p for p in sorted((docs / folder).glob("*.md"))
                 if p.relative_to(docs).as_posix() not in known]
        entries = next((item[section] for item in nav
                        if isinstance(item, dict) and section in item), None)
        if pages and entries is not None:
            entries += [{title(p): p.relative_to(docs).as_posix()} for p in pages]
    return config
