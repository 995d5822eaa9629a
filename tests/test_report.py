"""jaxmlp.report: the «mejor»/«empate» rule, shared vs varying configuration, the pages and
figures rendered from committed fixtures, and a user's new experiment file going all the way
from `python -m jaxmlp run --quick` to a page in the strictly built site."""

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from jaxmlp import records
from jaxmlp.report import compare, figures, generate, tables

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "experiments"


def fake_run(name: str, accs: list[float], part: int = 1, **model) -> dict:
    """A results.json run entry with the given per-seed test accuracies."""
    config = {"model": {"hidden": [32], "activation": "relu", "batch_norm": False,
                        "dropout": [0.0], "kernel_init": "glorot_uniform", "l2": 0.0, **model},
              "optim": {"name": "adam", "learning_rate": 1e-3},
              "train": {"batch_size": 64, "epochs": 5, "validation_split": 0.1},
              "hooks": {}}
    return {"name": name, "label": name.upper(), "part": part, "config": config,
            "seeds": [{"seed": i, "test": {"accuracy": a}} for i, a in enumerate(accs)],
            "summary": {"test_accuracy": records.stats(accs)}}


# --- words from numbers --------------------------------------------------------------------

def test_mejor_only_when_the_seed_ranges_do_not_overlap():
    a = fake_run("a", [0.60, 0.61, 0.62])
    b = fake_run("b", [0.55, 0.56, 0.57])
    c = fake_run("c", [0.58, 0.605, 0.59])   # mean 0.5917: below a, ranges overlap (0.605 > 0.60)
    v = compare.verdict(b, a)
    assert v.high is a and v.better and v.word == "mejor"
    # gap of the means: (0.61 - 0.56) * 100 = 5.0 pp
    assert v.gap_pp == pytest.approx(5.0)
    assert "es mejor que" in compare.sentence(v)
    w = compare.verdict(a, c)
    assert w.high is a and not w.better and w.word == "empate"
    assert "empate" in compare.sentence(w) and "mejor" not in compare.sentence(w)


def test_one_seed_is_never_mejor():
    v = compare.verdict(fake_run("a", [0.9]), fake_run("b", [0.1]))
    assert not v.better and v.single_seed and "empate" in compare.sentence(v)


def test_the_table_states_the_shared_configuration_once_and_each_run_only_its_change():
    runs = [fake_run("ref", [0.5, 0.5]), fake_run("wide", [0.5, 0.5], hidden=[128]),
            fake_run("gelu", [0.5, 0.5], activation="gelu")]
    shared, varying = tables.split(runs)
    assert varying == ["Capas ocultas", "Activación"]
    assert shared["Optimizador"] == "Adam" and "Capas ocultas" not in shared
    ref = tables.reference(runs, varying)
    assert ref == {"Capas ocultas": "32", "Activación": "relu"}
    assert tables.changes(runs[0], varying, ref) == "referencia"
    assert tables.changes(runs[1], varying, ref) == "capas ocultas: 128"
    table = tables.results_table(runs, varying)
    assert table.count("\n") == 2 + len(runs)
    assert "relu" not in table.split("\n", 2)[2]  # the reference value is not repeated per row


def test_each_run_keeps_its_colour_and_neighbours_differ():
    runs = [fake_run(n, [0.5], part=p) for n, p in (("a", 1), ("b", 1), ("c", 2), ("d", 2))]
    colors = figures.colors(runs)
    assert colors["a"] != colors["b"] and colors["c"] != colors["d"]
    assert figures.colors(runs) == colors


# --- pages from the committed fixture ------------------------------------------------------

@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    docs = tmp_path_factory.mktemp("docs")
    return docs, generate(FIXTURE, docs)


def test_every_experiment_gets_its_page_and_svg_figures_in_both_palettes(rendered):
    docs, written = rendered
    for page in ("portfolio/08d-Callbacks-MLP.md", "portfolio/TA8-Backpropagation-Optimizadores.md",
                 "index.md", "bench.md"):
        assert docs / page in written
    for exp in ("p8d", "ta8"):
        svgs = sorted((docs / "assets" / "generated" / exp).glob("*.svg"))
        light = [p for p in svgs if not p.stem.endswith("-dark")]
        assert light and len(svgs) == 2 * len(light)
        wide = [p for p in light if not p.stem.endswith("-narrow")]
        assert len(wide) * 2 == len(light)  # each figure also narrow, for phones
        for svg in svgs:
            text = svg.read_text()
            assert "<text" in text  # text kept as text: the browser test measures it
            sizes = [float(s) for s in re.findall(r"font[^;\"]*?([0-9.]+)px", text)]
            assert sizes and min(sizes) >= 9.5, svg
            if "-narrow" in svg.stem:  # 358 px wide on a 390 px phone: text >= 11 px there
                box = float(re.search(r'viewBox="0 0 ([0-9.]+)', text).group(1))
                assert box == pytest.approx(72 * figures.NARROW), svg
                assert min(sizes) * 358 / box >= 11, svg
            assert 'fill="#ffffff"' not in text.split("<g id=\"axes_1\">")[0]  # transparent


def test_each_figure_image_loads_lazily_with_its_svgs_size(rendered):
    """Every figure's four images are lazy (a browser fetches only the one it shows) and carry
    the width and height of the SVG they show, in CSS px (pt * 4/3), so the page's layout does
    not move while they load; the landing page's figure too."""
    docs, _ = rendered
    pages = ["portfolio/08d-Callbacks-MLP.md", "portfolio/TA8-Backpropagation-Optimizadores.md",
             "index.md"]
    for page in pages:
        text = (docs / page).read_text()
        found = re.findall(r"!\[[^\]]*\]\(([^)#]+\.svg)(?:#[a-z-]+)?\)\{([^}]*)\}", text)
        assert found and len(found) % 4 == 0, page
        for url, attrs in found:
            svg = ((docs / page).parent / url).resolve().read_text()
            w, h = re.search(r'<svg[^>]*?width="([0-9.]+)pt" height="([0-9.]+)pt"', svg).groups()
            assert f"width={round(float(w) * 4 / 3)} height={round(float(h) * 4 / 3)}" in attrs
            assert "loading=lazy" in attrs, (page, url)


def test_pages_carry_the_fixture_numbers_and_the_synthetic_warning(rendered):
    docs, _ = rendered
    doc = json.loads((FIXTURE / "ta8" / "results.json").read_text())
    page = (docs / "portfolio" / "TA8-Backpropagation-Optimizadores.md").read_text()
    assert "Datos sintéticos" in page
    for run in doc["runs"]:
        s = run["summary"]["test_accuracy"]
        assert f"| {run['label']} |" in page
        # mean and spread held together by no-break spaces: one line on a phone
        assert f"{100 * s['mean']:.1f}\u00a0±\u00a0{100 * s['std']:.1f}" in page, run["name"]
    assert "seed" not in re.sub(r"seed\d|seed<k>", "", page.lower())  # «página original»


def test_what_an_earlier_report_generated_and_this_one_does_not_is_removed(tmp_path):
    # An experiment removed (its page and figures stayed, published and in the nav), a part
    # gone (its figures stayed); hand-written pages and other assets are never touched.
    exp = tmp_path / "experiments"
    shutil.copytree(FIXTURE / "p8d", exp / "p8d")  # one that stays (the smaller of the two)
    shutil.copytree(FIXTURE / "p8d", exp / "otro")
    doc = json.loads((exp / "otro" / "results.json").read_text())
    doc["experiment"] = "otro"
    (exp / "otro" / "results.json").write_text(json.dumps(doc))
    docs = tmp_path / "docs"
    (docs / "guide").mkdir(parents=True)
    (docs / "guide" / "mine.md").write_text("# Mía\n")
    quoting = ("---\ntitle: Páginas generadas\n---\n# Cómo se reconocen\n\n```\n"
               "<!-- Generado por `python -m jaxmlp report` a partir de x; no editar -->\n```\n")
    (docs / "guide" / "quotes.md").write_text(quoting)  # quotes the stamp: hand-written
    (docs / "assets" / "logo.png").parent.mkdir(parents=True)
    (docs / "assets" / "logo.png").write_bytes(b"png")
    generate(exp, docs)
    assert (docs / "experiments" / "otro.md").is_file()
    assert list((docs / "assets" / "generated" / "otro").glob("*_part2*.svg"))
    doc["runs"] = [dict(r, part=1) for r in doc["runs"]]  # one part now
    (exp / "otro" / "results.json").write_text(json.dumps(doc))
    generate(exp, docs)
    assert not list((docs / "assets" / "generated" / "otro").glob("*_part2*.svg"))
    assert list((docs / "assets" / "generated" / "otro").glob("*_part1*.svg"))
    shutil.rmtree(exp / "otro")
    written = generate(exp, docs)
    assert not (docs / "experiments" / "otro.md").exists()
    assert not (docs / "assets" / "generated" / "otro").exists()
    assert (docs / "guide" / "mine.md").is_file() and (docs / "assets" / "logo.png").is_file()
    assert (docs / "guide" / "quotes.md").read_text() == quoting
    assert all(p.exists() for p in written)


def test_a_results_folder_without_a_template_gets_the_default_page(tmp_path):
    exp = tmp_path / "experiments" / "otro"
    shutil.copytree(FIXTURE / "p8d", exp)
    doc = json.loads((exp / "results.json").read_text())
    doc["experiment"], doc["title"] = "otro", "Otro experimento"
    doc["page"] = {"objective": "Ver qué pasa.", "description": "Una descripción."}
    (exp / "results.json").write_text(json.dumps(doc))
    generate(tmp_path / "experiments", tmp_path / "docs")
    page = (tmp_path / "docs" / "experiments" / "otro.md").read_text()
    assert page.startswith("---\ntitle: \"Otro experimento\"")
    assert "Ver qué pasa." in page and "Una descripción." in page
    assert "../assets/generated/otro/accuracy_part1.svg#only-light" in page


# --- a user's experiment, end to end -------------------------------------------------------

EXPERIMENT_FILE = '''
from jaxmlp import config as C
from jaxmlp.experiments.cli import Experiment

TRAIN = C.TrainConfig(dataset="fashion_mnist", epochs=2, batch_size=32, validation_split=0.1)
EXPERIMENT = Experiment(
    name="demo", title="Demo: ancho de la capa oculta", dataset="fashion_mnist", seeds=2,
    objective="Comprobar si una capa más ancha ayuda.",
    description="Dos runs que solo difieren en el ancho.",
    runs=(
        C.RunConfig(name="estrecha", label="Estrecha", train=TRAIN,
                    model=C.ModelConfig(hidden=(32,))),
        C.RunConfig(name="ancha", label="Ancha", train=TRAIN,
                    model=C.ModelConfig(hidden=(128,))),
    ),
)
'''


def jaxmlp(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "jaxmlp", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_an_own_template_is_recorded_relative_and_rendered_and_a_bad_one_named(tmp_path):
    (tmp_path / "tpl").mkdir()
    (tmp_path / "tpl" / "demo.md.j2").write_text(
        "---\ntitle: {{ title|yaml }}\n---\n# {{ title }}\n\nMi plantilla: "
        "{{ run.ancha.summary.test_accuracy.mean|pct }}\n")
    text = textwrap.dedent(EXPERIMENT_FILE).replace(
        'title="Demo: ancho de la capa oculta"', 'title=\'El "mejor" MLP: a\\\\b\'')
    text = text.replace("seeds=2,", 'seeds=2, template="tpl/demo.md.j2",')
    (tmp_path / "demo.py").write_text(text)
    jaxmlp("run", "demo.py", "--quick", "--quiet", "--out", "quick/demo", cwd=tmp_path)
    doc = json.loads((tmp_path / "quick" / "demo" / "results.json").read_text())
    assert doc["page"]["template"] == "tpl/demo.md.j2"  # a clone elsewhere reads its own copy
    jaxmlp("report", "--experiments", "quick", "--docs", "site_docs", cwd=tmp_path)
    page = (tmp_path / "site_docs" / "experiments" / "demo.md").read_text()
    assert "Mi plantilla: " in page
    front = page.split("---\n")[1]
    import yaml
    assert yaml.safe_load(front)["title"] == 'El "mejor" MLP: a\\b'  # quotes kept, valid YAML
    (tmp_path / "tpl" / "demo.md.j2").write_text("{{ run.nadie.summary }}\n")
    proc = subprocess.run([sys.executable, "-m", "jaxmlp", "report", "--experiments", "quick",
                           "--docs", "site_docs"], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert proc.returncode == 2 and proc.stderr.startswith("error: demo: template ")
    assert "tpl/demo.md.j2:1: UndefinedError" in proc.stderr and proc.stderr.count("\n") == 1
    (tmp_path / "tpl" / "demo.md.j2").unlink()
    proc = subprocess.run([sys.executable, "-m", "jaxmlp", "run", "demo.py", "--quick"],
                          cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert proc.returncode == 2 and "template='tpl/demo.md.j2'" in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_report_of_another_results_folder_keeps_the_sites_own_experiments(tmp_path):
    # --experiments elsewhere used to rewrite the landing and bench pages from that folder
    # alone (the site's own experiments gone from them).
    shutil.copytree(FIXTURE, tmp_path / "experiments")
    (tmp_path / "mkdocs.yml").write_text("site_name: x\n")
    other = tmp_path / "mine"
    shutil.copytree(FIXTURE / "p8d", other / "otro")
    doc = json.loads((other / "otro" / "results.json").read_text())
    doc["experiment"] = "otro"
    (other / "otro" / "results.json").write_text(json.dumps(doc))
    jaxmlp("report", "--experiments", "mine", cwd=tmp_path)
    index = (tmp_path / "docs" / "index.md").read_text()
    assert "experiments/otro.md" in index and "TA8" in index
    assert (tmp_path / "docs" / "experiments" / "otro.md").is_file()
    proc = subprocess.run([sys.executable, "-m", "jaxmlp", "report", "--experiments", "."],
                          cwd=tmp_path / "mine",
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2 and "no mkdocs.yml here" in proc.stderr
    assert not (tmp_path / "mine" / "docs").exists()


def test_a_new_experiment_file_runs_and_gets_its_page_in_the_built_site(tmp_path):
    (tmp_path / "demo.py").write_text(textwrap.dedent(EXPERIMENT_FILE))
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    # --quick may not write experiments/<name> (committed results); another folder it may.
    jaxmlp("run", "demo.py", "--quick", "--quiet", "--out", "quick/demo", cwd=tmp_path)
    doc = json.loads((tmp_path / "quick" / "demo" / "results.json").read_text())
    assert doc["page"]["objective"] == "Comprobar si una capa más ancha ayuda."
    listed = jaxmlp("list", "quick", cwd=tmp_path).stdout
    assert "demo" in listed and "2 runs" in listed
    jaxmlp("report", "--experiments", "quick", cwd=tmp_path)
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d",
                           str(tmp_path / "site")], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    html = (tmp_path / "site" / "experiments" / "demo" / "index.html").read_text()
    html = html.replace("&nbsp;", "\u00a0")
    home = (tmp_path / "site" / "index.html").read_text()
    assert 'href="experiments/demo/"' in home  # in the navigation
    assert "<table>" in html and "Comprobar si una capa más ancha ayuda." in html
    for kind in ("accuracy", "curves", "time"):
        shown = re.findall(rf"assets/generated/demo/({kind}_part\d+)\.svg#only-light", html)
        assert shown, kind
        assert (tmp_path / "site" / "assets" / "generated" / "demo" / f"{shown[0]}.svg").is_file()
    for run in doc["runs"]:
        s = run["summary"]["test_accuracy"]
        assert f"{100 * s['mean']:.1f}\u00a0±\u00a0{100 * s['std']:.1f}" in html, run["name"]
        assert f"{100 * s['min']:.1f}–\u2060{100 * s['max']:.1f}" in html, run["name"]


def test_the_portfolio_templates_follow_runs_added_to_the_results(tmp_path):
    """A run added to results.json (here TA8's 50-epoch control and P8D's scaled composition)
    shows up in the tables with no template change; the run list is never repeated in code."""
    for exp, source, new, label in (("ta8", "cb_reduce_lr", "cb_none", "Control añadido"),
                                    ("p8d", "con_callbacks", "con_callbacks_escalado",
                                     "Composición añadida")):
        shutil.copytree(FIXTURE / exp, tmp_path / "experiments" / exp)
        path = tmp_path / "experiments" / exp / "results.json"
        doc = json.loads(path.read_text())
        extra = json.loads(json.dumps(next(r for r in doc["runs"] if r["name"] == source)))
        extra.update(name=new, label=label)
        extra["config"]["hooks"] = {}
        doc["runs"].append(extra)
        path.write_text(json.dumps(doc))
    generate(tmp_path / "experiments", tmp_path / "docs")
    ta8 = (tmp_path / "docs" / "portfolio" / "TA8-Backpropagation-Optimizadores.md").read_text()
    p8d = (tmp_path / "docs" / "portfolio" / "08d-Callbacks-MLP.md").read_text()
    assert "| Control añadido |" in ta8 and "Frente a «Control añadido»" in ta8
    assert "| Composición añadida |" in p8d


def test_the_console_script_and_the_module_share_one_entry_point():
    import tomllib

    from jaxmlp import __main__ as cli

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"jaxmlp": "jaxmlp.__main__:main"}
    assert cli.main(["nonsense"]) == 2 and set(cli.VERBS) == {"run", "report", "list"}


def test_rendering_the_site_never_imports_jax(tmp_path):
    code = ("import sys; from pathlib import Path; from jaxmlp.report import generate; "
            f"generate(Path({str(FIXTURE)!r}), Path({str(tmp_path)!r})); "
            "assert 'jax' not in sys.modules, 'jax imported'")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr


def test_step_options_section_compares_each_variant_with_the_default():
    from jaxmlp.report import bench

    record = {"members": 8, "batch": 64, "n_train": 45000, "note": "toy machine", "variants": [
        {"name": "default", "unroll": 1, "xla_flags": "", "compile_s": 10.0, "epoch_s": 0.2,
         "step_us": 284.4},
        {"name": "u4", "unroll": 4, "xla_flags": "", "compile_s": 30.0, "epoch_s": 0.3,
         "step_us": 426.7},
        {"name": "broken", "unroll": 1, "xla_flags": "--x", "error": "aborted"}]}
    text = bench.step_options(record)
    assert "| u4 | 30.0 | 0.3000 | 427 | ×1.50 |" in text
    assert "| default | 10.0 | 0.2000 | 284 | ×1.00 |" in text
    assert "- `u4`: `--unroll 4`" in text and "- `default`: sin cambios" in text
    assert "- `broken`: `XLA_FLAGS=--x` — sin resultado (aborted)" in text


def test_observer_cost_section_shows_the_record_both_ways():
    from jaxmlp.report import bench

    record = {"benchmark": "observer_cost",
              "tensorboard": {"epochs": 3000, "rounds": 3, "cpu_us_per_epoch": 33.04,
                              "bytes_per_epoch": 199.0,
                              "per_value": {"cpu_us_per_epoch": 79.31, "bytes_per_epoch": 319.0}},
              "sweep": {"command": "python -m jaxmlp.experiments.ta8 --quick", "member_epochs":
                        9537, "writer_cpu_s": 2.541, "writer_cpu_ms_per_member_epoch": 0.266,
                        "writer_wall_s": 9.37, "main_waits_s": 9.38, "train_s": 23.46}}
    text = bench.observer_cost(record)
    assert "| Un evento por carpeta y época (ahora) | 33.0 | 199 |" in text
    assert "(antes de `3d044a7`) | 79.3 | 319 |" in text
    assert "9\u202f537 épocas de miembro" in text and "2.54 s de CPU (0.27 ms" in text
    assert bench.title(record).startswith("El hilo escritor")


def test_refit_section_shows_each_way_and_the_gain_of_later_fits():
    from jaxmlp.report import bench

    way = {"first_fit_s": 8.5, "later_fit_s": 0.5, "total_s": 10.0, "epochs": [21, 19, 17, 24]}
    record = {"benchmark": "refit", "fits": 4, "rounds": 3, "environment": {"keras": "3.15.1"},
              "modes": {"reuse": way, "rebuild": {**way, "later_fit_s": 4.25},
                        "disk": {**way, "first_fit_s": 3.0},
                        "many": {**way, "first_fit_s": None, "later_fit_s": None,
                                 "total_s": 9.5},
                        "keras": {**way, "first_fit_s": 9.0, "later_fit_s": 4.0,
                                  "epochs": [20, 17, 22, 19]}}}
    text = bench.refit(record)
    assert ("| jaxmlp, reutilizando los programas compilados (ahora) | 8.50 | 0.50 | 10.00 "
            "| 21, 19, 17, 24 |") in text
    assert "| jaxmlp, cada `fit` compila los suyos (antes) | 8.50 | 4.25 |" in text
    assert "| jaxmlp, con la caché de compilación persistente de JAX llena | 3.00 | 0.50 |" in text
    assert "`jaxmlp.fit_many` | — | — | 9.50 | 21, 19, 17, 24 |" in text
    assert "| 9.00 | 4.00 | 10.00 | 20, 17, 22, 19 |" in text and "Keras 3.15.1" in text
    assert "×8.5 más rápidos" in text and "semillas 0 a 3" in text
    assert bench.title(record) == "Entrenar otra vez en el mismo proceso"
    one = {**record, "fits": 1, "environment": {},
           "modes": {k: {**way, "later_fit_s": None} for k in ("reuse", "rebuild")}}
    text = bench.refit(one)
    assert "| 8.50 | — | 10.00 |" in text and "más rápidos" not in text and "Keras 3" not in text


def test_merge_probe_section_reads_the_ratio_round_by_round():
    from jaxmlp.report import bench

    group = {"runs": ["a", "b", "c"], "members": 3, "compile_and_first_epoch_s": 2.0,
             "epoch_s": 0.5}
    record = {"experiment": "ta8", "batch": 64, "epochs_budget": 20, "n_train": 4480,
              "steps_per_epoch": 70, "groups": [group, {**group, "runs": ["d"]}],
              "merged": {"compile_and_first_epoch_s": 3.0, "epoch_s": 0.6},
              "apart_epoch_s": 1.0, "ratios": [0.5, 0.6, 0.7], "ratio": 0.6,
              "same_numbers": True}
    text = bench.merge_probe(record)
    assert "| `a`, `b` y 1 más | 3 | 2.0 | 0.500 |" in text
    assert "| **los 2 en un programa** |  | 3.0 | 0.600 |" in text
    assert "×0.60 (por ronda; cuartiles ×0.55–×0.65): más barato" in text
    assert "70 pasos en serie por época en lugar de 140" in text
    assert "4\u202f480 ejemplos sintéticos, no los 45\u202f000 de TA8" in text
    for ratios in ([0.9, 1.0, 1.2], [0.96, 0.97, 0.98]):  # both sides of x1; under 5 % apart
        assert "lo mismo a efectos prácticos" in bench.merge_probe({**record, "ratios": ratios})
    assert "más caro" in bench.merge_probe({**record, "ratios": [1.1, 1.2, 1.3]})


def test_unused_parts_section_says_what_each_run_leaves_out_and_whether_numbers_moved():
    from jaxmlp.report import bench

    row = {"spec": "p8d:sin_callbacks", "batch": 128, "rounds": 3,
           "uses": {"dropout": [True, False], "l2": False},
           "median_epoch_s": {"every": 0.3, "used": 0.25}, "ratio": 0.83,
           "ratio_quartiles": [0.8, 0.9], "max_rel_difference": 0.0}
    other = {**row, "spec": "ta8:l2", "batch": 64, "max_rel_difference": 2e-7,
             "uses": {"dropout": [False, False, False], "l2": True}}
    text = bench.unused_parts({"rounds": 3, "runs": [row, other]})
    assert ("| p8d:sin_callbacks (batch 128) | dropout 2, L2 | 0.300 | 0.250 | ×0.83 "
            "(×0.80–×0.90) | sí, bit a bit |") in text
    assert "| ta8:l2 (batch 64) | dropout 1, dropout 2, dropout 3 |" in text
    assert "| a 2e-07 (relativa) |" in text and "3 rondas" in text
    assert bench.title({"benchmark": "unused_parts"}) == "Solo lo que el modelo usa: dropout y L2"


def test_step_options_interleaved_section_reads_each_variant_round_by_round():
    from jaxmlp.report import bench

    base = [1.0, 2.0, 1.0, 1.0, 1.0]  # a slow second round falls on every variant
    record = {"members": 1, "batch": 128, "n_train": 45000, "rounds": 5, "repeats": 1,
              "variants": [
                  {"name": "default", "unroll": 1, "xla_flags": "", "compile_s": 5.0,
                   "epoch_s": 1.0, "step_us": 2844.4, "epoch_times_s": base,
                   "equal_to": "default", "equal": True},
                  # 0.9 of default in every round: faster, but other numbers
                  {"name": "fast", "unroll": 1, "xla_flags": "--xla_a=1", "compile_s": 6.0,
                   "epoch_s": 0.9, "step_us": 2560.0, "epoch_times_s": [0.9 * t for t in base],
                   "equal_to": "default", "equal": False},
                  # rounds 1.2, 1.0 (2/2), 0.8, 1.0, 1.0: no faster in three rounds in four
                  {"name": "same", "unroll": 1, "xla_flags": "--xla_b=true", "compile_s": 7.0,
                   "epoch_s": 1.0, "step_us": 2844.4, "epoch_times_s": [1.2, 2.0, 0.8, 1.0, 1.0],
                   "equal_to": "default", "equal": True},
                  {"name": "unknown", "unroll": 1, "xla_flags": "--xla_c=2",
                   "error": "No such compile option"}]}
    text = bench.step_options(record)
    assert "Un run del modelo combinado de TA8 (batch 128" in text
    assert "--rounds 5" in text and "5 rondas alternadas" in text
    assert "| Por ronda | Igual bit a bit |" in text
    assert "| Variante | Compilación (s) | Época (s) | Por ronda | Igual bit a bit |" in text
    assert "| default | 5.0 | 1.000 | — | referencia |" in text
    assert "| fast | 6.0 | 0.900 | ×0.90 (×0.90–×0.90) | no |" in text
    assert "| same | 7.0 | 1.000 | ×1.00 (×1.00–×1.00) | sí |" in text
    assert "tres de cada cuatro rondas" in text and "`fast` (distinta bit a bit)" in text
    assert "`same` (" not in text
    assert "- `fast`: opción de compilación `--xla_a=1`" in text
    assert "- `unknown`: opción de compilación `--xla_c=2` — sin resultado (No such" in text
    slower = dict(record, variants=[record["variants"][0], record["variants"][2]])
    assert "Ninguna variante es más rápida que `default`" in bench.step_options(slower)


# --- the bench page: goals, machines, superseded records ------------------------------------

def _env(platform, device):
    return {"platform": platform, "device": device, "device_count": 1, "jax": "0.0"}


def _sweep(experiment, platform, cache, seconds, created, **extra):
    return {"benchmark": "whole_sweep", "experiment": experiment, "command": "python -m x",
            "runs": 2, "members": 6, "epochs": 60, "groups": 1, "wall_time_s": seconds - 1,
            "process_wall_time_s": seconds, "n_train": 100, "dataset": "toy",
            "compile_cache": cache, "created": created,
            "environment": _env(platform, "Toy GPU" if platform == "gpu" else "Toy CPU"),
            **extra}


def _floor(created, ours64, keras64, ours128, keras128, floor, **extra):
    def row(batch, ours, keras):
        return {"batch": batch, "epoch_s": ours, "examples_per_s": 100 / ours, "floor_s": floor,
                "ratio": ours / floor, "epochs_s": [ours], "keras": {
                    "epoch_s": keras, "epochs_s": [keras], "speedup": keras / ours,
                    "rounds": 1, "keras": "3.0"}}
    return {"benchmark": "epoch_vs_floor", "created": created,
            "environment": _env("cpu", "Toy CPU"),
            "rows": [row(128, ours128, keras128), row(64, ours64, keras64)], **extra}


def test_floor_gap_says_what_matmuls_and_the_update_alone_take_against_the_floor(tmp_path):
    from jaxmlp.report import bench

    def profile(created, matmul, update, **extra):
        return {"benchmark": "epoch_profile", "created": created,
                "environment": _env("cpu", "Toy CPU"), **extra,
                "rows": [{"batch": 128, "epoch_s": 2.5, "steps": 10, "ops_s": 2.4,
                          "categories_s": {"matmul": matmul, "parameter-sized update": update,
                                           "copy": 0.3}}]}

    benches = [("floor", _floor("2026-01-02T00:00:00Z", 2.0, 3.0, 2.0, 3.0, 1.0)),
               ("prof", profile("2026-01-02T00:00:00Z", 1.1, 0.2)),
               ("prof_old", profile("2026-01-01T00:00:00Z", 9.0, 9.0)),
               ("prof_gone", profile("2026-01-03T00:00:00Z", 7.0, 7.0, superseded="x"))]
    text = bench.floor_gap(benches, tmp_path)
    # 1.2 x a floor of 1 s; products 1.1 s, update 0.2 s: 1.3 x the floor together
    assert "una época de 1.200\u00a0s como mucho" in text and "`floor`" in text
    assert "En la traza de `prof` (una época de 2.50\u00a0s" in text
    assert "suman 1.100\u00a0s, 1.10 veces el mínimo" in text
    assert "(Adam), 0.200\u00a0s: las dos juntas, 1.30 veces el mínimo" in text
    assert "no se alcanzaría aunque todo lo demás" in text  # 1.3 > 1.2: out of reach
    under = [benches[0], ("prof", profile("2026-01-02T00:00:00Z", 0.9, 0.2))]
    assert "no se alcanzaría" not in bench.floor_gap(under, tmp_path)  # 1.1 <= 1.2
    assert "floor_gap" in bench.context(benches, tmp_path)
    met = [("floor", _floor("2026-01-02T00:00:00Z", 1.1, 3.0, 1.1, 3.0, 1.0)), benches[1]]
    assert bench.floor_gap(met, tmp_path) is None  # 1.1 <= 1.2: nothing to explain
    assert bench.floor_gap(benches[:1], tmp_path) is None  # no profile


def test_gpu_gap_says_what_each_goal_leaves_and_what_the_measured_step_predicts(tmp_path):
    from jaxmlp.report import bench

    def split(load, train):
        return {"load": load, "compile_wait": 0.5, "train": train}

    # 10 steps an epoch (1,000 examples, batch 100); 2 members 3 ms, 6 members 7 ms: a step
    # costs 100 us + 100 us per member
    roof = {"benchmark": "roofline", "created": "2026-01-01T00:00:00Z", "n_train": 1000,
            "batch": 100, "environment": _env("gpu", "Toy GPU"), "bandwidth_gbs": 1000.0,
            "bandwidth_elements": 4096, "matmul_size": 64, "training_matmul_precision": "default",
            "peak_tflops": {"float32_training_precision": 9.0, "float32_highest": 9.0,
                            "bfloat16": 9.0},
            "epoch": [{"members": 6, "epoch_s": 0.007, "tflops": 1.0, "percent_of_peak": 1.0},
                      {"members": 2, "epoch_s": 0.003, "tflops": 1.0, "percent_of_peak": 1.0}]}
    other_card = {**roof, "created": "2026-01-05T00:00:00Z", "epoch": [
        {**roof["epoch"][0], "members": 1}, {**roof["epoch"][1], "members": 9}],
        "environment": _env("gpu", "Other GPU")}
    sched = {"benchmark": "schedule", "created": "2026-01-01T00:00:00Z", "experiments": [
        {"experiment": "ta8", "n_train": 1000, "groups": [], "member_epochs": 1800,
         "masked_member_epochs": 200, "programs_one_per_batch_and_budget": 1,
         "sequential_steps": 1000, "vmapped_member_steps": 20000,
         "sequential_steps_one_program_per_batch_and_budget": 500,
         "vmapped_update_bytes": 2e12}]}
    benches = [
        # 20 s in all, 18 from the first load on: 2 s outside, 1 s loading: 12 s of 15 left
        ("warm", _sweep("ta8", "gpu", "warm", 20.0, "2026-01-01T00:00:00Z",
                        since_start_s=18.0, time_split_s=split(1.0, 2.5),
                        process_exit_s=0.5)),
        # P8D cold: 3 s outside and 3 s loading, past its 5 s before compiling
        ("p8d_cold", _sweep("p8d", "gpu", "cold", 8.0, "2026-01-01T00:00:00Z",
                            since_start_s=5.0, time_split_s=split(3.0, 1.0))),
        ("p8d_warm_no_split", _sweep("p8d", "gpu", "warm", 8.0, "2026-01-01T00:00:00Z")),
        ("roof", roof), ("roof_other", other_card), ("schedule", sched)]
    text = bench.gpu_gap(benches, tmp_path)
    rows = [line for line in text.splitlines() if line.startswith("| TA8") or
            line.startswith("| P8D")]
    assert rows == ["| TA8 en caliente, ≤\u00a015\u00a0s | `warm` | 2.0 (1.5 + 0.5) | 1.0 | 12.0 | "
                    "0.5 / 2.5 |",
                    "| P8D en frío, ≤\u00a05\u00a0s | `p8d_\u200bcold` | 3.0 | 3.0 | -1.0 | "
                    "0.5 / 1.0 |"]
    assert "la meta ya se ha pasado antes de compilar nada" in text
    assert "de `roof` (una época" in text and "Other" not in text
    assert "cuesta 100\u00a0µs fijos más 100.0\u00a0µs por miembro" in text
    # 1,000 steps x 100 us + 20,000 member steps x 100 us
    assert "0.1\u00a0s + 2.0\u00a0s = 2.1\u00a0s de entrenamiento; `warm` midió 2.5" in text
    assert "(500 pasos en serie), la parte fija sería 0.1\u00a0s" in text  # 0.05 s
    # 2 TB in the 12 s left: 0.17 TB/s; at the measured 1,000 GB/s, 2 s
    assert "2.0\u00a0TB en todo el barrido" in text and "pide 0.2\u00a0TB/s" in text
    assert "a ese ritmo, 2.0\u00a0s" in text
    assert "gpu_gap" in bench.context(benches, tmp_path)
    assert "tríada de STREAM (z = x·s + z sobre 4\u202f096 float32" in bench.roofline(roof)
    assert "**1\u202f000 GB/s**" in bench.roofline(roof)
    # without the roofline or the schedule, only the table; without a split, nothing
    assert "cuesta" not in bench.gpu_gap(benches[:3] + benches[5:], tmp_path)
    assert bench.gpu_gap([benches[2]], tmp_path) is None


def test_bench_goals_take_the_newest_record_in_force_and_say_what_is_unmeasured(tmp_path):
    from jaxmlp.report import bench

    benches = [
        ("floor_new", _floor("2026-01-02T00:00:00Z", 1.0, 1.6, 1.0, 1.4, 0.9)),
        ("floor_old", _floor("2026-01-01T00:00:00Z", 1.0, 3.0, 1.0, 3.0, 0.5)),
        ("floor_gone", _floor("2026-01-03T00:00:00Z", 1.0, 9.0, 1.0, 9.0, 5.0,
                              superseded="another machine")),
        ("ta8_cold", _sweep("ta8", "gpu", "cold", 29.6, "2026-01-01T00:00:00Z")),
        ("ta8_warm", _sweep("ta8", "gpu", "warm", 16.0, "2026-01-01T00:00:00Z")),
        ("ta8_cpu", _sweep("ta8", "cpu", "cold", 10.0, "2026-01-01T00:00:00Z")),
        # newer, but another configuration (a label): not what the command does as it is
        ("ta8_cold_flags", _sweep("ta8", "gpu", "cold", 12.0, "2026-01-02T00:00:00Z",
                                  label="XLA_FLAGS")),
    ]
    rows = {r[0]: r[1:] for r in bench.goals(benches, tmp_path)}
    cold = rows["TA8 entero en una GPU, en frío (proceso entero)"]
    assert cold[1] == "30\u00a0s" and cold[3] == "cumplido" and "`ta8_cold`" in cold[2]
    warm = rows["TA8 entero en una GPU, en caliente (proceso entero)"]
    assert warm[1] == "16\u00a0s" and warm[3] == "**no**"
    # No P8D record at all: missing, not borrowed from a CPU record or guessed.
    assert rows["P8D entero en una GPU, en frío (proceso entero)"][1:] == [
        "sin medir", "—", "sin medir"]
    b64 = rows["CPU: Keras 3 `fit` / jaxmlp, batch 64 (mismo proceso)"]
    assert b64[1] == "×1.60" and b64[3] == "cumplido" and "`floor_new`" in b64[2]
    b128 = rows["CPU: Keras 3 `fit` / jaxmlp, batch 128 (mismo proceso)"]
    assert b128[1] == "×1.40" and b128[3] == "**no**"
    ratio = rows["CPU: época / mínimo de la máquina, batch 128"]
    assert ratio[1] == "1.111" and ratio[3] == "cumplido"


def test_cpu_goals_come_once_per_host_newest_first_and_a_day_is_ordered_by_time(tmp_path):
    from jaxmlp.report import bench

    def on(device, record):
        return {**record, "environment": _env("cpu", device)}

    benches = [
        # host A: two records of one day; the later one (by its time) stands
        ("a_morning", on("Host A", _floor("2026-01-02T08:00:00Z", 1.0, 1.2, 1.0, 1.2, 0.9))),
        ("a_evening", on("Host A", _floor("2026-01-02T20:00:00Z", 1.0, 1.4, 1.0, 1.3, 0.9))),
        # host B: measured later, on a faster machine
        ("b", on("Host B", _floor("2026-01-03T00:00:00Z", 1.0, 1.8, 1.0, 1.7, 0.8))),
    ]
    rows = [r for r in bench.goals(benches, tmp_path) if r[0].startswith("CPU")]
    assert len(rows) == 6  # three CPU goals, for each host
    assert ["`b` (Host B" in r[3] for r in rows] == [True] * 3 + [False] * 3
    assert all("`a_evening` (Host A, 2026-01-02" in r[3] for r in rows[3:])
    assert [r[2].split(" ")[0] for r in rows] == ["×1.80", "×1.70", "1.250",
                                                   "×1.40", "×1.30", "1.111"]
    assert [r[4] for r in rows] == ["cumplido", "cumplido", "**no**", "**no**", "**no**",
                                    "cumplido"]
    # no CPU record at all: the three CPU goals, unmeasured
    none = [r for r in bench.goals(benches[:0], tmp_path) if r[0].startswith("CPU")]
    assert [r[2] for r in none] == ["sin medir"] * 3


def test_the_floor_gap_reads_a_profile_of_the_floor_records_host_only(tmp_path):
    from jaxmlp.report import bench

    def profile(device, created, matmul):
        return {"benchmark": "epoch_profile", "created": created,
                "environment": _env("cpu", device),
                "rows": [{"batch": 128, "epoch_s": 2.5, "steps": 10, "ops_s": 2.4,
                          "categories_s": {"matmul": matmul, "parameter-sized update": 0.2}}]}

    floor = {**_floor("2026-01-02T00:00:00Z", 2.0, 3.0, 2.0, 3.0, 1.0),
             "environment": _env("cpu", "Host A")}
    benches = [("floor", floor), ("prof_a", profile("Host A", "2026-01-01T00:00:00Z", 1.1)),
               ("prof_b", profile("Host B", "2026-01-05T00:00:00Z", 5.0))]
    text = bench.floor_gap(benches, tmp_path)
    assert "`floor`, en Host A;" in text and "`prof_a`" in text and "prof_b" not in text
    assert bench.floor_gap([benches[0], benches[2]], tmp_path) is None  # no profile of host A


def test_bench_page_splits_gpu_cpu_and_superseded_and_the_keras_card_is_in_force(tmp_path):
    from jaxmlp.report import bench

    benches = [
        ("epoch_floor_cpu", _floor("2026-01-02T00:00:00Z", 1.0, 1.3, 1.0, 1.2, 0.9)),
        ("z_old_floor", _floor("2026-01-05T00:00:00Z", 1.0, 1.9, 1.0, 1.9, 0.9,
                               superseded="otra máquina")),
        ("p8d_gpu", _sweep("p8d", "gpu", "cold", 4.0, "2026-01-01T00:00:00Z", code="abc1234")),
        ("p8d_cpu_a", _sweep("p8d", "cpu", "cold", 90.0, "2026-01-01T00:00:00Z",
                             label="antes", note="a note")),
    ]
    ctx = bench.context(benches, tmp_path)
    assert [g["name"] for g in ctx["groups"]] == ["GPU", "CPU"]
    gpu, cpu = ctx["groups"]
    assert [s["file"] for s in gpu["sections"]] == ["p8d_gpu"]
    assert gpu["sections"][0]["code"] == "abc1234"
    assert [s["file"] for s in cpu["sections"]] == ["p8d_cpu_a", "epoch_floor_cpu"]
    assert cpu["sections"][0]["title"] == (
        "Barrido completo de P8D, caché de compilación en frío: antes")
    # The record's note (English) is kept, collapsed under a Spanish title.
    assert '??? note "Nota del registro (en inglés)"\n\n    a note\n' in cpu["sections"][0]["text"]
    assert [s["file"] for s in ctx["earlier"]] == ["z_old_floor"]
    assert ctx["earlier"][0]["superseded"] == "otra máquina"
    # The landing page's card: the record in force, though the superseded one sorts later.
    assert [round(r["speedup"], 2) for r in ctx["keras"]["hosts"][0]["rows"]] == [1.3, 1.2]
    assert len(ctx["keras"]["hosts"]) == 1 and ctx["keras"]["low"] == pytest.approx(1.2)
    assert "abc1234" in bench.gpu_status(benches, tmp_path)
    assert "Sin mediciones de GPU" in bench.gpu_status(benches[:2], tmp_path)

    from jaxmlp.report.render import environment
    page = environment().get_template("bench.md.j2").render(bench=ctx)
    assert "## GPU" in page and "## CPU" in page and "## Registros anteriores" in page
    block = page.split("## Registros anteriores")[1].split('??? note "')[1]
    # a collapsed entry names what, the machine, the date (and code) and the file
    assert block.startswith("Una época frente al mínimo de la máquina, y frente a Keras 3 — "
                            "Toy CPU, 2026-01-05 (`z_old_floor.json`)")
    assert all(line.startswith("    ") or not line.strip()
               for line in block.splitlines()[1:] if line.strip())


def test_sweep_section_names_the_member_axis_only_when_the_record_does():
    from jaxmlp.report import bench

    record = {"benchmark": "sweep", "batch": 64, "n_train": 10,
              "environment": _env("cpu", "Toy CPU"),
              "scaling": [{"members": 1, "epoch_s": 1.0, "per_member_s": 1.0}]}
    assert "lax.map" not in bench.sweep(record) and "vmap" not in bench.sweep(record)
    assert "`lax.map`" in bench.sweep({**record, "member_axis": "map"})
    both = {"group_vs_solo": {"members": 4, "group_epoch_s": 6.0, "solo_epochs_s": 8.0,
                              "speedup": 8 / 6},
            "keras": {"jaxmlp_epoch_s": 1.5, "keras_epoch_s": 2.4, "speedup": 1.6}}
    text = bench.sweep({**record, **both})
    assert text.count("medidos uno después del otro, no alternados") == 2
    for part in both.values():
        part["rounds"] = 7
    text = bench.sweep({**record, **both})
    assert "×1.33; alternados época a época, mediana de 7 rondas" in text
    assert "×1.60; alternados época a época, mediana de 7 rondas" in text
    assert "vectorizado (`vmap`)" in bench.sweep({**record, "member_axis": "vmap"})


def test_epoch_floor_section_says_how_flops_were_counted_and_shows_each_cpu_pair():
    from jaxmlp.report import bench

    old = _floor("2026-01-01T00:00:00Z", 1.0, 1.3, 1.0, 1.2, 0.9)
    new = _floor("2026-01-02T00:00:00Z", 1.0, 1.3, 0.8, 1.2, 0.5, flop_count="executed",
                 n_train=1000)
    for r, plain in zip(new["rows"], (0.9, 1.5)):  # batch 128, then 64
        r["epoch_gflop"] = 2 * 3072 * 256 * 1000 / 0.4 / 1e9  # the kernel gradient: 40 %
        r["plain_first_layer"] = {"epoch_s": plain, "epochs_s": [plain],
                                  "speedup": plain / r["epoch_s"]}
    assert "6 × pesos densos" in bench.epoch_floor(old)
    assert "que ningún paso calcula" in bench.epoch_floor(old)
    assert "xᵀ copiada antes" not in bench.epoch_floor(old)  # older records lack the pair
    text = bench.epoch_floor(new)
    assert "6 × pesos" not in text and "salvo la primera" in text
    assert "40\u00a0% de los FLOP" in text
    assert "| 128 | 0.800 | 0.900 | ×1.12 |" in text and "| 64 | 1.000 | 1.500 | ×1.50 |" in text
    assert "Máscaras en cada paso" not in text  # a record without the masks pair
    for r, inline in zip(new["rows"], (0.88, 1.1)):
        r["masks_in_step"] = {"epoch_s": inline, "epochs_s": [inline],
                              "speedup": inline / r["epoch_s"]}
    text = bench.epoch_floor(new)
    assert "Máscaras en cada paso" in text and "dos veces por unidad" in text
    assert "(1 rondas;" in text  # a record without its repeats
    new["repeats"] = 1
    for r in new["rows"]:
        r["keras"]["rounds"] = 15
    assert "(15 rondas de 1 época por lado;" in bench.epoch_floor(new)
    assert "| 128 | 0.800 | 0.880 | ×1.10 |" in text and "| 64 | 1.000 | 1.100 | ×1.10 |" in text


def _alternating(record, ours128, keras128):
    """`record` (from _floor) timed in alternating rounds of one epoch per side, with these
    per-round epochs at batch 128."""
    record["repeats"] = 1
    row = next(r for r in record["rows"] if r["batch"] == 128)
    row["epochs_s"], row["keras"]["epochs_s"] = ours128, keras128
    row["keras"]["rounds"] = len(ours128)
    return record


def test_keras_goal_is_met_only_when_three_rounds_in_four_reach_it(tmp_path):
    from jaxmlp.report import bench

    label = "CPU: Keras 3 `fit` / jaxmlp, batch 128 (mismo proceso)"
    # The ratio of the medians is 1.6, but in half of the rounds Keras was under 1.5x ours.
    uneven = _alternating(_floor("2026-01-02T00:00:00Z", 1.0, 1.6, 1.0, 1.6, 0.9),
                          [1.0] * 8, [1.4, 1.4, 1.4, 1.4, 1.6, 1.8, 1.8, 1.8])
    row = {r[0]: r[1:] for r in bench.goals([("floor", uneven)], tmp_path)}[label]
    assert row[1].startswith("×1.60 (por ronda, cuartiles ×1.40–") and row[3] == "**no**"
    even = _alternating(_floor("2026-01-02T00:00:00Z", 1.0, 1.6, 1.0, 1.6, 0.9),
                        [1.0] * 8, [1.5, 1.55, 1.6, 1.6, 1.6, 1.6, 1.65, 1.7])
    row = {r[0]: r[1:] for r in bench.goals([("floor", even)], tmp_path)}[label]
    assert row[1] == "×1.60 (por ronda, cuartiles ×1.59–×1.61)" and row[3] == "cumplido"
    # A record in blocks of epochs has no rounds to pair: the ratio of medians alone decides.
    blocks = _floor("2026-01-02T00:00:00Z", 1.0, 1.6, 1.0, 1.6, 0.9, repeats=3)
    row = {r[0]: r[1:] for r in bench.goals([("floor", blocks)], tmp_path)}[label]
    assert row[1] == "×1.60" and row[3] == "cumplido"


def test_epoch_floor_tables_pair_the_sides_round_by_round_only_when_they_alternate():
    from jaxmlp.report import bench

    record = _alternating(_floor("2026-01-02T00:00:00Z", 1.0, 1.3, 1.0, 1.2, 0.5),
                          [1.0, 2.0, 1.0, 1.0], [1.2, 2.6, 1.1, 1.3])
    text = bench.epoch_floor(record)
    # Rounds: 1.2, 1.3, 1.1, 1.3 -> median 1.25, quartiles 1.175 and 1.3.
    assert "| Keras / jaxmlp | Por ronda |" in text
    assert "| ×1.25 (×1.18–×1.30) |" in text and "«Por ronda» es el cociente" in text
    # Batch 64 has a single epoch per side here: no rounds to pair, so a dash.
    assert "| ×1.30 | — |" in text
    record["repeats"] = 3
    text = bench.epoch_floor(record)
    assert "Por ronda" not in text and "«Por ronda»" not in text


def test_whole_sweep_text_says_what_the_writer_thread_did_beside_training(tmp_path):
    from jaxmlp.report import bench

    split = {"load": 1.0, "train": 9.0, "io": 0.4, "io_thread": 5.5}
    text = bench.whole_sweep(_sweep("ta8", "gpu", "warm", 20.0, "2026-01-01T00:00:00Z",
                                    time_split_s=split))
    assert "| escritura (modelos, registros) | 0.4 |" in text  # what the main thread waited
    assert "llevó 5.5 s en el hilo de escritura" in text
    assert "detrás de un cierre cuenta en la fila de observadores" in text  # one queue, in order
    first = bench.whole_sweep(_sweep("ta8", "gpu", "warm", 20.0, "2026-01-01T00:00:00Z",
                                     time_split_s=split, observers_first=True))
    assert "un observador pasa antes que un cierre" in first  # records of today's writer
    assert "detrás de un cierre" not in first
    del split["io_thread"]  # a record from before the writer thread: no such sentence
    assert "hilo de escritura" not in bench.whole_sweep(
        _sweep("ta8", "gpu", "warm", 20.0, "2026-01-01T00:00:00Z", time_split_s=split))


def test_whole_sweep_text_gives_the_cpu_by_kind_of_thread_where_recorded():
    from jaxmlp.report import bench

    cpu = {"compile": 12.0, "io": 2.5, "main": 8.0, "other": 6.0, "tensorstore": 4.0,
           "xla_compute": 300.0, "ended": 5.5, "process": 338.0}
    text = bench.whole_sweep(_sweep("p8d", "cpu", "cold", 200.0, "2026-01-01T00:00:00Z",
                                    time_split_s={"train": 180.0}, cpu_s=cpu))
    assert "| cómputo de XLA (entrenamiento y evaluación) | 300.0 |" in text
    assert "| TensorStore (escribe los checkpoints de Orbax) | 4.0 |" in text
    assert "| **total del proceso** | **338.0** |" in text
    assert "El hilo de escritura gastó 2.5 s de CPU, y TensorStore, que escribe los " \
           "checkpoints que ese hilo pide a Orbax, 4.0 s más" in text
    older = bench.whole_sweep(_sweep("p8d", "cpu", "cold", 200.0, "2026-01-01T00:00:00Z",
                                     time_split_s={"train": 180.0}))
    assert "Segundos de CPU" not in older  # records from before runner.ThreadCPU


def test_a_schedule_record_is_a_gpu_section_that_names_no_machine(tmp_path):
    from jaxmlp.report import bench
    from jaxmlp.report.render import environment

    group = {"group": "a-4-x", "runs": ["a", "b", "c", "d"], "batch": 10, "members": 4,
             "epoch_budget": 6, "longest": 6, "steps_per_epoch": 10, "sequential_steps": 60,
             "member_epochs": 16, "masked_member_epochs": 8}
    record = {"benchmark": "schedule", "created": "2026-01-02T00:00:00Z", "code": "abc1234",
              "experiments": [{"experiment": "toy", "n_train": 100, "groups": [group],
                               "sequential_steps": 60, "member_epochs": 16,
                               "masked_member_epochs": 8,
                               "sequential_steps_one_program_per_batch_and_budget": 60,
                               "programs_one_per_batch_and_budget": 1}]}
    ctx = bench.context([("schedule", record)], tmp_path)
    assert [g["name"] for g in ctx["groups"]] == ["GPU"]
    text = ctx["groups"][0]["sections"][0]["text"]
    assert "TOY, 100 ejemplos de entrenamiento, 1 programa (" in text
    assert "| `a`, `b` y 2 más | 10 | 4 | 6 / 6 | 60 | 16 + 8 |" in text
    assert "En total, 60 pasos en serie, 16 épocas-miembro entrenadas y 8 bajo máscara" in text
    assert "Sin mediciones de GPU" in bench.gpu_status([("schedule", record)], tmp_path)
    page = environment().get_template("bench.md.j2").render(bench=ctx)
    assert "Archivo `schedule.json`. Contado el 2026-01-02, código `abc1234`." in page
    assert "Máquina: None" not in page


def test_a_sweep_in_several_processes_is_compared_with_one_process_on_its_machine(tmp_path):
    from jaxmlp.report import bench

    one = _sweep("p8d", "cpu", "cold", 400.0, "2026-01-01T00:00:00Z", code="aaa1111")
    two = _sweep("p8d", "cpu", "cold", 320.0, "2026-01-02T00:00:00Z", processes=2,
                 cores_per_process=1, time_split_s={"train": 300.0, "compile": 40.0})
    elsewhere = _sweep("p8d", "cpu", "cold", 100.0, "2026-01-03T00:00:00Z",
                       environment=_env("cpu", "Other CPU"))
    ctx = bench.context([("one", one), ("two", two), ("elsewhere", elsewhere)], tmp_path)
    sections = {s["file"]: s for g in ctx["groups"] for s in g["sections"]}
    text = sections["two"]["text"]
    assert sections["two"]["title"] == ("Barrido completo de P8D, caché de compilación en frío, "
                                        "2 procesos")
    assert "1 grupo compilado en el proceso 0" in text
    assert "en 2 procesos de 1 núcleo cada uno" in text
    assert "hilo principal del proceso 0" in text
    # One core each: the compiles took that core's time from the training.
    assert "sumaron 40 s de compilación en el proceso 0, en el mismo núcleo" in text
    assert "camino crítico" not in text
    assert "camino crítico" in bench.whole_sweep(dict(one, time_split_s={"compile": 40.0}))
    # The threads' waits for their turn (runner.Turns): apart since they are recorded apart;
    # said to be inside the sum for records of the code that had turns but did not split them
    # (the same commit brought the writer thread, io_thread).
    several = dict(one, groups=15)
    apart = bench.whole_sweep(dict(several, time_split_s={"compile": 40.0, "compile_turns": 12.0}))
    assert "40 s de compilación (aparte, 12 s esperando su turno" in apart
    inside = bench.whole_sweep(dict(several, time_split_s={"compile": 40.0, "io_thread": 1.0}))
    assert "40 s de compilación (esa suma incluye lo que cada hilo esperó su turno" in inside
    assert "su turno" not in bench.whole_sweep(dict(several, time_split_s={"compile": 40.0}))
    # One group, or one compile thread per process (one core): nobody waited for a turn.
    assert "su turno" not in bench.whole_sweep(dict(one, groups=1, time_split_s={
        "compile": 40.0, "io_thread": 1.0}))
    assert "su turno" not in bench.whole_sweep(dict(two, groups=15, time_split_s={
        "compile": 40.0, "io_thread": 1.0}))
    # 400 s against 320 s on the same machine; the faster record of another machine is not it.
    assert ("El mismo barrido en un solo proceso en esta máquina (`one.json`, 2026-01-01, "
            "código `aaa1111`): 400 s; en 2 procesos, 320 s: **×1.25**") in text
    assert "un solo proceso" not in sections["one"]["text"]
    assert "procesos" not in sections["one"]["title"]
    # Without a one-process record of that machine there is nothing to compare with.
    ctx = bench.context([("two", two), ("elsewhere", elsewhere)], tmp_path)
    assert all("un solo proceso" not in s["text"] for g in ctx["groups"] for s in g["sections"])
    # The one-process record timed with the same code is its pair, even once a newer record
    # (other code, another hour) replaces it; without one of its code, the newest in force.
    paired, newer = dict(two, code="bbb2222"), _sweep("p8d", "cpu", "cold", 500.0,
                                                      "2026-01-04T00:00:00Z", code="ccc3333")
    old = dict(one, code="bbb2222", superseded="older code")
    ctx = bench.context([("old", old), ("two", paired), ("newer", newer)], tmp_path)
    text = next(s["text"] for g in ctx["groups"] for s in g["sections"] if s["file"] == "two")
    assert "(`old.json`, 2026-01-01, código `bbb2222`): 400 s" in text
    ctx = bench.context([("old", dict(old, code="ddd4444")), ("two", paired), ("newer", newer)],
                        tmp_path)
    text = next(s["text"] for g in ctx["groups"] for s in g["sections"] if s["file"] == "two")
    assert "(`newer.json`, 2026-01-04, código `ccc3333`): 500 s" in text
    # A record of claimed groups counts every process's groups, and says how many were process 0's.
    claimed = bench.whole_sweep(dict(two, groups=15, groups_trained_by_process_0=6))
    assert "15 grupos compilados entre todos los procesos (6 en el proceso 0)" in claimed
    assert "grupos enteros que tomó al quedar libre" in claimed
    assert "(por turnos)" in text and "tomó al quedar libre" not in text
    # Claimed with one core each: the next group compiles when its process is free.
    assert "cuando queda libre, no al lado de su entrenamiento" in claimed
    assert "sumaron 40 s en el proceso 0, y el hilo principal esperó 0 s" in claimed
    assert "aunque no cuente como espera" not in claimed


# --- a reader's review: Spanish numbers, distinct headings, records in force ----------------

def test_one_number_format_for_every_page_thousands_with_a_narrow_space():
    from jaxmlp.report import bench

    assert compare.num(54000) == "54\u202f000" and compare.num(1318) == "1\u202f318"
    assert compare.num(3466.57, ".1f") == "3\u202f466.6" and compare.num(0.25, ".3f") == "0.250"
    assert compare.num(None) == "—"
    assert compare.pm({"mean": 0.567, "std": 0.001}) == "56.7\u00a0±\u00a00.1"
    assert compare.span({"min": 0.304, "max": 0.407}) == "30.4–\u206040.7"
    text = bench.whole_sweep(_sweep("ta8", "cpu", "cold", 2200.0, "2026-01-01T00:00:00Z",
                                    epochs=2507, time_split_s={"train": 2125.04}))
    assert "2\u202f507 épocas en total" in text and "**2\u202f199 s** de reloj" in text
    assert "| entrenamiento (dispositivo) | 2\u202f125.0 |" in text
    assert not re.search(r"\d,\d{3}", text)  # «1,318» would read as a decimal in Spanish


def test_shared_times_of_a_vectorized_group_show_no_spread():
    from jaxmlp.report import context

    run = fake_run("a", [0.5, 0.6, 0.7])
    for s in run["seeds"]:
        s.update(wall_time_s=300.0, group_size=3)  # one group's time, shared by its 3 seeds
    t = context.time_stats(run)
    assert t["shared"] and compare.pm(t, 1.0, ".0f") == "100"
    run["seeds"][0]["wall_time_s"] = 330.0  # a seed that stopped apart: a real spread
    assert "±" in compare.pm(context.time_stats(run), 1.0, ".0f")


def test_headings_of_records_of_one_kind_name_their_machine_in_spanish(tmp_path):
    from jaxmlp.report import bench

    def profile(device, created):
        return {"benchmark": "epoch_profile", "created": created, "code": "abc1234",
                "environment": _env("cpu", device), "rows": []}

    benches = [("prof_a", profile("Toy EPYC (2 cores; family 26 model 2, AVX-512)",
                                  "2026-01-02T00:00:00Z")),
               ("prof_b", profile("Toy EPYC (2 cores)", "2026-01-01T00:00:00Z")),
               ("prof_c", profile("Toy EPYC (2 cores)", "2026-01-03T00:00:00Z"))]
    titles = [s["title"] for g in bench.context(benches, tmp_path)["groups"]
              for s in g["sections"]]
    assert len(set(titles)) == 3
    assert titles[0] == ("Dónde va el tiempo de una época — Toy EPYC (2 núcleos; familia 26, "
                         "modelo 2, AVX-512)")
    # one machine, two records: the date tells them apart
    assert titles[1:] == ["Dónde va el tiempo de una época — Toy EPYC (2 núcleos), 2026-01-01",
                          "Dónde va el tiempo de una época — Toy EPYC (2 núcleos), 2026-01-03"]
    assert compare.machine("X (1 core)") == "X (1 núcleo)"
    assert "2 núcleos" in bench.device(benches[0][1]) and "cores" not in bench.device(
        benches[0][1])


def test_the_roofline_shows_the_sweep_in_force_and_the_replaced_one_keeps_its_row(tmp_path):
    from jaxmlp.report import bench

    roof = {"benchmark": "roofline", "created": "2026-01-02T00:00:00Z", "n_train": 1000,
            "batch": 100, "environment": _env("gpu", "Toy GPU"), "matmul_size": 64,
            "training_matmul_precision": "default",
            "peak_tflops": {"float32_training_precision": 9.0, "float32_highest": 9.0,
                            "bfloat16": 9.0},
            "sweeps": [{"experiment": "ta8", "results": "old_warm.json", "wall_time_s": 89.4,
                        "pflop": 0.393, "tflops": 4.39, "percent_of_peak": 1.22}]}
    old = _sweep("ta8", "gpu", "warm", 93.0, "2026-01-01T00:00:00Z", epochs=2507,
                 superseded="código anterior; el registro en vigor es `new_warm.json`.")
    new = _sweep("ta8", "gpu", "warm", 85.0, "2026-01-02T00:00:00Z", epochs=2496,
                 since_start_s=81.5)
    ctx = bench.context([("old_warm", old), ("new_warm", new), ("roof", roof)], tmp_path)
    text = next(s["text"] for s in ctx["groups"][0]["sections"] if s["file"] == "roof")
    assert "| TA8 (`new_warm`) | 82 | — | — | — |" in text and "0.393" not in text
    assert "que `new_warm` reemplaza (2\u202f507 épocas entrenadas; `new_warm`, 2\u202f496)" \
        in text
    earlier = next(s for s in ctx["earlier"] if s["file"] == "old_warm")
    assert "Situado en el techo de la GPU por `roof` (en vigor): 89 s" in earlier["text"]
    assert "0.393 PFLOP, 4.39 TFLOP/s, 1.22 % del pico" in earlier["text"]
    # without a replacement in force, the row stays as the roofline recorded it
    alone = bench.context([("roof", dict(roof, sweeps=[dict(roof["sweeps"][0],
                                                             results="gone.json")]))], tmp_path)
    assert "| TA8 (`gone`) | 89 | 0.393 | 4.39 | 1.22 |" in alone["groups"][0]["sections"][0][
        "text"]


def test_a_replaced_record_says_when_the_record_it_names_is_no_longer_in_force(tmp_path):
    from jaxmlp.report import bench

    benches = [
        ("a", _sweep("p8d", "cpu", "cold", 9.0, "2026-01-01T00:00:00Z",
                     superseded="otra máquina; el registro en vigor es `b.json` "
                                "(código aaa1111).")),
        ("b", _sweep("p8d", "cpu", "cold", 8.0, "2026-01-02T00:00:00Z", code="bbb2222",
                     superseded="código anterior; el registro en vigor es `c.json`.")),
        ("c", _sweep("p8d", "cpu", "cold", 7.0, "2026-01-03T00:00:00Z", code="ccc3333")),
        ("d", _sweep("p8d", "cpu", "cold", 9.0, "2026-01-01T00:00:00Z",
                     superseded="el registro en vigor es `c.json` (código ccc0000).")),
        ("e", _sweep("p8d", "cpu", "cold", 9.0, "2026-01-01T00:00:00Z",
                     superseded="el registro en vigor es `c.json` (código ccc3333).")),
    ]
    now = {s["file"]: s["now"] for s in bench.context(benches, tmp_path)["earlier"]}
    assert now["a"] == ("`b.json` se reemplazó a su vez: hoy está en vigor `c.json` "
                        "(2026-01-03, código `ccc3333`).")
    assert now["b"] == "" and now["e"] == ""
    assert now["d"] == ("`c.json` se ha vuelto a medir desde entonces: hoy es del 2026-01-03, "
                        "código `ccc3333`.")


def test_a_total_row_says_when_its_rounded_rows_do_not_add_up():
    from jaxmlp.report import bench

    cpu = {"xla_compute": 556.38, "io": 2.467, "main": 1.39, "compile": 1.33, "other": 8.11,
           "tensorstore": 20.89, "ended": 9.983, "process": 600.55}  # rows shown add to 600.6
    record = _sweep("p8d", "cpu", "cold", 200.0, "2026-01-01T00:00:00Z", cpu_s=cpu)
    text = bench.whole_sweep(record)
    assert "| **total del proceso** | **600.5** |" in text
    assert "las filas suman 600.6, y los valores sin redondear suman exactamente el total" in text
    cpu.update(xla_compute=556.4, ended=10.0, process=600.6)  # rows add up when rounded
    assert "redondeada" not in bench.whole_sweep(record)


def test_figures_tick_whole_epochs_and_write_learning_rates_plainly(tmp_path):
    doc = json.loads((FIXTURE / "p8d" / "results.json").read_text())
    doc["_dir"] = FIXTURE / "p8d"
    from jaxmlp.report import context

    runs = [r for r in doc["runs"] if context.lr_varies(doc, r)]
    assert runs
    svg = figures.learning_rate(doc, runs, figures.colors(runs))["light"].decode()
    ticks = re.findall(r"<text[^>]*>([^<]*)</text>", svg)
    numbers = [t for t in ticks if re.fullmatch(r"[\d.]+", t)]
    assert numbers and not any(re.search(r"\de|×10|1e", t) for t in ticks)  # no «1e−3»
    # epochs whole (no 2.5 or 7.5); learning rates written out (0.001, not 1 under ×1e−3)
    assert all(float(t).is_integer() or float(t) < 0.1 for t in numbers)
    assert any(t.startswith("0.0") for t in numbers)
    assert figures.plain(0.0004000000001) == "0.0004" and figures.plain(0.0) == "0"


def test_the_landing_card_says_what_is_faster_and_names_each_machine(tmp_path):
    from jaxmlp.report import bench
    from jaxmlp.report.render import environment

    def on(device, code, record):
        return {**record, "code": code, "environment": _env("cpu", device)}

    benches = [("a", on("Toy EPYC (2 cores; family 26 model 2)", "aaa1111",
                        _floor("2026-01-02T00:00:00Z", 1.0, 1.8, 1.0, 1.7, 0.8))),
               ("b", on("Toy EPYC (2 cores)", "bbb2222",
                        _floor("2026-01-01T00:00:00Z", 1.0, 1.6, 1.0, 1.4, 0.8)))]
    ctx = bench.context(benches, tmp_path)
    page = environment().get_template("index.md.j2").render(pages={}, bench=ctx)
    assert "**Épocas de 1.40 a 1.80 veces más rápidas que con Keras 3 `fit`**" in page
    assert "Tiempo de una época del mismo MLP en la CPU" in page
    assert "En **Toy EPYC (2 núcleos; familia 26, modelo 2)** (2026-01-02, código `aaa1111`)" \
        in page
    assert "En **Toy EPYC (2 núcleos)** (2026-01-01, código `bbb2222`)" in page
