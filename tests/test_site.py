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

# (screenshot name, path under the site root, figures folder whose PNGs the page shows)
PAGES = [
    ("index", "", None),
    ("p8d", "portfolio/08d-Callbacks-MLP/", "p8d"),
    ("ta8", "portfolio/TA8-Backpropagation-Optimizadores/", "ta8"),
    ("bench", "bench/", None),
]


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


def test_the_pages_build_installs_only_the_docs_packages():
    """The site reads committed files; the workflow must not need JAX or the package itself."""
    text = PAGES_WORKFLOW.read_text()
    installs = re.findall(r"pip install (.+)", text)
    assert installs == ["mkdocs-material pymdown-extensions"], installs
    assert "mkdocs build --strict" in text and "SITE_URL:" in text


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


def test_the_real_site_builds_strict(site):
    for _, path, _ in PAGES:
        html = (site / path / "index.html").read_text(encoding="utf-8")
        assert "--8&lt;--" not in html  # every snippet include was resolved
    assert (site / "search" / "search_index.json").is_file()
    assert not (site / "generated").exists()  # fragments are included, not pages


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


@pytest.mark.parametrize("name,path,figures", PAGES, ids=[p[0] for p in PAGES])
def test_page_renders_in_chromium(browser, served, site, name, path, figures):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors, external, failed = [], [], []

    def route(r):
        # Everything must come from the local server; anything else is recorded and refused.
        if r.request.url.startswith(served) or r.request.url.startswith(("data:", "blob:")):
            r.continue_()
        else:
            external.append(r.request.url)
            r.abort()

    def on_response(resp):
        if resp.status >= 400:
            failed.append(f"{resp.status} {resp.url}")

    page.on("console", lambda m: m.type == "error" and errors.append(
        f"console: {m.text} ({m.location.get('url', '')})"))
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    page.on("requestfailed", lambda r: r.url not in external and failed.append(
        f"{r.failure} {r.url}"))
    page.on("response", on_response)
    context.route("**/*", route)
    try:
        page.goto(served + path, wait_until="load")
        page.wait_for_load_state("networkidle")
        images = page.evaluate(IMAGES_JS)
        title = page.title()
        h1 = page.locator("article h1").first.inner_text().strip()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"site-{name}.png"), full_page=True)
    finally:
        context.close()

    html = (site / path / "index.html").read_text(encoding="utf-8")
    problems = [f"image did not load: {i['src']}" for i in images if i["naturalWidth"] <= 0]
    problems += errors + [f"failed request: {f}" for f in failed]
    problems += [f"request to another host: {u}" for u in external]
    if not (title.endswith("jaxmlp") and h1):
        problems.append(f"no title or h1: title={title!r} h1={h1!r}")
    if len(images) != html.count("<img"):
        problems.append(f"{len(images)} images in the DOM, {html.count('<img')} in the HTML")
    if figures and any((ROOT / "docs" / "assets" / "generated" / figures).glob("*.png")):
        if not any(i["src"].endswith(".png") for i in images):
            problems.append(f"no figure shown although docs/assets/generated/{figures} has PNGs")
    assert not problems, f"{path or 'index'}:\n" + "\n".join(problems)
