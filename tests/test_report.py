"""jaxmlp.report: figures and fragments from the committed fixture (invented numbers, real run
names and configs), the wording of the generated comparisons, and the site built from them."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jaxmlp import report

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "experiments"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def build_site(experiments: Path, tmp: Path) -> Path:
    """Copy docs/ and mkdocs.yml to `tmp`, regenerate from `experiments`, `mkdocs build
    --strict`; return the built site folder. The working tree is never written."""
    shutil.copytree(ROOT / "docs", tmp / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp / "mkdocs.yml")  # docs_dir: docs -> tmp/docs
    report.generate(experiments, tmp / "docs")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-f",
         str(tmp / "mkdocs.yml"), "-d", str(tmp / "site")],
        cwd=tmp, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return tmp / "site"


def page_text(site: Path, page: str) -> str:
    return (site / "portfolio" / page / "index.html").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    docs = tmp_path_factory.mktemp("docs")
    return docs, report.generate(FIXTURE, docs)


def fixture_run(exp: str, name: str) -> dict:
    doc = json.loads((FIXTURE / exp / "results.json").read_text())
    return next(r for r in doc["runs"] if r["name"] == name)


def fragment(docs: Path, exp: str, name: str) -> str:
    return (docs / "generated" / exp / f"{name}.md").read_text(encoding="utf-8")


def test_every_declared_fragment_and_each_figure_is_written(generated):
    docs, files = generated
    for exp, names in (("p8d", report.P8D_FRAGMENTS), ("ta8", report.TA8_FRAGMENTS)):
        assert {p.stem for p in (docs / "generated" / exp).glob("*.md")} == set(names)
    pngs = sorted((docs / "assets" / "generated").rglob("*.png"))
    assert {p.parent.name for p in pngs} == {"p8d", "ta8"}
    assert len(pngs) == 12
    for png in pngs:
        data = png.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000, png
        assert png in files
        assert b"Software" not in data  # no matplotlib version stamp to churn the bytes


def test_figure_links_resolve_from_the_including_page(generated):
    docs, _ = generated
    page_dir = docs / "portfolio"
    for md in (docs / "generated").rglob("fig_*.md"):
        link = md.read_text().split("](", 1)[1].split(")", 1)[0]
        assert (page_dir / link).resolve().is_file(), (md, link)


def test_fragments_carry_the_fixture_numbers(generated):
    docs, _ = generated
    best = fixture_run("ta8", "cb_reduce_lr")["summary"]["test_accuracy"]
    expected = f"{100 * best['mean']:.1f} ± {100 * best['std']:.1f}"
    assert expected in fragment(docs, "ta8", "callbacks")
    assert expected in fragment(docs, "ta8", "winner")
    assert f"{fixture_run('ta8', 'combined')['params']['total']:,}" in fragment(
        docs, "ta8", "combined_model")
    full = fixture_run("p8d", "con_callbacks")["summary"]
    assert f"{100 * full['test_accuracy']['mean']:.1f}" in fragment(docs, "p8d", "evaluation")
    assert f"{full['epochs_run']['mean']:.1f}" in fragment(docs, "p8d", "evaluation")
    technical = fragment(docs, "ta8", "technical")
    assert "`efefefefefef`" in technical and "FIXTURE (no device)" in technical
    assert "JPEG" in fragment(docs, "ta8", "dataset")


def test_pages_built_from_a_fixture_say_the_numbers_are_not_results(generated):
    docs, _ = generated
    for exp in ("p8d", "ta8"):
        assert "Datos sintéticos" in fragment(docs, exp, "status")


def test_identical_configurations_are_named_not_hidden(generated):
    docs, _ = generated
    text = fragment(docs, "ta8", "identical")
    for label in ("«Adam LR 0.001»", "«Adam»", "«Batch 64»"):
        assert label in text
    assert "misma configuración" in text and "exactamente las mismas cifras" in text
    top5 = fragment(docs, "ta8", "top5")
    assert top5.count("Batch 64") <= 1  # one configuration, one place in the ranking


def test_seed_parameter_counts_that_do_not_match_are_reported(generated):
    docs, _ = generated
    text = fragment(docs, "ta8", "params_check")
    deep = fixture_run("ta8", "deep")["params"]["total"]
    assert f"{deep:,}" in text and "«Deep 4×64» (222,986 en el seed" in text
    assert "«Pyramid 256→128→64» (362,378 en el seed" in text
    assert "«Baseline 2×32» (" not in text


def stat(mean, lo, hi, n=3, std=0.004):
    return {"mean": mean, "std": std, "min": lo, "max": hi, "n": n}


def test_overlapping_seed_ranges_are_called_noise():
    s = report.compare_sentence("A", stat(0.552, 0.548, 0.556), "B", stat(0.549, 0.545, 0.553))
    assert "la diferencia (0.3 pp) está dentro del ruido entre semillas" in s
    assert "supera" not in s


def test_separate_seed_ranges_name_the_winner():
    s = report.compare_sentence("A", stat(0.50, 0.49, 0.51), "B", stat(0.56, 0.55, 0.57))
    assert s.startswith("«B» supera a «A» por 6.0 pp (fuera del rango de variación entre "
                        "semillas")


def test_one_seed_gives_no_noise_estimate_and_ties_are_ties():
    s = report.compare_sentence("A", stat(0.6, 0.6, 0.6, n=1, std=0), "B",
                                stat(0.5, 0.5, 0.5, n=1, std=0))
    assert "una sola semilla" in s
    tie = report.compare_sentence("A", stat(0.5, 0.49, 0.51), "B", stat(0.5, 0.48, 0.52))
    assert "empatan" in tie


def test_the_adam_update_used_is_read_from_the_configs():
    def doc(*runs):
        return {"runs": [{"name": n, "config": {"optim": {"name": o, "keras_epsilon": k}}}
                         for n, o, k in runs]}

    keras = report.adam_epsilon_fragment(doc(("a", "adam", True), ("w", "adamw", True),
                                             ("s", "sgd", False)))
    assert "usan la actualización de Keras 3 tal cual" in keras and "optax" not in keras
    optax = report.adam_epsilon_fragment(doc(("a", "adam", False), ("s", "sgd", False)))
    assert "colocación del épsilon de `optax`" in optax and "no es el usado aquí" in optax
    mixed = report.adam_epsilon_fragment(doc(("a", "adam", True), ("b", "adam", False)))
    assert "`a`" in mixed and "`b`" not in mixed and "los demás" in mixed
    # Results written before the option existed have no keras_epsilon key: optax's update.
    legacy = {"runs": [{"name": "a", "config": {"optim": {"name": "adam"}}}]}
    assert "no es el usado aquí" in report.adam_epsilon_fragment(legacy)
    assert "Ningún run" in report.adam_epsilon_fragment(doc(("s", "sgd", False)))


def test_ta8_parity_fragment_quotes_keras_and_the_seed_only_at_equal_epochs(tmp_path):
    def curves(*last):
        return [{"val_accuracy": [0.1, v], "accuracy": [0.1, v]} for v in last]

    parity = {"benchmark": "keras_parity", "epochs": 20, "models": {
        "combined": {"keras": curves(0.413, 0.417), "jaxmlp": curves(0.401, 0.405)},
        "baseline": {"keras": curves(0.3, 0.3)}}}
    (tmp_path / "keras_parity_x.json").write_text(json.dumps(parity))
    ta8 = {"runs": [{"name": "combined", "config": {"train": {"epochs": 20}}},
                    {"name": "baseline", "config": {"train": {"epochs": 30}}}]}
    text = report.ta8_parity_fragment(tmp_path, ta8)
    combined = next(line for line in text.splitlines() if line.startswith("- `combined`"))
    assert "Keras 3 `fit` 41.5 % (41.3–41.7)" in combined
    assert "`jaxmlp` (épsilon de optax) 40.3 % (40.1–40.5)" in combined
    seed = report.SEED_TA8["test_accuracy"]["combined"]
    assert f"El seed publicó {100 * seed:.1f} % de test" in combined
    baseline = next(line for line in text.splitlines() if line.startswith("- `baseline`"))
    assert "El seed publicó" not in baseline and "entrena 30 épocas" in baseline
    assert "Todavía no hay" in report.ta8_parity_fragment(tmp_path / "none", ta8)


def test_generation_is_deterministic(tmp_path):
    a = report.generate(FIXTURE, tmp_path / "a")
    b = report.generate(FIXTURE, tmp_path / "b")
    assert [p.relative_to(tmp_path / "a") for p in a] == [p.relative_to(tmp_path / "b") for p in b]
    for pa, pb in zip(a, b):
        assert pa.read_bytes() == pb.read_bytes(), pa


def test_stale_generated_files_are_removed(tmp_path):
    report.generate(FIXTURE, tmp_path)
    stale = tmp_path / "assets" / "generated" / "ta8" / "old_figure.png"
    stale.write_bytes(PNG_MAGIC)
    report.generate(tmp_path / "no-experiments", tmp_path)
    assert not stale.exists()
    assert not list((tmp_path / "assets" / "generated").rglob("*.png"))
    assert report.PLACEHOLDER in fragment(tmp_path, "ta8", "top5")


def test_history_na_cells_become_nan(tmp_path):
    (tmp_path / "h.csv").write_text("epoch,val_loss\n0,1.5\n1,NA\n")
    h = report.read_history(tmp_path, "h.csv")
    assert h["val_loss"][0] == 1.5 and h["val_loss"][1] != h["val_loss"][1]


def test_bench_fragment_with_and_without_results(tmp_path):
    assert "No benchmark results committed yet" in report.bench_fragment(tmp_path / "none")
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "sweep.json").write_text(json.dumps({
        "benchmark": "sweep", "n_train": 1000, "environment": {"device": "cpu"},
        "scaling": [{"members": 4, "epoch_s": 0.5, "per_member_s": 0.125}],
        "group_vs_solo": {"members": 4, "group_epoch_s": 0.5, "solo_epochs_s": 1.5,
                          "speedup": 3.0}}))
    text = report.bench_fragment(tmp_path / "bench")
    assert "0.125" in text and "3.00× speed-up" in text


def test_bench_fragment_renders_whole_sweeps_and_keras_parity(tmp_path):
    # Invented numbers, only to check that each is carried onto the page.
    env = {"device": "Test CPU (2 cores)", "platform": "cpu", "device_count": 1, "jax": "0.0"}
    (tmp_path / "sweep_x.json").write_text(json.dumps({
        "benchmark": "whole_sweep", "experiment": "ta8", "command": "python -m x", "runs": 26,
        "members": 78, "epochs": 1234, "groups": 14, "wall_time_s": 4321.5, "n_train": 45000,
        "dataset": "cifar10", "created": "2026-01-01T00:00:00Z", "environment": env,
        "note": "machine shared with the test suite"}))
    curves = lambda a, v: {"accuracy": [0.1, a], "val_accuracy": [0.2, v]}  # noqa: E731
    (tmp_path / "parity.json").write_text(json.dumps({
        "benchmark": "keras_parity", "epochs": 2, "batch": 64, "n_train": 45000,
        "keras": "3.99", "environment": env,
        "dataset": {"name": "cifar10", "source": "local", "note": "JPEG-decoded copy"},
        "models": {"baseline": {"keras": [curves(0.31, 0.30), curves(0.35, 0.34)],
                                "jaxmlp": [curves(0.33, 0.36), curves(0.37, 0.38)]}}}))
    text = report.bench_fragment(tmp_path)
    assert "**4321.5 s**" in text and "1,234 epochs" in text and "78 trainings" in text
    assert "machine shared with the test suite" in text
    assert "| baseline | keras | 2 | 33.0 | 32.0 (30.0–34.0) | 20.0 32.0 |" in text
    assert "| baseline | jaxmlp | 2 | 35.0 | 37.0 (36.0–38.0) |" in text
    assert "Keras `3.99`" in text and "JPEG-decoded copy" in text
    # Ranges 30-34 (Keras) and 36-38 (jaxmlp) do not overlap; means 32 vs 37: +5.0 pp.
    assert "jaxmlp is +5.0 pp from Keras, beyond seed noise" in text


def test_report_never_imports_jax():
    code = "import sys, jaxmlp.report; sys.exit('jax' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_site_builds_with_no_results_at_all(tmp_path):
    site = build_site(tmp_path / "empty", tmp_path)
    for page in ("08d-Callbacks-MLP", "TA8-Backpropagation-Optimizadores"):
        html = page_text(site, page)
        assert report.PLACEHOLDER in html and "--8&lt;--" not in html and "<img" not in html


def test_a_changed_result_reaches_the_built_page(tmp_path):
    experiments = tmp_path / "experiments"
    shutil.copytree(FIXTURE, experiments)
    path = experiments / "ta8" / "results.json"
    doc = json.loads(path.read_text())
    run = next(r for r in doc["runs"] if r["name"] == "cb_combined")
    run["summary"]["test_accuracy"].update(mean=0.6789, min=0.6701, max=0.6877)
    path.write_text(json.dumps(doc))
    html = page_text(build_site(experiments, tmp_path), "TA8-Backpropagation-Optimizadores")
    assert "67.9 ± " in html  # the tables
    assert "«Combined callbacks» supera a" in html  # and the sentences follow the new number
