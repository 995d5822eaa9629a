"""Pages from templates: every experiment in experiments/ gets docs/<page>.md rendered with
Jinja2 (its own template if it has one, else the default), plus the landing and bench pages.

    python -m jaxmlp report [--experiments experiments] [--docs docs]

Pages are pre-rendered into docs/ and committed, so the Pages build needs only MkDocs Material.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path

import jinja2

from jaxmlp.report import bench, compare, context, load, tables

TEMPLATES = Path(__file__).resolve().parent / "templates"
EXPERIMENT_TEMPLATES = Path(__file__).resolve().parents[1] / "experiments" / "templates"
DEFAULT = "experiment.md.j2"
HEADER = ("<!-- Generado por `python -m jaxmlp report` a partir de {source}; "
          "no editar a mano: se sobrescribe. -->\n")


def environment(extra: list[Path] = (), docs: Path = Path("docs")) -> jinja2.Environment:
    """Templates from the user's folders first, then the experiments', then the defaults;
    `figure_images` reads the figures' sizes under `docs`."""
    folders = [*extra, EXPERIMENT_TEMPLATES, TEMPLATES]
    env = jinja2.Environment(loader=jinja2.FileSystemLoader([str(f) for f in folders]),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             trim_blocks=True, lstrip_blocks=True, autoescape=False)
    env.filters.update(pct=compare.pct, pm=compare.pm, span=compare.span, pp=compare.pp,
                       num=compare.num, label=compare.label, labels=context.labels,
                       machine=compare.machine,
                       capitalize_first=lambda s: s[:1].upper() + s[1:],
                       # a JSON string is a YAML double-quoted scalar: quotes, backslashes and
                       # colons in a title stay the title's (front matter)
                       yaml=lambda s: json.dumps(str(s), ensure_ascii=False))
    env.globals.update(sentence=compare.sentence, verdict=compare.verdict,
                       results_table=tables.results_table,
                       aspects=tables.aspects, describe_hooks=tables.describe_hooks,
                       figure_images=context.figure_images(docs))
    return env


class ReportError(Exception):
    """A page that cannot be rendered (its template's error, where), in one line."""


def page_of(doc: dict) -> tuple[str, str, list[Path]]:
    """(page path under docs/, template name, extra template folders) for one experiment:
    the original page's location if it has one, else experiments/<name>.md; the template
    recorded in results.json (relative to the site's folder: the one holding the folder of
    results folders), else jaxmlp/experiments/templates/<name>.md.j2, else default."""
    name = doc["experiment"]
    meta = doc.get("page", {})
    page = load.original(name).get("page") or meta.get("path") or f"experiments/{name}.md"
    if meta.get("template"):
        t = doc["_dir"].parent.parent / meta["template"]
        if t.is_file():
            return page, t.resolve().name, [t.resolve().parent]
        # Results from another machine, or written before templates were recorded relative:
        # the page still renders, with the default template, and the line says how to fix it.
        print(f"warning: {name}: its page template {t} (results.json page.template) does not "
              "exist; the default page is used (run the experiment's command again to record "
              "its template)", file=sys.stderr)
    if (EXPERIMENT_TEMPLATES / f"{name}.md.j2").is_file():
        return page, f"{name}.md.j2", []
    return page, DEFAULT, []


def _where(e: jinja2.TemplateError, template: str) -> str:
    """file:line of a template error: a syntax error carries them; an error while rendering
    (an undefined name) is found in the traceback, whose frames Jinja2 maps to the template."""
    name, line = getattr(e, "filename", None), getattr(e, "lineno", None)
    if name is None:
        frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename.endswith(".j2")]
        name, line = (frames[-1].filename, frames[-1].lineno) if frames else (template, None)
    path = Path(name)
    if path.is_absolute() and path.is_relative_to(Path.cwd()):
        path = path.relative_to(Path.cwd())
    return f"{path}:{line}" if line else str(path)


def _body(text: str) -> int:
    """Where a page's body starts: after its front matter, if it opens with one."""
    if text.startswith("---\n") and "\n---\n" in text[4:]:
        return text.index("\n---\n", 4) + 5
    return 0


def is_stamped(text: str) -> bool:
    """Whether a page is one `stamped` wrote: the stamp first, or right after the front matter
    (a page that only quotes it, say in a code block, is not)."""
    return text[_body(text):].startswith(HEADER.split("{source}")[0])


def stamped(text: str, source: str) -> str:
    """The page with a do-not-edit comment after its front matter (which must come first)."""
    end = _body(text)
    return text[:end] + HEADER.format(source=source) + text[end:]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not (path.is_file() and path.read_text(encoding="utf-8") == text):
        path.write_text(text, encoding="utf-8")
    return path


def generate(experiments: Path, docs: Path, also=()) -> list[Path]:
    """Render every page and figure from the committed results; returns the files written.
    `also`: more results folders whose experiments get pages too (the benchmark records are
    `experiments`'s)."""
    written, pages = [], []
    docs_of = load.experiments(experiments)
    for folder in also:
        more = load.experiments(folder)
        twice = sorted({d["experiment"] for d in more} & {d["experiment"] for d in docs_of})
        if twice:
            raise ReportError(f"{folder}: experiment {twice[0]!r} is in {experiments} too; "
                              "allowed one results folder per experiment name")
        docs_of += more
    for doc in docs_of:
        page, template, extra = page_of(doc)
        ctx = context.experiment(doc, docs, page)
        try:
            text = environment(extra, docs).get_template(template).render(**ctx)
        except jinja2.TemplateError as e:
            raise ReportError(f"{doc['experiment']}: template {_where(e, template)}: "
                              f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}") from None
        source = Path(os.path.relpath(doc["_dir"] / "results.json")).as_posix()
        written.append(write(docs / page, stamped(text, source)))
        written += ctx["figures"].written
        pages.append(ctx)
    env = environment(docs=docs)
    benches = bench.context(load.bench(experiments), experiments)
    bench_page = env.get_template("bench.md.j2").render(bench=benches)
    written.append(write(docs / "bench.md", stamped(bench_page, "experiments/bench/*.json")))
    index = env.get_template("index.md.j2").render(pages={p["name"]: p for p in pages},
                                                   bench=benches)
    written.append(write(docs / "index.md", stamped(index, "experiments/*/results.json")))
    prune(docs, written)
    return written


def prune(docs: Path, written: list[Path]) -> list[Path]:
    """Remove what an earlier report generated and this one did not: the figures of a part or
    an experiment that is gone (docs/assets/generated/ is the report's alone) and pages that
    carry the report's do-not-edit stamp (an experiment whose results folder was removed), so
    the site does not publish them. Returns what was removed."""
    keep = {p.resolve() for p in written}
    figures = docs / "assets" / "generated"
    stale = [p for p in figures.rglob("*.svg") if p.resolve() not in keep]
    stale += [p for p in docs.rglob("*.md") if p.resolve() not in keep
              and is_stamped(p.read_text(encoding="utf-8"))]
    for path in stale:
        path.unlink()
        print(f"removed {path} (generated from results that are gone)", file=sys.stderr)
    for folder in sorted(figures.glob("*/"), reverse=True):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    return stale
