"""Numbers in words: seed statistics, Spanish number formats and the «mejor»/«empate» verdict.

A run is «mejor» than another only when their seed ranges (min–max) do not overlap, i.e. the
gap of the means is larger than the seed-to-seed variation; otherwise the two «empatan».
"""

from __future__ import annotations

import re
from dataclasses import dataclass


def seed_values(run: dict, *path) -> list[float]:
    """One value per seed record, following `path` (e.g. "test", "accuracy")."""
    out = []
    for s in run.get("seeds", []):
        v = s
        for k in path:
            v = v.get(k) if isinstance(v, dict) else None
        if v is not None:
            out.append(float(v))
    return out


def pct(x: float | None) -> str:
    """A fraction as a percentage with one decimal: 0.5234 -> '52.3'."""
    return "—" if x is None else f"{100 * x:.1f}"


PM = "\u00a0±\u00a0"  # no line break on either side of ±: «56.7 ± 0.1» stays on one line
DASH = "–\u2060"  # a range's en dash with a word joiner: «30.4–40.7» does not break after it


def pm(s: dict | None, scale: float = 100.0, fmt: str = ".1f") -> str:
    """'mean ± std' of a stats dict (in % by default); the mean alone for a value every seed
    shares (`shared`: the time of a vectorized group, split among its members), whose spread
    of 0 measures nothing."""
    if not s:
        return "—"
    if s.get("shared"):
        return num(s["mean"] * scale, fmt)
    return num(s["mean"] * scale, fmt) + PM + num(s["std"] * scale, fmt)


def span(s: dict | None, scale: float = 100.0, fmt: str = ".1f") -> str:
    """'min–max' of a stats dict (in % by default)."""
    if not s:
        return "—"
    return num(s["min"] * scale, fmt) + DASH + num(s["max"] * scale, fmt)


def machine(device: str | None) -> str:
    """A record's `environment.device` as a Spanish page shows it: «AMD EPYC (2 cores; family
    26 model 2, AVX-512)» reads «AMD EPYC (2 núcleos; familia 26, modelo 2, AVX-512)». The
    record keeps its own words (the report compares machines by them)."""
    if not device:
        return "—"
    out = re.sub(r"\b1 cores?\b", "1 núcleo", device)
    out = re.sub(r"\b(\d+) cores?\b", r"\1 núcleos", out)
    out = re.sub(r"\bfamily (\w+) model (\w+)", r"familia \1, modelo \2", out)
    return re.sub(r"\bfamily\b", "familia", out)


def short_machine(device: str | None) -> str:
    """The machine's name without its details in parentheses: «AMD EPYC», «NVIDIA H200»."""
    return re.sub(r"\s*\(.*\)\s*$", "", (device or "—").replace("(R)", "")) or "—"


def pp(d: float) -> str:
    """A difference in percentage points, with a second decimal when it is tiny."""
    return f"{d:.2f}" if abs(d) < 0.1 else f"{d:.1f}"


THOUSANDS = "\u202f"  # narrow no-break space: 54 000, as Spanish writes thousands


def num(x: float | None, fmt: str = ",.0f") -> str:
    """A number as every page of the report writes it: a narrow no-break space between
    thousands (54 000, 1 318, also 2 125.0: a comma or a point would read as a decimal mark in
    Spanish) and a decimal point. `fmt` is a format spec (".1f", ".3f", "d"...); the grouping
    is added when it has none."""
    if x is None:
        return "—"
    if "," not in fmt:
        fmt = re.sub(r"(\.\d+)?[a-zA-Z%]?$", lambda m: "," + m.group(0), fmt, count=1)
    return format(x, fmt).replace(",", THOUSANDS)


@dataclass(frozen=True)
class Verdict:
    """Two runs compared on one metric (higher is better)."""

    high: dict   # the run with the higher mean
    low: dict
    gap_pp: float        # difference of the means, in percentage points
    better: bool         # True: the ranges do not overlap, «high» is «mejor»
    single_seed: bool    # one seed only: no estimate of the noise, never «mejor»
    metric: str = "test_accuracy"

    @property
    def word(self) -> str:
        return "mejor" if self.better else "empate"


def verdict(a: dict, b: dict, metric: str = "test_accuracy") -> Verdict | None:
    """Compare runs `a` and `b` on `metric` from their results.json summaries."""
    sa, sb = a.get("summary", {}).get(metric), b.get("summary", {}).get(metric)
    if not sa or not sb:
        return None
    (hi, shi), (lo, slo) = sorted(((a, sa), (b, sb)), key=lambda t: -t[1]["mean"])
    single = min(shi["n"], slo["n"]) < 2
    better = not single and shi["min"] > slo["max"]
    return Verdict(hi, lo, 100 * (shi["mean"] - slo["mean"]), better, single, metric)


def sentence(v: Verdict | None) -> str:
    """The verdict in one short Spanish sentence, with the ranges it rests on."""
    if v is None:
        return "sin resultados para comparar."
    hl, ll = label(v.high), label(v.low)
    sh, sl = v.high["summary"][v.metric], v.low["summary"][v.metric]
    if v.single_seed:
        return f"«{hl}» y «{ll}»: empate (una sola semilla, {pp(v.gap_pp)} pp)."
    if v.better:
        return (f"«{hl}» es mejor que «{ll}»: +{pp(v.gap_pp)} pp (rangos {span(sh)} % y "
                f"{span(sl)} %).")
    return (f"«{hl}» y «{ll}»: empate ({pp(v.gap_pp)} pp; rangos {span(sh)} % y {span(sl)} % "
            "solapados).")


def versus(run: dict, ref: dict, metric: str = "test_accuracy") -> str:
    """A table cell: `run` against `ref` («mejor, +x pp», «peor, −x pp» or «empate»)."""
    if run is ref or run["name"] == ref["name"]:
        return "—"
    v = verdict(run, ref, metric)
    if v is None:
        return "—"
    if not v.better:
        return "empate"
    # one line in a narrow column: its header (the compared run's name) wraps less
    return (f"mejor,\u00a0+{pp(v.gap_pp)}\u00a0pp" if v.high is run
            else f"peor,\u00a0−{pp(v.gap_pp)}\u00a0pp")


def label(run: dict) -> str:
    return run.get("label") or run["name"]
