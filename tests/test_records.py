"""jaxmlp.records: the JAX-free results format (stats, history CSVs, paths)."""

import math
import subprocess
import sys

import numpy as np
import pytest

from jaxmlp import records


def test_stats_are_mean_sample_std_min_max_n_and_skip_missing_values():
    # [1, 2, 4]: mean 7/3; deviations -4/3, -1/3, 5/3 -> squares 16/9 + 1/9 + 25/9 = 42/9;
    # sample variance (ddof=1) 42/9 / 2 = 7/3; std sqrt(7/3).
    s = records.stats([1.0, None, 2.0, 4.0])
    assert s["mean"] == pytest.approx(7 / 3) and s["std"] == pytest.approx(math.sqrt(7 / 3))
    assert (s["min"], s["max"], s["n"]) == (1.0, 4.0, 3)
    assert records.stats([0.5])["std"] == 0.0  # one seed: no spread, not NaN
    assert records.stats([None]) is None


def test_a_history_csv_is_keras_csvlogger_layout_and_reads_back(tmp_path):
    rows = [{"epoch": 0, "val_loss": 0.5, "loss": 0.75}, {"epoch": 1, "loss": 0.25}]
    text = records.history_csv(rows)
    # epoch first, then the metric names sorted; a missing value is NA; lines end in \n.
    assert text == "epoch,loss,val_loss\n0,0.75,0.5\n1,0.25,NA\n"
    (tmp_path / "h.csv").write_text(text)
    back = records.read_history(tmp_path / "h.csv")
    assert back["epoch"] == [0, 1] and back["loss"] == [0.75, 0.25]
    assert back["val_loss"][0] == 0.5 and np.isnan(back["val_loss"][1])


def test_member_and_history_paths(tmp_path):
    assert records.member_file(tmp_path, "solo_cosine", 3) == \
        tmp_path / "members" / "solo_cosine__seed3.json"
    assert records.history_file("solo_cosine", 3) == "histories/solo_cosine/seed3.csv"


def test_records_imports_no_jax():
    code = "import sys, jaxmlp.records; print('jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"
