"""Run configurations in words and Markdown tables: the shared configuration once, then per run
only what varies, so no table needs more columns than the content column holds."""

from __future__ import annotations

from jaxmlp.report.compare import DASH, PM, label, pm, span, versus

OPTIMIZERS = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "rmsprop": "RMSprop"}
YES_NO = {True: "sí", False: "no"}


def describe_optim(o: dict) -> str:
    """The optimizer and its non-default arguments, without the learning rate."""
    name = OPTIMIZERS.get(o["name"], o["name"])
    extra = []
    if o["name"] == "sgd" and o.get("momentum"):
        extra.append(f"momentum {o['momentum']:g}" + (", Nesterov" if o.get("nesterov") else ""))
    if o["name"] == "rmsprop":
        extra.append(f"ρ {o.get('rho', 0.9):g}")
    if o["name"] == "adamw":
        extra.append(f"weight decay {o.get('weight_decay', 0):g}")
    return name + (f" ({', '.join(extra)})" if extra else "")


def describe_hooks(h: dict) -> str:
    """The callbacks of a run in Keras vocabulary, with their key arguments."""
    out = []
    if h.get("early_stopping"):
        e = h["early_stopping"]
        out.append(f"EarlyStopping ({e['monitor']}, patience {e['patience']}"
                   + (", restaura los mejores pesos" if e.get("restore_best_weights") else "")
                   + ")")
    if h.get("reduce_lr"):
        r = h["reduce_lr"]
        out.append(f"ReduceLROnPlateau ({r['monitor']}, factor {r['factor']:g}, "
                   f"patience {r['patience']}"
                   + (f", min_lr {r['min_lr']:g}" if r.get("min_lr") else "") + ")")
    if h.get("checkpoint"):
        out.append(f"ModelCheckpoint ({h['checkpoint']['monitor']})")
    if h.get("schedule"):
        s = h["schedule"]
        out.append(f"coseno {s['initial_lr']:g} → {s['min_lr']:g} en {s['period']} épocas")
    if h.get("schedule") and h.get("reduce_lr"):
        mix = h.get("lr_composition", "keras")
        out.append("el coseno pisa los recortes (como Keras)" if mix == "keras"
                   else "la meseta escala el coseno")
    return " + ".join(out) if out else "ninguno"


def aspects(run: dict) -> dict[str, str]:
    """A run's configuration as {aspect in Spanish: value in words}, in reading order."""
    c = run["config"]
    m, o, t, h = c["model"], c["optim"], c["train"], c["hooks"]
    out = {
        "Capas ocultas": "→".join(map(str, m["hidden"])),
        "Activación": m.get("activation", "relu"),
        "BatchNorm": YES_NO[bool(m.get("batch_norm"))],
        "Dropout": "/".join(f"{d:g}" for d in m.get("dropout") or [0])
        if any(m.get("dropout") or []) else "no",
        "L2": f"{m.get('l2', 0):g}",
        "Inicialización": m.get("kernel_init", "glorot_uniform"),
    }
    if "output_init" in m:
        out["Capa de salida"] = m["output_init"] + (
            f", L2 {m['output_l2']:g}" if m.get("output_l2") else ", sin L2")
        if m.get("output_clip"):
            out["Capa de salida"] += (f", pérdida con probabilidades recortadas a "
                                      f"[{m['output_clip']:g}, 1 − {m['output_clip']:g}] (Keras)")
    out.update({
        "Optimizador": describe_optim(o),
        "Tasa de aprendizaje": f"{o['learning_rate']:g}",
        "Batch": str(t["batch_size"]),
        "Épocas (máximo)": str(t["epochs"]),
        "Validación": f"último {100 * t['validation_split']:g} % del entrenamiento"
        if t.get("validation_split") else "conjunto aparte",
        "Callbacks": describe_hooks(h),
    })
    return out


def split(runs: list[dict]) -> tuple[dict[str, str], list[str]]:
    """(aspects every run shares, names of the aspects that vary), in reading order."""
    rows = [aspects(r) for r in runs]
    if not rows:
        return {}, []
    shared = {k: v for k, v in rows[0].items() if all(r.get(k) == v for r in rows)}
    return shared, [k for k in rows[0] if k not in shared]


def markdown(header, rows, numeric=()) -> str:
    """A Markdown table; columns whose index is in `numeric` are right-aligned."""
    def cell(c):
        return str(c).replace("|", "\\|").replace("\n", " ")
    align = ["---:" if i in numeric else "---" for i in range(len(header))]
    lines = ["| " + " | ".join(map(cell, header)) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(map(cell, r)) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def shared_table(shared: dict[str, str]) -> str:
    return markdown(["Común a todos", "Valor"], list(shared.items()))


def reference(runs: list[dict], varying: list[str]) -> dict[str, str]:
    """For each varying aspect, its most common value among `runs` (the first on a tie)."""
    rows = [aspects(r) for r in runs]
    return {k: max((r[k] for r in rows), key=[r[k] for r in rows].count) for k in varying}


def changes(run: dict, varying: list[str], ref: dict[str, str]) -> str:
    """Only what this run changes from the reference («referencia» when nothing)."""
    a = aspects(run)
    if len(varying) == 1:
        return a[varying[0]]
    diff = [f"{k.lower()}: {a[k]}" for k in varying if a[k] != ref[k]]
    return "; ".join(diff) or "referencia"


def epochs_cell(run: dict) -> str:
    s = run["summary"].get("epochs_run")
    if not s:
        return "—"
    if s["min"] == s["max"]:
        return f"{s['min']:.0f}"
    return f"{s['mean']:.1f} ({s['min']:.0f}{DASH}{s['max']:.0f})"  # where EarlyStopping fired


def results_table(runs: list[dict], varying: list[str], against: dict | None = None) -> str:
    """Per run: what varies, test accuracy «mean ± std (min–max)» over seeds, the epochs run
    when they differ between runs, and (with `against`) the verdict against that run."""
    ref = reference(runs, varying)
    header = ["Run"] + ([varying[0] if len(varying) == 1 else "Cambia respecto a la referencia"]
                        if varying else []) + [f"Test (%): media{PM}std (rango)"]
    rows = [[label(r)] + ([changes(r, varying, ref)] if varying else [])
            + [f"{pm(r['summary'].get('test_accuracy'))} "
               f"({span(r['summary'].get('test_accuracy'))})"] for r in runs]
    if len({epochs_cell(r) for r in runs}) > 1:
        header.append("Épocas: media (rango)")
        rows = [row + [epochs_cell(r)] for row, r in zip(rows, runs)]
    if against is not None:
        header.append(f"Frente a «{label(against)}»")
        rows = [row + [versus(r, against)] for row, r in zip(rows, runs)]
    numeric = {i for i, h in enumerate(header) if h.startswith(("Test", "Épocas"))}
    return markdown(header, rows, numeric=numeric)
