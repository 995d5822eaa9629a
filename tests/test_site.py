"""The published site: the Pages workflow validates and passes zizmor, the real docs/ builds
with `mkdocs build --strict`, and the built pages render in a real browser (Debian's Chromium
driven by Playwright) with every image loaded, no console errors and no third-party request."""

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
PAGES_WORKFLOW = WORKFLOWS / "pages.yml"
ARTIFACTS = ROOT / "test-artifacts"  # git-ignored; screenshots land here
BIN = Path(sys.executable).parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]



def tool(name: str) -> str | None:
    """The venv's console script if there is one, else whatever is on PATH."""
    exe = BIN / name
    return str(exe) if exe.exists() else shutil.which(name)


# --- the workflow ------------------------------------------------------------------------------

def test_pages_workflow_matches_the_github_workflow_schema():
    exe = tool("check-jsonschema")
    assert exe, "check-jsonschema is not installed (pip install -e '.[dev]')"
    # The schema is vendored inside check-jsonschema: no network.
    proc = subprocess.run([exe, "--builtin-schema", "vendor.github-workflows",
                           str(PAGES_WORKFLOW)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_zizmor_finds_nothing_of_high_severity():
    exe = tool("zizmor")
    if not exe:
        pytest.skip("zizmor is not installed (pip install -e '.[dev]')")
    proc = subprocess.run([exe, "--offline", "--format", "json", str(WORKFLOWS)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    try:
        findings = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"zizmor gave no JSON (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}")
    high = [f for f in findings if f["determinations"]["severity"] == "High"]
    assert not high, json.dumps(high, indent=2)


def test_every_action_is_pinned_to_a_commit_with_its_release_named():
    uses = re.findall(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$", PAGES_WORKFLOW.read_text(), re.M)
    assert len(uses) == 5, uses
    for ref, rest in uses:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", ref), ref
        assert re.fullmatch(r"\s*# v\d+\.\d+\.\d+\s*", rest), (ref, rest)


def test_the_pages_build_installs_the_pinned_docs_packages_only():
    """The site reads committed files; the workflow installs docs/requirements.txt and never
    JAX or the package itself."""
    text = PAGES_WORKFLOW.read_text()
    installs = re.findall(r"pip install (.+)", text)
    assert installs == ["-r docs/requirements.txt"], installs
    assert "mkdocs build --strict" in text and "SITE_URL:" in text and "REPO_URL:" in text


def pins() -> dict[str, str]:
    lines = (ROOT / "docs" / "requirements.txt").read_text().splitlines()
    return dict(ln.split("==") for ln in lines if ln and not ln.startswith("#"))


def test_docs_constraints_pin_every_docs_extra_and_match_this_environment():
    import tomllib
    from importlib import metadata

    pinned = {k.lower(): v for k, v in pins().items()}
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    for req in extras["docs"]:
        name = re.split(r"[<>=\[ ]", req, maxsplit=1)[0].lower()
        assert name in pinned, f"{name} is in the docs extra but not pinned"
    for name, version in pinned.items():
        assert metadata.version(name) == version, (name, metadata.version(name), version)


# --- the site ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The real docs/ (committed fragments and figures) built once with `mkdocs build --strict`
    into a temporary folder; the working tree is only read."""
    out = tmp_path_factory.mktemp("site") / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    env.pop("SITE_URL", None)  # the placeholder in mkdocs.yml, as in a local build
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q",
         "-f", str(ROOT / "mkdocs.yml"), "-d", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def site_pages(site: Path) -> list[str]:
    """Every page of the built site, as a path under its root ('' for the landing page)."""
    pages = [p.parent.relative_to(site).as_posix() for p in site.rglob("index.html")]
    return sorted("" if p == "." else p + "/" for p in pages)


def test_the_real_site_builds_strict(site):
    pages = site_pages(site)
    assert {"", "portfolio/08d-Callbacks-MLP/", "portfolio/TA8-Backpropagation-Optimizadores/",
            "bench/", "guide/experimento-propio/"} <= set(pages)
    assert (site / "search" / "search_index.json").is_file()
    assert "página no encontrada" in (site / "404.html").read_text(encoding="utf-8")


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # the base class names it `format`
        pass


@pytest.fixture(scope="module")
def served(site):
    """The built site over HTTP on a free port of 127.0.0.1, shut down after the module."""
    handler = functools.partial(QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not importable (pip install -e '.[dev]')")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=60_000)
        try:
            yield b
        finally:
            b.close()


# Sets every image to load eagerly, then waits until each one has loaded or failed.
IMAGES_JS = """async () => {
  const imgs = Array.from(document.images);
  imgs.forEach(i => { i.loading = "eager"; });
  await Promise.all(imgs.map(i => i.complete ? null : new Promise(r => {
    i.addEventListener("load", r, {once: true});
    i.addEventListener("error", r, {once: true});
  })));
  return imgs.map(i => ({src: i.currentSrc || i.src, naturalWidth: i.naturalWidth}));
}"""

# Tables wider than the content column (Material would give them a horizontal scrollbar).
TABLES_JS = """() => {
  const article = document.querySelector("article");
  const room = article.getBoundingClientRect().width;
  return Array.from(article.querySelectorAll("table")).map(t => ({
    head: t.rows[0].innerText.slice(0, 60), width: t.scrollWidth, room}))
    .filter(t => t.width > t.room + 1);
}"""

# For each shown SVG figure: its smallest font size, in CSS px as rendered (font size in the
# SVG's user units times the image's rendered width over the viewBox width).
FONTS_JS = """async () => {
  const shown = Array.from(document.querySelectorAll("article img"))
    .filter(i => /\\.svg($|#)/.test(i.src) && i.getBoundingClientRect().width > 0);
  const out = [];
  for (const img of shown) {
    const text = await (await fetch(img.src)).text();
    const svg = new DOMParser().parseFromString(text, "image/svg+xml").documentElement;
    const box = svg.getAttribute("viewBox").split(/[ ,]+/).map(Number);
    const sizes = Array.from(text.matchAll(/font[^;"]*?([0-9.]+)px/g)).map(m => +m[1]);
    const scale = img.getBoundingClientRect().width / box[2];
    out.push({src: img.src, px: Math.min(...sizes) * scale, texts: sizes.length});
  }
  return out;
}"""

# On a phone: does the page itself scroll sideways, and which code listings do (they wrap)?
PHONE_JS = """() => ({
  page: document.documentElement.scrollWidth - window.innerWidth,
  code: Array.from(document.querySelectorAll("article pre > code"))
    .filter(c => c.getBoundingClientRect().width > 0 && c.scrollWidth > c.clientWidth + 1)
    .map(c => c.innerText.split("\\n")[0].slice(0, 60))})"""

VIEWS = [(w, scheme) for w in (1280, 390) for scheme in ("light", "dark")]
MIN_FIGURE_PX = 11


@pytest.fixture(scope="module")
def pages(site):
    return site_pages(site)


def open_page(context, served, path) -> dict:
    """Start loading one page in a tab of its own; what goes wrong on it is recorded from now."""
    page = context.new_page()
    page.set_default_timeout(60_000)
    seen = {"page": page, "path": path, "errors": [], "external": [], "failed": []}
    errors, external, failed = seen["errors"], seen["external"], seen["failed"]

    def route(r):
        # Everything must come from the local server; anything else is recorded and refused.
        if r.request.url.startswith(served) or r.request.url.startswith(("data:", "blob:")):
            r.continue_()
        else:
            external.append(r.request.url)
            r.abort()

    page.on("console", lambda m: m.type == "error" and errors.append(
        f"console: {m.text} ({m.location.get('url', '')})"))
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    page.on("requestfailed", lambda r: r.url not in external and failed.append(
        f"{r.failure} {r.url}"))
    page.on("response", lambda resp: resp.status >= 400 and failed.append(
        f"{resp.status} {resp.url}"))
    page.route("**/*", route)
    page.goto(served + path, wait_until="commit")
    return seen


def check_page(seen: dict, width: int, scheme: str) -> list[str]:
    """Finish loading a page `open_page` started; return what is wrong with it."""
    page, path = seen["page"], seen["path"]
    try:
        page.wait_for_load_state("load")
        page.wait_for_load_state("networkidle")
        images = page.evaluate(IMAGES_JS)
        wide = page.evaluate(TABLES_JS) if width >= 1280 else []
        fonts = page.evaluate(FONTS_JS)  # the figures shown: wide ones, or narrow on a phone
        phone = page.evaluate(PHONE_JS) if width < 720 else {"page": 0, "code": []}
        title, h1 = page.title(), page.locator("article h1").first.inner_text().strip()
        ARTIFACTS.mkdir(exist_ok=True)
        name = (path.strip("/").replace("/", "_") or "index") + f"-{width}-{scheme}.jpeg"
        # JPEG: a long page's PNG took twice as long to encode (3.2 s against 2.0 for bench/)
        page.screenshot(path=str(ARTIFACTS / name), full_page=True, type="jpeg", quality=85)
    finally:
        page.close()
    problems = [f"image did not load: {i['src']}" for i in images if i["naturalWidth"] <= 0]
    problems += seen["errors"] + [f"failed request: {f}" for f in seen["failed"]]
    problems += [f"request to another host: {u}" for u in seen["external"]]
    problems += [f"table {t['width']} px wide in a {t['room']:.0f} px column: {t['head']!r}"
                 for t in wide]
    if phone["page"] > 0:
        problems.append(f"the page scrolls sideways by {phone['page']} px")
    problems += [f"code listing scrolls sideways: {c!r}" for c in phone["code"]]
    problems += [f"figure text {f['px']:.1f} px < {MIN_FIGURE_PX}: {f['src']}"
                 for f in fonts if f["px"] < MIN_FIGURE_PX]
    problems += [f"{'wide' if width < 720 else 'narrow'} figure at {width} px: {f['src']}"
                 for f in fonts if ("-narrow" in f["src"]) != (width < 720)]
    if not (title.endswith("jaxmlp") and h1):
        problems.append(f"no title or h1: title={title!r} h1={h1!r}")
    return problems


def check_pages(browser, served, pages, width, scheme, at_once=4) -> dict[str, list[str]]:
    """Every page in one viewport and palette, `at_once` tabs loading together (each page's
    wait for a quiet network overlaps the others' loading); {page: problems}."""
    context = browser.new_context(viewport={"width": width, "height": 900},
                                  color_scheme=scheme)
    problems = {}
    try:
        queue = list(pages)
        loading = [open_page(context, served, p) for p in queue[:at_once]]
        queue = queue[at_once:]
        while loading:
            seen = loading.pop(0)
            problems[seen["path"] or "index"] = check_page(seen, width, scheme)
            if queue:
                loading.append(open_page(context, served, queue.pop(0)))
    finally:
        context.close()
    return problems


@pytest.mark.parametrize("width,scheme", VIEWS, ids=[f"{w}-{s}" for w, s in VIEWS])
def test_every_page_reads_well(browser, served, pages, width, scheme):
    """Every page, in this viewport and palette: no console error, every image loaded, no
    request elsewhere; figure text of at least 11 px as shown (the narrow variants on a phone);
    at desktop width no table wider than its column; on a phone no sideways scrolling of the
    page or of a code listing.
    Screenshots land in test-artifacts/."""
    problems = check_pages(browser, served, pages, width, scheme)
    problems = {p: v for p, v in problems.items() if v}
    assert not problems, "\n".join(f"{p}:\n  " + "\n  ".join(v) for p, v in problems.items())


def test_portfolio_pages_show_their_figures(site):
    """Each portfolio page shows SVG figures in both palettes, and glightbox makes them
    zoomable."""
    for page in ("portfolio/08d-Callbacks-MLP/", "portfolio/TA8-Backpropagation-Optimizadores/"):
        html = (site / page / "index.html").read_text(encoding="utf-8")
        assert html.count(".svg#only-light") == html.count(".svg#only-dark") > 0, page
        # each figure also narrow for phones, in both palettes, in galleries of their own
        wide = len(re.findall(r'src="[^"]*\.svg#only-light"', html))
        assert html.count('class="fig-narrow fig-light"') == wide, page
        assert html.count('class="fig-narrow fig-dark"') == wide, page
        assert html.count('data-gallery="narrow-dark"') > 0, page
        # all four lazy, so that a browser fetches only the one it shows
        assert html.count('loading="lazy"') == 4 * wide, page
        assert "glightbox" in html, page


def test_portfolio_pages_stay_within_about_one_and_a_half_times_the_original(site):
    """Words of each page's article (code, tables and captions included) against the original
    page's word count kept in jaxmlp/experiments/<name>_original.json."""
    for name, page in (("p8d", "portfolio/08d-Callbacks-MLP/"),
                       ("ta8", "portfolio/TA8-Backpropagation-Optimizadores/")):
        original = json.loads((ROOT / "jaxmlp" / "experiments" / f"{name}_original.json")
                              .read_text())["words"]
        html = (site / page / "index.html").read_text(encoding="utf-8")
        article = html[html.index("<article"):html.index("</article>")]
        article = re.sub(r"<(script|style)[^>]*>.*?</\1>", "", article, flags=re.S)
        words = len(re.sub(r"<[^>]+>", " ", article).split())
        assert words <= 1.6 * original, (name, words, original)
