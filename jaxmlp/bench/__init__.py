"""Benchmarks and Keras parity, built on the experiment definitions (jaxmlp/experiments/).

    python -m jaxmlp.bench.epoch_floor    epoch time against this machine's matmul floor (--keras)
    python -m jaxmlp.bench.epoch_profile  where an epoch's time goes, XLA op by op, by category
    python -m jaxmlp.bench.sweep          vmapped groups vs one by one vs Keras 3 fit; sweep times
    python -m jaxmlp.bench.keras_parity   every P8D/TA8 run by Keras 3 fit, one record a seed
    python -m jaxmlp.bench.parity_table   ours vs Keras per run, from committed records (no JAX)
"""

from __future__ import annotations

import subprocess
from pathlib import Path


def code_version() -> str | None:
    """The commit this package's checkout is at (`git describe --always --dirty`), recorded with
    a benchmark so a reader knows which code it timed; None outside a git checkout."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=7"],
                             cwd=Path(__file__).resolve().parent, capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None
