"""Ours vs Keras 3 per run, from committed records only (no JAX, no Keras): the parity table.

    python -m jaxmlp.bench.parity_table [--experiments-dir experiments] [--json]

Joins experiments/<exp>/results.json (and its history CSVs) with the Keras records of
`python -m jaxmlp.bench.keras_parity` (experiments/bench/parity/<exp>/<run>__seed<k>.json) and
gives per run: final test accuracy mean ± sample std (n) on each side, the difference, the
tolerance max(1 pp, 2 x pooled std) and whether the difference is within it; the epochs each
seed ran (where EarlyStopping fired, the stop epoch as Keras prints it, 1-based) and the epochs
at whose end ReduceLROnPlateau cut the LR (1-based; ours read from the LR column of the history,
invisible where a scheduler overwrites the LR each epoch, so only counted there). Stop epochs
swing with tiny val_loss differences, so where EarlyStopping is on their means are compared the
same way: within max(1 epoch, 2 x pooled std) or not.
`rows()` returns plain dicts, `markdown(rows)` the table for the bench page and
`coverage_text(rows)` what it covers.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

from jaxmlp import records
from jaxmlp.config import without_later_defaults

PARITY = Path("bench") / "parity"  # under the experiments folder
MIN_TOLERANCE = 0.01  # 1 pp


def _stats(values) -> dict | None:
    """records.stats (mean, sample std, min, max, n) and the values themselves."""
    s = records.stats(values)
    return None if s is None else {**s, "values": list(values)}


def pooled_std(a: dict, b: dict) -> float | None:
    """sqrt(((n1-1) s1^2 + (n2-1) s2^2) / (n1 + n2 - 2)); None with fewer than 3 values."""
    dof = a["n"] + b["n"] - 2
    if dof <= 0:
        return None
    return math.sqrt(((a["n"] - 1) * a["std"] ** 2 + (b["n"] - 1) * b["std"] ** 2) / dof)


def seeds_needed(hooks: dict, ours: int = 0) -> int:
    """Keras seeds a comparison needs: 5 where the stop epoch or the plateau's cuts are
    compared (noisy), else 3 (`hooks`: a RunConfig dict's hooks); never fewer than `ours`, the
    seeds our definition trains for the run, so both sides compare equal counts."""
    noisy = hooks.get("early_stopping") is not None or hooks.get("reduce_lr") is not None
    return max(5 if noisy else 3, ours)


def keras_equivalent(config: dict) -> bool:
    """False for our own LR composition (a schedule scaled by the plateau): Keras has none."""
    h = config["hooks"]
    both = h.get("schedule") is not None and h.get("reduce_lr") is not None
    return not (both and h.get("lr_composition", "scale") != "keras")


def _comparable(config: dict) -> dict:
    """The config without the seed (each record has its own) and without fields added later
    that hold their default (config.LATER_FIELDS)."""
    config = without_later_defaults(config)
    return {**config, "train": {k: v for k, v in config["train"].items() if k != "seed"}}


def keras_records(folder: Path) -> dict[str, list[dict]]:
    """{run: [records sorted by seed]} from one experiment's parity folder."""
    out: dict[str, list[dict]] = {}
    for path in sorted(folder.glob("*__seed*.json")) if folder.is_dir() else []:
        rec = json.loads(path.read_text())
        out.setdefault(rec["run"], []).append(rec)
    return {k: sorted(v, key=lambda r: r["seed"]) for k, v in out.items()}


def our_cuts(exp_dir: Path, seed: dict) -> list[int] | None:
    """0-based epochs at whose end our LR went down, from the history's learning_rate column
    (the LR each epoch trained with) and the final LR; None without a history."""
    path = exp_dir / seed.get("history_csv", "")
    if not seed.get("history_csv") or not path.is_file():
        return None
    lrs = [*records.read_history(path)["learning_rate"], float(seed["final_lr"])]
    return [e for e in range(len(lrs) - 1) if lrs[e + 1] < lrs[e] * (1 - 1e-6)]


def _side(seeds: list[dict]) -> dict:
    return {"test_accuracy": _stats([s["test"]["accuracy"] for s in seeds]),
            "epochs": [s["epochs_run"] for s in seeds],
            "stopped": [bool(s.get("stopped_early")) for s in seeds],
            "reductions": [int(s.get("lr_reductions", 0)) for s in seeds]}


def compare(exp: str, run: dict, keras: list[dict], exp_dir: Path) -> dict:
    """One row: run's entry in results.json against its Keras records."""
    cfg = run["config"]
    row = {"experiment": exp, "run": run["name"], "label": run.get("label", run["name"]),
           "ours": _side(run["seeds"]), "keras": None, "status": "compared"}
    hooks = cfg["hooks"]
    plateau_visible = hooks.get("reduce_lr") is not None and hooks.get("schedule") is None
    if hooks.get("reduce_lr") is not None:
        row["ours"]["cuts"] = ([our_cuts(exp_dir, s) for s in run["seeds"]]
                               if plateau_visible else None)
    if not keras_equivalent(cfg):
        row["status"] = "ours, no Keras equivalent"
        return row
    if not keras:
        row["status"] = "no Keras records yet"
        return row
    row["keras"] = _side(keras)
    row["keras_needed"] = seeds_needed(hooks, len(run["seeds"]))
    if len(keras) < row["keras_needed"]:
        row["status"] = f"incomplete: {len(keras)} of {row['keras_needed']} Keras seeds"
    if hooks.get("reduce_lr") is not None:
        row["keras"]["cuts"] = [r["plateau_cuts"] for r in keras]
    row["same_config_as"] = keras[0].get("same_config_as")
    if any(_comparable(r["config"]) != _comparable(cfg) for r in keras):
        row["status"] = "configs differ (ours ran another definition)"
    a, b = row["ours"]["test_accuracy"], row["keras"]["test_accuracy"]
    pooled = pooled_std(a, b)
    row["diff"] = a["mean"] - b["mean"]
    row["pooled_std"] = pooled
    row["tolerance"] = max(MIN_TOLERANCE, 2 * pooled) if pooled is not None else MIN_TOLERANCE
    row["within"] = abs(row["diff"]) <= row["tolerance"]
    if hooks.get("early_stopping") is not None:
        row["epochs"] = compare_epochs(row["ours"]["epochs"], row["keras"]["epochs"])
    if plateau_visible and (cuts := compare_cuts(row["ours"]["cuts"], row["keras"]["cuts"])):
        row["cuts"] = cuts
    return row


def compare_cuts(ours: list, keras: list) -> dict | None:
    """ReduceLROnPlateau's cuts, ours against Keras, each with `compare_epochs`'s rule: the
    epoch of the first cut (over the seeds that cut at all) and the number of cuts. None when a
    side lacks its histories or no seed of a side cut."""
    if any(c is None for c in ours + keras):
        return None
    first_ours, first_keras = [c[0] + 1 for c in ours if c], [c[0] + 1 for c in keras if c]
    if not first_ours or not first_keras:
        return None
    return {"first": compare_epochs(first_ours, first_keras),
            "first_ours": first_ours, "first_keras": first_keras,
            "count": compare_epochs([len(c) for c in ours], [len(c) for c in keras])}


def compare_epochs(ours: list[int], keras: list[int]) -> dict:
    """Epochs run (the stop epoch where EarlyStopping fired), or any per-seed count, ours
    against Keras: the difference of the means and whether it is within max(1, 2 x pooled
    std), as for accuracy."""
    a, b = _stats([float(e) for e in ours]), _stats([float(e) for e in keras])
    pooled = pooled_std(a, b)
    tol = max(1.0, 2 * pooled) if pooled is not None else 1.0
    diff = a["mean"] - b["mean"]
    return {"diff": diff, "pooled_std": pooled, "tolerance": tol, "within": abs(diff) <= tol}


def rows(experiments_dir="experiments", experiments=("p8d", "ta8")) -> list[dict]:
    """One dict per run of each experiment's results.json, in its order."""
    root = Path(experiments_dir)
    out = []
    for exp in experiments:
        results = root / exp / "results.json"
        if not results.is_file():
            continue
        keras = keras_records(root / PARITY / exp)
        for run in json.loads(results.read_text())["runs"]:
            out.append(compare(exp, run, keras.get(run["name"], []), root / exp))
    return out


def _acc(s: dict | None) -> str:
    if s is None:
        return "—"
    return f"{100 * s['mean']:.2f} ± {100 * s['std']:.2f} ({s['n']})"


def _epochs(side: dict | None) -> str:
    if side is None:
        return "—"
    ep = side["epochs"]
    if len(set(ep)) == 1 and not any(side["stopped"]):
        return str(ep[0])
    return f"{statistics.fmean(ep):.1f} [{', '.join(map(str, ep))}]"


def _cuts(side: dict | None) -> str:
    if side is None or "cuts" not in side:
        return "—"
    if side["cuts"] is None:
        return "count " + ", ".join(map(str, side["reductions"]))
    return " · ".join(",".join(str(e + 1) for e in c) if c else "none" if c is not None else "?"
                      for c in side["cuts"])


def _epoch_verdict(e: dict | None) -> str:
    if e is None:
        return "—"
    mark = "" if e["within"] else " **fuera**"
    return f"{e['diff']:+.1f} ({e['tolerance']:.1f}){mark}"


def markdown(table: list[dict]) -> str:
    """The rows as one markdown table (accuracies and differences in percentage points)."""
    head = ("| Experimento | Run | jaxmlp test acc. % (n) | Keras 3 test acc. % (n) | Δ pp "
            "| Tolerancia pp | Veredicto | Épocas jaxmlp | Épocas Keras | Δ épocas (tol.) "
            "| Recortes LR jaxmlp | Recortes LR Keras |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in table:
        if "diff" in r:
            verdict = "dentro" if r["within"] else "**fuera**"
            if r["status"] != "compared":
                verdict += f" ({r['status']})"
            diff, tol = f"{100 * r['diff']:+.2f}", f"{100 * r['tolerance']:.2f}"
        else:
            verdict, diff, tol = r["status"], "—", "—"
        keras = r["keras"]
        lines.append(
            f"| {r['experiment']} | {r['run']} | {_acc(r['ours']['test_accuracy'])} "
            f"| {_acc(keras['test_accuracy'] if keras else None)} | {diff} | {tol} | {verdict} "
            f"| {_epochs(r['ours'])} | {_epochs(keras)} | {_epoch_verdict(r.get('epochs'))} "
            f"| {_cuts(r['ours'])} | {_cuts(keras)} |")
    return head + "\n".join(lines) + "\n"


def coverage(table: list[dict]) -> dict:
    """Per experiment: which runs were compared (within / beyond the tolerance) and which not."""
    out: dict[str, dict] = {}
    for r in table:
        c = out.setdefault(r["experiment"], {"runs": 0, "within": [], "beyond": [],
                                             "configs_differ": [], "not_compared": {}})
        c["runs"] += 1
        if "diff" not in r or r["status"].startswith("incomplete"):
            c["not_compared"][r["run"]] = r["status"].split(":")[0]
            continue
        c["within" if r["within"] else "beyond"].append(r["run"])
        if r["status"] != "compared":
            c["configs_differ"].append(r["run"])
    return out


def coverage_text(table: list[dict]) -> str:
    """One markdown paragraph per experiment saying what the table covers."""
    lines = []
    for exp, c in coverage(table).items():
        done = len(c["within"]) + len(c["beyond"])
        text = (f"**{exp}**: {done} of {c['runs']} runs compared, {len(c['within'])} within "
                "the tolerance")
        if c["beyond"]:
            text += "; beyond: " + ", ".join(c["beyond"])
        if c["configs_differ"]:
            text += "; compared with results of another definition: " + ", ".join(
                c["configs_differ"])
        for status in sorted(set(c["not_compared"].values())):
            names = [n for n, s in c["not_compared"].items() if s == status]
            text += f"; {status}: " + ", ".join(names)
        lines.append(text + ".")
    return "\n\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m jaxmlp.bench.parity_table",
                                description=__doc__.split("\n")[0])
    p.add_argument("--experiments-dir", default="experiments")
    p.add_argument("--json", action="store_true", help="print the rows as JSON instead")
    args = p.parse_args(argv)
    table = rows(args.experiments_dir)
    print(json.dumps(table, indent=2) if args.json
          else markdown(table) + "\n" + coverage_text(table), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
