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


ZEN = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 26
model\t\t: 2
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw

processor\t: 1
model name\t: something else
"""


def test_a_cpu_is_named_with_its_family_model_and_widest_vector_extension(tmp_path):
    (tmp_path / "cpuinfo").write_text(ZEN)
    info = records.cpu_info(str(tmp_path / "cpuinfo"))
    assert info["model name"] == "AMD EPYC" and info["cpu family"] == "26"  # first block only
    cores = records.os.cpu_count()
    assert records.cpu_name(info) == f"AMD EPYC ({cores} cores; family 26 model 2, AVX-512)"
    xeon = {"model name": "Intel(R) Xeon(R) Processor", "cpu family": "6", "model": "85",
            "flags": "sse2 avx avx2 fma"}
    assert records.cpu_name(xeon).endswith("cores; family 6 model 85, AVX2)")
    arm = {"Features": "fp asimd evtstrm sve"}  # Arm's field, no family or model
    assert records.cpu_name(arm).endswith(f"({cores} cores; SVE)")
    assert records.cpu_info(str(tmp_path / "absent")) == {}
    assert records.cpu_name({}).endswith(f"({cores} cores)")
    assert records.vector_extension("sse sse2") is None
