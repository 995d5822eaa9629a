"""The benchmark page's content: one Spanish section per committed experiments/bench/*.json,
and the Keras parity table from jaxmlp.bench.parity_table when that module is present."""

from __future__ import annotations

import importlib
import re
import statistics
import subprocess
from pathlib import Path

import numpy as np

from jaxmlp.bench import quartiles, round_ratios
from jaxmlp.report.compare import machine, num, pm, short_machine
from jaxmlp.report.tables import markdown


def device(b: dict) -> str | None:
    """The machine a record measured on, for a reader; None for a record that measured nothing
    (jaxmlp.bench.schedule counts from committed results)."""
    if "environment" not in b:
        return None
    env = b["environment"]
    n = env.get("device_count", 1)
    return (f"{machine(env.get('device'))}, {n} "
            f"{'dispositivo' if n == 1 else 'dispositivos'} {env.get('platform', '—').upper()} "
            f"de JAX `{env.get('jax', '—')}`")


# How records count FLOPs. Those with a `flop_count` count the products the program runs;
# older ones counted 6 x dense weights per trained example (jaxmlp.bench.epoch_floor).
EXECUTED = ("los productos de matrices que contiene el programa (hacia delante, gradientes de "
            "los pesos, gradientes respecto a la entrada de cada capa salvo la primera, cuya "
            "entrada son los datos, y la evaluación)")
TEXTBOOK = ("6 × pesos densos por ejemplo entrenado y 2 × por ejemplo evaluado, una cuenta que "
            "incluye el gradiente respecto a los datos que ningún paso calcula; los registros "
            "nuevos cuentan solo los productos que el programa ejecuta")


def flop_count(b: dict) -> str:
    return EXECUTED if b.get("flop_count") else TEXTBOOK


def undone_table(b: dict, rows: list, key: str, ours: str, undone: str) -> str:
    """An epoch_floor record's epoch beside the same epoch with one CPU choice undone (`key`,
    jaxmlp.bench.epoch_floor.CPU_ABLATIONS), batch by batch, with the gain round by round."""
    table = [[r["batch"], f"{r['epoch_s']:.3f}", f"{r[key]['epoch_s']:.3f}",
              f"×{r[key]['speedup']:.2f}",
              by_round(round_ratios(b, r.get("epochs_s"), r[key].get("epochs_s")))]
             for r in rows]
    return markdown(*without_empty(["Batch", ours, undone, "Ganancia", "Por ronda"], table))


def without_empty(header: list, rows: list) -> tuple[list, list, range]:
    """(header, rows, numeric) for `markdown`, less the last column where no row has a value."""
    if rows and all(r[-1] == "—" for r in rows):
        header, rows = header[:-1], [r[:-1] for r in rows]
    return header, rows, range(len(header))


def by_round(ratios: list[float] | None) -> str:
    """'×median (×q1–×q3)' of per-round ratios, '—' where the record has none."""
    if ratios is None:
        return "—"
    q1, q2, q3 = quartiles(ratios)
    return f"×{q2:.2f} (×{q1:.2f}–×{q3:.2f})"


def epoch_floor(b: dict) -> str:
    rows = [[r["batch"], f"{r['epoch_s']:.3f}", num(r['examples_per_s']),
             f"{r['floor_s']:.3f}", f"{r['ratio']:.2f}"] for r in b.get("rows", [])]
    gflop = b.get("rows") and b["rows"][0].get("epoch_gflop")
    text = ("Una época frente al mínimo que permite la máquina: el tiempo de sus productos de "
            f"matrices a la velocidad medida de `matmul`. FLOP contados: {flop_count(b)}"
            + (f"; {num(gflop, '.1f')} GFLOP por época" if gflop else "") + ".\n\n"
            + markdown(["Batch", "Época (s)", "Ejemplos/s", "Mínimo (s)", "Época / mínimo"],
                       rows, numeric=range(5)))
    if b.get("repeats") == 1:
        text += ("\nLas tablas que siguen comparan dos lados medidos en rondas alternadas, una "
                 "época por lado y ronda. «Por ronda» es el cociente entre los dos lados dentro "
                 "de cada ronda: su mediana y, entre paréntesis, sus cuartiles (la mitad de las "
                 "rondas cae entre ellos). Una racha lenta de la máquina afecta a los dos lados "
                 "de una ronda.\n")
    plain = [r for r in b.get("rows", []) if "plain_first_layer" in r]
    if plain:
        share = 2 * 3072 * 256 * b["n_train"] / (plain[0]["epoch_gflop"] * 1e9)
        text += ("\nEl gradiente de los pesos de la primera capa, xᵀ·g, es el "
                 f"{num(100 * share)}\u00a0% de los FLOP de la época. La misma época, alternada "
                 "en el mismo proceso, con ese producto como lo calcula `jaxmlp` en la CPU (xᵀ "
                 "copiada antes en memoria, `models.data_matmul`) y como lo forma la "
                 "diferenciación automática (el producto lee x traspuesta); con este modelo el "
                 "entrenamiento es idéntico bit a bit (con la primera capa de 32 unidades de "
                 "baseline, no: el `dot` redondea distinto):\n\n"
                 + undone_table(b, plain, "plain_first_layer", "xᵀ copiada antes (s)",
                                "x leída traspuesta (s)"))
    masks = [r for r in b.get("rows", []) if "masks_in_step" in r]
    if masks:
        text += ("\nLas máscaras de dropout: `jaxmlp` en la CPU sortea las de todos los pasos de "
                 "la época antes del bucle de lotes, en un solo cálculo; sorteadas dentro de "
                 "cada paso, XLA calcula el hash Threefry dos veces por unidad (en la pasada "
                 "hacia delante y otra vez en la retropropagación, que necesita la máscara). "
                 "Las mismas claves y los mismos bits: el entrenamiento es idéntico bit a bit. "
                 "La misma época, alternada en el mismo proceso:\n\n"
                 + undone_table(b, masks, "masks_in_step", "Máscaras antes (s)",
                                "Máscaras en cada paso (s)"))
    keras = [r for r in b.get("rows", []) if "keras" in r]
    if keras:
        def spread(ts):
            return f"{np.median(ts):.3f} ({min(ts):.3f}–{max(ts):.3f})"
        rows = [[r["batch"], spread(r["epochs_s"]), spread(r["keras"]["epochs_s"]),
                 f"{r['keras']['epoch_s'] / r['floor_s']:.2f}", f"×{r['keras']['speedup']:.2f}",
                 by_round(round_ratios(b, r["epochs_s"], r["keras"]["epochs_s"]))]
                for r in keras]
        k = keras[0]["keras"]
        text += (f"\nEl mismo modelo, datos y batch con Keras {k['keras']} `fit` (backend JAX), "
                 f"medido en el mismo proceso y alternado con el nuestro ({k['rounds']} rondas"
                 + (f" de {b['repeats']} {'época' if b['repeats'] == 1 else 'épocas'} por lado"
                    if b.get("repeats") else "") + "; "
                 "mediana de las épocas, entre paréntesis la más rápida y la más lenta):\n\n"
                 + markdown(*without_empty(["Batch", "jaxmlp (s)", "Keras (s)", "Keras / mínimo",
                                            "Keras / jaxmlp", "Por ronda"], rows)))
    return text


def interleaved(part: dict) -> str:
    """How a comparison of the sweep bench was timed: newer records alternate the sides."""
    if not part.get("rounds"):
        return "; medidos uno después del otro, no alternados"
    return f"; alternados época a época, mediana de {part['rounds']} rondas"


def sweep(b: dict) -> str:
    rows = [[r["members"], f"{r['epoch_s']:.3f}", f"{r['per_member_s']:.3f}"]
            for r in b.get("scaling", [])]
    how = {"vmap": " vectorizado (`vmap`)",
           "map": " (en la CPU, un bucle `lax.map` sobre los runs dentro del programa: ahí "
                  "`vmap` va más lento)"}.get(b.get("member_axis"), "")
    text = (f"Coste de una época cuando varios runs se entrenan como un solo programa{how}"
            + (f", batch {b['batch']}, {num(b['n_train'])} ejemplos sintéticos" if "batch" in b
               else "") + ":\n\n"
            + markdown(["Runs en el grupo", "Época del grupo (s)", "Por run (s)"], rows,
                       numeric=range(3)))
    if b.get("group_vs_solo"):
        g = b["group_vs_solo"]
        text += (f"\n{g['members']} runs en grupo: {g['group_epoch_s']:.2f} s por época; uno tras "
                 f"otro: {g['solo_epochs_s']:.2f} s (×{g['speedup']:.2f}"
                 + interleaved(g) + ").\n")
    if b.get("keras"):
        k = b["keras"]
        text += (f"\nUna época de `jaxmlp`: {k['jaxmlp_epoch_s']:.2f} s; Keras 3 `fit` (backend "
                 f"JAX): {k['keras_epoch_s']:.2f} s (×{k['speedup']:.2f}" + interleaved(k)
                 + ").\n")
    if b.get("command"):
        text += f"\nOrden: `{b['command']}`.\n"
    return text


# runner.Clock's phases, in the order a sweep meets them.
PHASES = {"load": "carga de datos", "backend": "arranque del dispositivo (lo que pasa de la carga)",
          "compile_wait": "espera de compilación",
          "train": "entrenamiento (dispositivo)", "observe": "observadores (checkpoints, logs)",
          "eval": "evaluación final", "io": "escritura (modelos, registros)"}


THREADS = {"xla_compute": "cómputo de XLA (entrenamiento y evaluación)",
           "main": "hilo principal (carga, despacho, copias al host)",
           "compile": "compilación (hilos de los grupos y de LLVM)",
           "other": "otros hilos vivos (los de la compilación en paralelo de XLA, entre ellos)",
           "io": "hilo de escritura (observadores y cierres de grupo)",
           "tensorstore": "TensorStore (escribe los checkpoints de Orbax)",
           "ended": "hilos ya terminados (los que Orbax abre en cada guardado y los de "
                    "compilación de XLA que acabaron, entre ellos)"}


def thread_cpu(b: dict) -> str:
    """A whole sweep's CPU seconds by kind of thread (`runner.ThreadCPU`, this_invocation's
    `cpu_s`), and what the checkpoints' writing took beside the observers' own thread; '' for
    records without them."""
    cpu = b.get("cpu_s")
    if not cpu:
        return ""
    known = [k for k in THREADS if k in cpu]
    parts = [(THREADS[k], cpu[k]) for k in known]
    parts += [(k, v) for k, v in cpu.items() if k not in THREADS and k != "process"]
    rows = [[name, num(v, '.1f')] for name, v in parts]
    rows.append(["**total del proceso**", f"**{num(cpu['process'], '.1f')}**"])
    whose = " del proceso 0" if b.get("processes", 1) > 1 else ""
    text = ("\nSegundos de CPU" + whose + " por tipo de hilo (`runner.ThreadCPU`, leídos de "
            "`/proc` al final del barrido; con varios núcleos suman más que el reloj):\n\n"
            + markdown(["Hilos", "CPU (s)"], rows, numeric=(1,)))
    text += rounded_apart([v for _, v in parts], cpu["process"], 1)
    if "io" in cpu and cpu.get("tensorstore", 0.0) > 0:
        text += (f"\nEl hilo de escritura gastó {num(cpu['io'], '.1f')} s de CPU, y TensorStore, "
                 "que escribe los checkpoints que ese hilo pide a Orbax, "
                 f"{num(cpu['tensorstore'], '.1f')} s "
                 "más (además de lo que gastaron los hilos de cada guardado, que cuentan con los "
                 "ya terminados). En una CPU ese tiempo sale de los mismos núcleos que "
                 "entrenan.\n")
    return text


def breakable(stem: str) -> str:
    """A record's name as code that a narrow table column may break after its '_'."""
    return "`" + stem.replace("_", "_\u200b") + "`"


def rounded_apart(values: list[float], total: float, decimals: int) -> str:
    """The sentence a table with a total row needs when its rows, each rounded on its own, do
    not add up to the rounded total ('' when they do): whether the exact values add up."""
    shown = sum(round(v, decimals) for v in values)
    if round(shown, decimals) == round(total, decimals):
        return ""
    exact = abs(sum(values) - total) < 10 ** -(decimals + 2)
    places = {0: "sin decimales", 1: "a un decimal", 2: "a dos decimales"}.get(
        decimals, f"a {decimals} decimales")
    return (f"\nCada fila está redondeada por separado, {places}: las filas suman "
            f"{num(shown, f'.{decimals}f')}, "
            + ("y los valores sin redondear suman exactamente el total." if exact else
               f"y los valores sin redondear, {num(sum(values), f'.{decimals + 1}f')}, frente "
               f"a un total de {num(total, f'.{decimals + 1}f')} medido aparte.") + "\n")


def by_process_0(b: dict) -> str:
    """Whose groups a sweep's group count is: every process's, and how many process 0 trained
    (groups claimed, `groups_trained_by_process_0`), or process 0's alone (records of the
    round-robin split, before claims)."""
    if b.get("processes", 1) < 2:
        return ""
    if "groups_trained_by_process_0" in b:
        return f" entre todos los procesos ({b['groups_trained_by_process_0']} en el proceso 0)"
    return " en el proceso 0"


def turns(b: dict) -> str:
    """What a sweep's compile sum leaves out, or holds, of the threads' waits for their turn
    (runner.Turns: each group's Python part runs after the earlier groups'). Only several
    groups compiling in several threads wait (one core per process: one thread, in order)."""
    split = b["time_split_s"]
    if split.get("compile_turns", 0.0) >= 0.5:
        return (f" (aparte, {num(split['compile_turns'])} s esperando su turno para la parte de "
                "Python, que va grupo a grupo en el orden de entrenamiento)")
    parallel = b.get("groups", 1) > 1 and b.get("cores_per_process") != 1
    # runner.Turns and runner.IOThread came in one commit (9973fdf); the split, later.
    if parallel and "io_thread" in split and "compile_turns" not in split:
        return (" (esa suma incluye lo que cada hilo esperó su turno para la parte de Python, "
                "que va grupo a grupo: el código de este registro aún no lo separaba)")
    return ""


def whole_sweep(b: dict) -> str:
    cache = {"cold": " con la caché de compilación de JAX vacía (en frío)",
             "warm": " con la caché de compilación de JAX ya llena (en caliente)"}
    how = cache.get(b.get("compile_cache"), "")
    n = b.get("processes", 1)
    text = (f"El barrido completo de {b['experiment'].upper()}{how}: {b['runs']} runs, "
            f"{b['members']} entrenamientos (runs × semillas), "
            f"{num(b['epochs'])} épocas en total, {b['groups']} "
            f"{'grupo compilado' if b['groups'] == 1 else 'grupos compilados'}"
            f"{by_process_0(b)}, "
            f"**{num(b['wall_time_s'])} s** de reloj para entrenarlos")
    if n > 1:
        cores = b.get("cores_per_process")
        text += (f" en {n} procesos" + (f" de {cores} {'núcleo' if cores == 1 else 'núcleos'} "
                                        "cada uno" if cores else "")
                 + (", cada uno con su parte de los grupos grandes y los grupos enteros que "
                    "tomó al quedar libre" if "groups_trained_by_process_0" in b else
                    ", cada uno con su parte de los entrenamientos (por turnos)"))
    if b.get("process_wall_time_s"):
        text += (f", **{num(b['process_wall_time_s'])} s** el proceso entero (arranque de Python, "
                 "carga de datos y compilación incluidos)")
    text += f" (`{b['command']}`).\n"
    split = b.get("time_split_s")
    if split:
        rows = [[label, num(split[k], '.1f')] for k, label in PHASES.items() if k in split]
        whose = " del proceso 0" if n > 1 else ""
        text += (f"\nA dónde va el tiempo del hilo principal{whose} (`runner.Clock`):\n\n"
                 + markdown(["Fase", "Segundos"], rows, numeric=(1,)))
        one_core = n > 1 and b.get("cores_per_process") == 1
        if "compile" in split and one_core and "groups_trained_by_process_0" in b:
            text += ("\nCon un núcleo por proceso, cada proceso compila el programa de su grupo "
                     "siguiente cuando queda libre, no al lado de su entrenamiento (solo se "
                     "repartiría ese núcleo): los hilos que compilan sumaron "
                     f"{num(split['compile'])} s en el proceso 0{turns(b)}, y el hilo "
                     f"principal esperó {num(split.get('compile_wait', 0.0))} s por ellos.\n")
        elif "compile" in split and one_core:
            text += (f"\nLos hilos que compilan sumaron {num(split['compile'])} s de compilación "
                     f"en el proceso 0{turns(b)}, en el mismo núcleo que su entrenamiento: "
                     "ese tiempo se le quita al entrenamiento aunque no cuente como espera.\n")
        elif "compile" in split:
            text += (f"\nLos hilos que compilan en paralelo sumaron {num(split['compile'])} s de "
                     f"compilación{turns(b)}; solo la espera de compilación queda en el "
                     "camino crítico.\n")
        if "observe_thread" in split:
            text += (f"\nLos observadores trabajaron {num(split['observe_thread'], '.1f')} s en "
                     "su propio hilo, mientras el dispositivo entrenaba el bloque de épocas "
                     "siguiente; el hilo principal solo los esperó lo que dice la fila de "
                     "observadores.\n")
        if "io_thread" in split:
            text += (f"\nEl cierre de los grupos (logs, modelos finales, registros) llevó "
                     f"{num(split['io_thread'], '.1f')} s en el hilo de escritura, mientras el "
                     "grupo siguiente entrenaba. "
                     + ("En ese hilo, que es también el de los observadores, un observador pasa "
                        "antes que un cierre, y los de los últimos bloques de cada grupo terminan "
                        "allí mientras el hilo principal sigue: la fila de observadores es solo "
                        "lo que el entrenamiento los esperó por ir dos bloques por detrás, y la "
                        "de escritura, la espera final.\n" if b.get("observers_first") else
                        "Ese hilo es también el de los observadores: lo que el entrenamiento "
                        "esperó detrás de un cierre cuenta en la fila de observadores, y la de "
                        "escritura es la espera final.\n"))
    text += thread_cpu(b)
    return text


def against_one_process(b: dict, benches: list[tuple[str, dict]], experiments: Path) -> str:
    """For a whole sweep run as several processes: the one-process record of the same sweep,
    machine, compilation cache and code (replaced or not: the pair was timed together), else
    the newest one in force, and the ratio of their process wall times."""
    if b.get("benchmark") != "whole_sweep" or b.get("processes", 1) < 2:
        return ""

    def one_process(o):
        return (o.get("benchmark") == "whole_sweep" and o.get("processes", 1) == 1
                and o.get("experiment") == b["experiment"] and host(o) == host(b)
                and o.get("compile_cache") == b.get("compile_cache") and not o.get("label"))
    hit = b.get("code") and newest(benches, experiments, lambda o: (
        one_process(o) and o.get("code") == b["code"]), replaced=True)
    hit = hit or newest(benches, experiments, one_process)
    if hit is None:
        return ""
    date, stem, one = hit

    def wall(r):
        return r.get("process_wall_time_s") or r["wall_time_s"]

    return (f"\nEl mismo barrido en un solo proceso en esta máquina (`{stem}.json`, {date}"
            + (f", código `{one['code']}`" if one.get("code") else "")
            + f"): {num(wall(one))} s; en {b['processes']} procesos, {num(wall(b))} s: "
            f"**×{wall(one) / wall(b):.2f}** el proceso entero.\n")


def roofline(b: dict, benches: list[tuple[str, dict]] = (), experiments: Path | None = None
             ) -> str:
    """A roofline record. With `benches` (a record in force), a whole-sweep row whose sweep
    record another has replaced shows the record in force instead (`replaced_sweep`)."""
    p = b["peak_tflops"]
    n = b["matmul_size"]
    text = (f"Pico medido con un producto de matrices {n}×{n}×{n}: "
            f"**{num(p['float32_training_precision'])} TFLOP/s** en float32 con la precisión con "
            "la que se entrena "
            f"(`jax_default_matmul_precision` = {b['training_matmul_precision']}: en una GPU "
            f"NVIDIA Ampere/Hopper, XLA hace esos productos en TF32), {num(p['float32_highest'])} "
            f"TFLOP/s en float32 exacto (`highest`) y {num(p['bfloat16'])} TFLOP/s en bfloat16. "
            "Los porcentajes de abajo son sobre el primero; cuentan solo las capas densas: "
            f"{flop_count(b)}.\n")
    if b.get("bandwidth_gbs"):
        text += (f"\nAncho de banda de memoria medido con la tríada de STREAM (z = x·s + z sobre "
                 f"{num(b['bandwidth_elements'])} float32 por vector: dos leídos y uno escrito por "
                 f"elemento): **{num(b['bandwidth_gbs'])} GB/s**. Es el ritmo al que puede ir "
                 "la actualización de los pesos, que es tráfico de memoria y no productos de "
                 "matrices.\n")
    if b.get("epoch"):
        rows = [[r["members"], f"{r['epoch_s']:.4f}", f"{r['tflops']:.2f}",
                 num(r['percent_of_peak'], '.1f')] for r in b["epoch"]]
        text += (f"\nUna época del modelo combinado de TA8 (batch {b['batch']}, "
                 f"{num(b['n_train'])} ejemplos sintéticos):\n\n"
                 + markdown(["Runs en el grupo", "Época (s)", "TFLOP/s", "% del pico"], rows,
                            numeric=range(4)))
    if b.get("sweeps"):
        rows, notes = [], []
        for s in b["sweeps"]:
            stem = s["results"].removesuffix(".json")
            now = replaced_sweep(stem, benches, experiments) if benches else None
            if now is None:
                gone = ", reemplazado" if dict(benches).get(stem, {}).get("superseded") else ""
                rows.append([f"{s['experiment'].upper()} (`{stem}`{gone})", num(s["wall_time_s"]),
                             f"{s['pflop']:.3f}", f"{s['tflops']:.2f}",
                             f"{s['percent_of_peak']:.2f}"])
                continue
            _, new_stem, new = now
            old = dict(benches)[stem]
            rows.append([f"{s['experiment'].upper()} (`{new_stem}`)",
                         num(new.get("since_start_s") or new["wall_time_s"]), "—", "—", "—"])
            notes.append(
                f"Los FLOP de `{new_stem}` están sin contar: este registro contó los del barrido "
                f"de `{stem}` (a partir de su `results.json`), que `{new_stem}` reemplaza "
                f"({num(old['epochs'])} épocas entrenadas; `{new_stem}`, {num(new['epochs'])}). "
                f"Esa fila queda con `{stem}`, en «Registros anteriores».")
        text += ("\nBarridos completos (desde la carga de datos hasta el último registro; entre "
                 "paréntesis, su registro en esta página):\n\n"
                 + markdown(["Barrido", "Reloj (s)", "PFLOP", "TFLOP/s", "% del pico"],
                            rows, numeric=(1, 2, 3, 4))
                 + "".join(f"\n{n}\n" for n in notes))
    return text


def replaced_sweep(stem: str, benches: list[tuple[str, dict]], experiments: Path):
    """`newest`'s hit for the record in force that replaces the whole-sweep record `stem`
    (same experiment, machine, compilation cache and label), or None when `stem` is in force
    or is no record here."""
    old = dict(benches).get(stem)
    if not old or not old.get("superseded") or old.get("benchmark") != "whole_sweep":
        return None
    return newest(benches, experiments, lambda o: (
        o.get("benchmark") == "whole_sweep" and o.get("experiment") == old.get("experiment")
        and host(o) == host(old) and o.get("compile_cache") == old.get("compile_cache")
        and o.get("label") == old.get("label")))


def placed_on_roofline(stem: str, benches: list[tuple[str, dict]]) -> str:
    """For a replaced whole-sweep record: the rows that rooflines in force computed from it
    (shown here, not in the roofline's section), '' when none."""
    out = []
    for roof_stem, r in in_force(benches):
        for s in r.get("sweeps", []) if r.get("benchmark") == "roofline" else []:
            if s["results"].removesuffix(".json") == stem:
                out.append(
                    f"\nSituado en el techo de la GPU por `{roof_stem}` (en vigor): "
                    f"{num(s['wall_time_s'])} s desde la primera carga hasta el último registro, "
                    f"{s['pflop']:.3f} PFLOP, {s['tflops']:.2f} TFLOP/s, "
                    f"{s['percent_of_peak']:.2f} % del pico medido.\n")
    return "".join(out)


def run_names(names: list[str]) -> str:
    """A group's runs in a table cell: the first two, and how many more."""
    return ", ".join(f"`{n}`" for n in names[:2]) + (
        f" y {len(names) - 2} más" if len(names) > 2 else "")


def schedule(b: dict) -> str:
    """A schedule record (jaxmlp.bench.schedule): each experiment's groups, in series."""
    text = ("Lo que corre en serie en un barrido: cada grupo de runs que comparten formas es un "
            "programa compilado, y los grupos se entrenan uno tras otro, cada uno hasta que para "
            "su último miembro. Contado a partir de los `results.json` guardados (`python -m "
            "jaxmlp.bench.schedule`), sin medir nada. En una GPU el paso de un grupo pequeño "
            "cuesta casi lo mismo tenga los miembros que tenga (el tiempo se va en lanzar "
            "kernels: ver el techo de la GPU), así que el entrenamiento tarda según los pasos en "
            "serie más que según las épocas-miembro. Vectorizado (vmap, en la GPU), un miembro "
            "parado se sigue calculando bajo máscara hasta que para su grupo; en la CPU se "
            "salta.\n")
    for e in b.get("experiments", []):
        rows = [[run_names(g["runs"]), g["batch"], g["members"],
                 f"{g['longest']} / {g['epoch_budget']}", num(g['sequential_steps']),
                 f"{num(g['member_epochs'])} + {num(g['masked_member_epochs'])}"]
                for g in e["groups"]]
        n = len(e["groups"])
        text += (f"\n{e['experiment'].upper()}, {num(e['n_train'])} ejemplos de entrenamiento, "
                 f"{n} programa{'s' if n != 1 else ''} (épocas: las del miembro que más "
                 "entrenó / el máximo; épocas-miembro: entrenadas + calculadas bajo máscara "
                 "si el grupo va vectorizado):\n\n"
                 + markdown(["Runs", "Batch", "Miembros", "Épocas", "Pasos en serie",
                             "Épocas-miembro"], rows, numeric=range(1, 6))
                 + f"\n\nEn total, {num(e['sequential_steps'])} pasos en serie, "
                 f"{num(e['member_epochs'])} épocas-miembro entrenadas y "
                 f"{num(e['masked_member_epochs'])} bajo máscara si los grupos van vectorizados. "
                 f"Con un solo programa por batch y presupuesto de épocas "
                 f"({e['programs_one_per_batch_and_budget']}), serían "
                 f"{num(e['sequential_steps_one_program_per_batch_and_budget'])} pasos en serie.\n")
    return text


def keras_parity(b: dict) -> str:
    rows = []
    for model, by in b["models"].items():
        for who, curves in by.items():
            last = [100 * c["val_accuracy"][-1] for c in curves]
            rows.append([model, who, len(curves), num(np.mean(last), '.1f'),
                         f"{num(min(last), '.1f')}–{num(max(last), '.1f')}"])
    return (f"Keras 3 `fit` frente a `jaxmlp` con los mismos datos ({b['dataset']['name']}, "
            f"{num(b['n_train'])} ejemplos de entrenamiento), Adam 1e-3, batch {b['batch']}, "
            f"{b['epochs']} épocas:\n\n"
            + markdown(["Modelo", "Entrenado con", "Semillas", "Val. última época (%)",
                        "Rango (%)"], rows, numeric=(2, 3)))


PROFILE_CATEGORIES = {
    "matmul": "productos de matrices", "parameter-sized update": "actualización de los pesos "
    "(Adam, del tamaño de cada peso)", "batch elementwise": "activaciones, BatchNorm y "
    "dropout (del tamaño del batch)", "dropout masks ahead": "máscaras de dropout de la época, "
    "sorteadas antes del bucle de lotes", "reduction": "reducciones (gradientes de sesgos y "
    "BatchNorm, pérdida, L2)", "batch gather": "lectura del batch barajado",
    "copy": "copias", "sort": "permutación de la época", "loop": "bucles", "other": "otras"}


def epoch_profile(b: dict) -> str:
    parts = []
    for r in b.get("rows", []):
        cats = sorted(((c, s) for c, s in r["categories_s"].items() if s > 0),
                      key=lambda cs: -cs[1])
        rows = [[PROFILE_CATEGORIES.get(c, c), f"{s:.3f}", num(100 * s / r['ops_s'], '.1f'),
                 f"{1e3 * s / r['steps']:.3f}"] for c, s in cats]
        parts.append(
            f"Batch {r['batch']}: una época trazada de {r['epoch_s']:.2f} s ({r['steps']} "
            f"pasos); las instrucciones de XLA suman {r['ops_s']:.2f} s "
            f"({num(100 * r['ops_s'] / r['epoch_s'])} %; el resto es el runtime entre ellas y el "
            "propio perfilador).\n\n"
            + markdown(["Qué", "s por época", "% de las instrucciones", "ms por paso"], rows,
                       numeric=(1, 2, 3)))
    return ("Dónde va el tiempo de una época (`python -m jaxmlp.bench.epoch_profile`: una traza "
            "de `jax.profiler`, cada instrucción de XLA clasificada por su HLO):\n\n"
            + "\n".join(parts))


def step_options(b: dict) -> str:
    """bench.step_options: one group's compile and epoch time under XLA options and unrolling;
    with `rounds`, all in one process, alternated round by round and compared bit for bit."""
    ok = [v for v in b["variants"] if "error" not in v]
    base = next((v for v in ok if v["name"] == "default"), None)
    rounds = b.get("rounds")
    who = ("Un run" if b["members"] == 1 else f"Un grupo de {b['members']} miembros")
    ratios = {v["name"]: round_ratios(b, base["epoch_times_s"], v["epoch_times_s"])
              for v in ok if rounds and base and v is not base}
    if rounds:  # the per-round ratio replaces the ratio of medians (and the step, narrow pages)
        rows = [[v["name"].replace("_", "_\u200b"),  # long names may break at a '_'
                 num(v['compile_s'], '.1f'), f"{v['epoch_s']:.3f}", by_round(ratios.get(v["name"])),
                 "referencia" if v["name"] == v["equal_to"] else "sí" if v["equal"] else "no"]
                for v in ok]
    else:
        rows = [[v["name"], num(v['compile_s'], '.1f'), f"{v['epoch_s']:.4f}",
                 num(v['step_us']), f"×{v['epoch_s'] / base['epoch_s']:.2f}" if base else "—"]
                for v in ok]
    header = ["Variante", "Compilación (s)", "Época (s)", "Paso (µs)", "Época / por defecto"]
    if rounds:
        text = (f"{who} del modelo combinado de TA8 (batch {b['batch']}, {num(b['n_train'])} "
                "ejemplos sintéticos), compilado de varias maneras en un mismo proceso "
                f"(`python -m jaxmlp.bench.step_options --rounds {rounds}`). Cada variante "
                "parte del mismo estado inicial y su primera época se compara, hoja a hoja, con "
                "la de la variante de referencia («Igual bit a bit»: si la opción cambia los "
                f"números). Después, {rounds} rondas alternadas de una época por variante: la "
                "época es la mediana, y «Por ronda», la época de la variante entre la de "
                "`default` dentro de cada ronda (mediana y cuartiles; por debajo de ×1.00, más "
                "rápida).\n\n"
                + markdown(header[:3] + ["Por ronda", "Igual bit a bit"], rows,
                           numeric=(1, 2, 3)))
        faster = [f"`{v['name']}` ({'igual' if v['equal'] else 'distinta'} bit a bit)"
                  for v in ok if ratios.get(v["name"]) and quartiles(ratios[v["name"]])[2] < 1]
        if faster:
            text += ("\nMás rápidas que `default` en tres de cada cuatro rondas (cuartil "
                     f"superior de «Por ronda» por debajo de ×1.00): {', '.join(faster)}.\n")
        else:
            text += ("\nNinguna variante es más rápida que `default` en tres de cada cuatro "
                     "rondas (el cuartil superior de «Por ronda» no baja de ×1.00).\n")
    else:
        text = (f"{who} del modelo combinado de TA8 (batch {b['batch']}, {num(b['n_train'])} "
                "ejemplos sintéticos), compilado de varias maneras "
                "(`python -m jaxmlp.bench.step_options`; cada variante en su propio proceso): "
                "compilación XLA del paso, y la mediana de 3 épocas.\n\n"
                + markdown(header, rows, numeric=(1, 2, 3, 4)))
    how = []
    for v in b["variants"]:
        flags = ((f"opción de compilación `{v['xla_flags']}`" if rounds
                  else f"`XLA_FLAGS={v['xla_flags']}`") if v["xla_flags"] else None)
        parts = ([f"`--unroll {v['unroll']}`"] if v["unroll"] > 1 else []) + (
            [flags] if flags else [])
        how.append(f"- `{v['name']}`: {' y '.join(parts) or 'sin cambios'}"
                   + (f" — sin resultado ({v['error']})" if "error" in v else ""))
    text += "\nLas variantes:\n\n" + "\n".join(how) + "\n"
    return text


def merge_probe(b: dict) -> str:
    """bench.merge_probe: a sweep's groups of one batch and epoch budget, each in its own loop
    over batches or all in one, one epoch each, in alternating rounds."""
    n = len(b["groups"])
    rows = [[run_names(g["runs"]), str(g["members"]),
             num(g["compile_and_first_epoch_s"], ".1f"), f"{g['epoch_s']:.3f}"]
            for g in b["groups"]]
    rows.append([f"**los {n}, cada uno en su programa**", str(sum(g["members"]
                                                                 for g in b["groups"])),
                 num(sum(g["compile_and_first_epoch_s"] for g in b["groups"]), ".1f"),
                 f"{b['apart_epoch_s']:.3f}"])
    merged = b["merged"]
    rows.append([f"**los {n} en un programa**", "",
                 num(merged["compile_and_first_epoch_s"], ".1f"), f"{merged['epoch_s']:.3f}"])
    # The «each in its own program» row sums the unrounded values of the rows above it.
    apart = (rounded_apart([g["compile_and_first_epoch_s"] for g in b["groups"]],
                           sum(g["compile_and_first_epoch_s"] for g in b["groups"]), 1)
             or rounded_apart([g["epoch_s"] for g in b["groups"]], b["apart_epoch_s"], 3))
    lo, mid, hi = quartiles(b["ratios"]) if len(b["ratios"]) >= 2 else (b["ratio"],) * 3
    # A verdict needs three of four rounds on one side of x1.00 and the median 5 % past it.
    verdict = ("más barato" if hi < 1 and mid <= 0.95 else
               "más caro" if lo > 1 and mid >= 1.05 else
               "lo mismo a efectos prácticos (menos de un 5 % de diferencia, o rondas a los dos "
               "lados de ×1.00)")
    data = ("ejemplos sintéticos" if b["n_train"] >= 45_000 else
            f"{num(b['n_train'])} ejemplos sintéticos, no los {num(45_000)} de TA8")
    return (
        f"¿Sale más barato un solo bucle sobre los batches que entrene a la vez {n} grupos de "
        f"{b['experiment'].upper()} (batch {b['batch']}, {b['epochs_budget']} épocas de "
        "presupuesto) que un bucle por grupo, uno tras otro? (`python -m "
        "jaxmlp.bench.merge_probe`: los modelos y optimizadores de esos grupos, sin dropout ni "
        f"hooks, que son iguales en las dos formas; {data}; una época por forma en "
        f"{len(b['ratios'])} rondas alternadas.) Las dos formas dan los mismos números: "
        f"{'sí' if b['same_numbers'] else 'no'}.\n\n"
        + markdown(["Grupo", "Miembros", "Compilación y 1.ª época (s)", "Época (s)"], rows,
                   numeric=(1, 2, 3))
        + (f"\nLa fila de los {n}, cada uno en su programa, suma los valores sin redondear de "
           "los grupos; cada fila está redondeada por separado, así que la suma de lo que "
           "muestran puede diferir en la última cifra.\n" if apart else "")
        + f"\nUn programa / uno por grupo: ×{mid:.2f} (por ronda; cuartiles ×{lo:.2f}–"
        f"×{hi:.2f}): {verdict}, con {num(b['steps_per_epoch'])} pasos en serie por época en "
        f"lugar de {num(n * b['steps_per_epoch'])}.\n")


def load(b: dict) -> str:
    """A load record (jaxmlp.bench.load): each dataset's load phase both ways, in fresh
    processes, alternating."""
    rows = []
    for d in b["datasets"]:
        f, px = d["features"], d["pixels"]
        rows.append([d["dataset"], f"{f['median_wall_s']:.2f}",
                     f"{statistics.median(f['system_s']):.2f}", f"{px['median_wall_s']:.2f}",
                     f"{statistics.median(px['system_s']):.2f}", f"×{d['speedup']:.2f}"])
    return ("La fase de carga de un barrido (`python -m jaxmlp.bench.load`): leer los archivos "
            "de la caché de Keras y dejar los arrays en el dispositivo, de dos formas, cada vez "
            "en un proceso nuevo (un barrido carga una vez, en memoria recién pedida): con las "
            "imágenes convertidas a float32 en el host y después movidas (como antes), o con "
            "los píxeles uint8 movidos y convertidos en el dispositivo con la tabla de los 256 "
            "valores (como cargan ahora los experimentos). Las dos formas se alternan, "
            f"{b['rounds']} rondas; medianas. Las dos dejan los mismos bytes en el dispositivo "
            "(lo comprueba el propio script). «Sistema» es la parte de cada tiempo que fue CPU del "
            "núcleo: páginas de memoria nuevas, lecturas de archivos, el driver del "
            "dispositivo.\n\n"
            + markdown(["Dataset", "float32 en el host (s)", "sistema (s)",
                        "uint8 al dispositivo (s)", "sistema (s)", "Ganancia"], rows,
                       numeric=range(1, 6)))


def observer_cost(b: dict) -> str:
    """bench.observer_cost: the writer thread's cost where training is fast."""
    tb, old, sw = b["tensorboard"], b["tensorboard"]["per_value"], b["sweep"]
    rows = [["Un evento por carpeta y época (ahora)", f"{tb['cpu_us_per_epoch']:.1f}",
             num(tb["bytes_per_epoch"])],
            ["Un evento por valor con `tensorboardX.summary.scalar` (antes de `3d044a7`)",
             f"{old['cpu_us_per_epoch']:.1f}", num(old["bytes_per_epoch"])]]
    return (
        "Lo que cuesta en el host el hilo que escribe checkpoints, historias y TensorBoard "
        "(`python -m jaxmlp.bench.observer_cost`). En una GPU el entrenamiento es rápido y ese "
        "hilo queda en el camino crítico: el entrenamiento lo espera. Primero, los escalares de "
        f"TensorBoard solos: {num(tb['epochs'])} épocas de una fila de Keras (6 valores), "
        f"mediana de {tb['rounds']} rondas alternadas, tiempo de CPU del hilo; los dos archivos "
        "se leen de vuelta enteros con el lector de TensorBoard.\n\n"
        + markdown(["Escritura", "µs de CPU por época", "Bytes por época"], rows,
                   numeric=(1, 2))
        + f"\nDespués, el barrido `{sw['command']}` (sus runs y grupos reales sobre datos "
        f"sintéticos diminutos, como si el dispositivo fuera muy rápido): "
        f"{num(sw['member_epochs'])} épocas de miembro; el hilo escritor usó "
        f"{sw['writer_cpu_s']:.2f} s de CPU ({sw['writer_cpu_ms_per_member_epoch']:.2f} ms por "
        f"época de miembro) y {sw['writer_wall_s']:.2f} s de reloj; el hilo principal lo esperó "
        f"{sw['main_waits_s']:.2f} s, y entrenar llevó {sw['train_s']:.2f} s. Los segundos de "
        "reloj dependen de lo que haga a la vez la máquina; los de CPU son los que se comparan "
        "entre versiones del código.\n")


REFIT_WAYS = {
    "reuse": "jaxmlp, reutilizando los programas compilados (ahora)",
    "rebuild": "jaxmlp, cada `fit` compila los suyos (antes)",
    "disk": "jaxmlp, con la caché de compilación persistente de JAX llena",
    "many": "jaxmlp, todas las semillas en una llamada a `jaxmlp.fit_many`",
    "keras": "Keras 3 `fit` (backend JAX), un modelo nuevo por `fit`",
}


def refit(b: dict) -> str:
    """bench.refit: `jaxmlp.fit` again and again in one process, as a loop over seeds."""
    def secs(value):
        return "—" if value is None else f"{value:.2f}"

    rows = [[REFIT_WAYS.get(way, way), secs(m["first_fit_s"]), secs(m["later_fit_s"]),
             secs(m.get("total_s")), ", ".join(map(str, m["epochs"]))]
            for way, m in b["modes"].items()]
    keras = b.get("environment", {}).get("keras")
    later = {way: m["later_fit_s"] for way, m in b["modes"].items()}
    gain = ""
    if later.get("reuse") and later.get("rebuild"):
        gain = (f" Los `fit` que siguen al primero son ×{later['rebuild'] / later['reuse']:.1f} "
                "más rápidos que cuando cada uno compilaba sus programas.")
    return (
        "`jaxmlp.fit` llamado varias veces en un proceso, como en un bucle sobre semillas "
        "(`python -m jaxmlp.bench.refit`): el bloque del README (2\u202f500 ejemplos "
        "sintéticos de 32 features, MLP 256-128 con dropout 0.3, Adam 1e-3, batch 128, hasta "
        "50 épocas, "
        "`validation_split=0.1`, `EarlyStopping(patience=5, restore_best_weights=True)`) con "
        f"las semillas 0 a {b['fits'] - 1}, uno tras otro en un proceso nuevo, cada `fit` "
        "medido de la llamada a su vuelta; cada forma en su propio proceso, alternadas, "
        f"{b['rounds']} rondas; medianas. Un `fit` cuyos programas cierran sobre lo mismo que "
        "los de uno anterior (aquí solo cambia la semilla: un número del estado) ejecuta esos "
        "programas en lugar de trazar y compilar otros; da los mismos números bit a bit. Con "
        "la caché persistente (las variables `JAX_COMPILATION_CACHE_DIR` y "
        "`JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0`, llenada antes por otro proceso) "
        "también el primer `fit` de un script que se vuelve a ejecutar se ahorra la "
        "compilación. `jaxmlp.fit_many` entrena las mismas semillas como miembros de un "
        "programa (en la CPU, uno tras otro dentro de él; en una GPU, vectorizados): de esa "
        "forma solo se mide el total." + gain
        + (f" Keras {keras}, medido a la vez, para comparar." if keras else "") + "\n\n"
        + markdown(["Forma", "Primer `fit` (s)", "Cada `fit` siguiente (s)", "Todos (s)",
                    "Épocas de cada `fit`"], rows, numeric=(1, 2, 3)))


def unused_parts(b: dict) -> str:
    """bench.unused_parts: an epoch computing only the dropout layers and L2 term its model
    uses, or every part at rate 0, in alternating rounds, one run of an experiment each."""
    rows = []
    for r in b["runs"]:
        left = [f"dropout {i + 1}" for i, on in enumerate(r["uses"]["dropout"]) if not on]
        left += [] if r["uses"]["l2"] else ["L2"]
        lo, hi = r["ratio_quartiles"]
        same = ("sí, bit a bit" if r["max_rel_difference"] == 0 else
                f"a {r['max_rel_difference']:.1g} (relativa)")
        rows.append([f"{r['spec']} (batch {r['batch']})", ", ".join(left),
                     f"{r['median_epoch_s']['every']:.3f}", f"{r['median_epoch_s']['used']:.3f}",
                     f"×{r['ratio']:.2f} (×{lo:.2f}–×{hi:.2f})", same])
    return ("Una época que calcula solo las capas de dropout y el término L2 que usa su modelo "
            "(`models.Uses`), frente a la misma época con todas las partes a tasa o coeficiente "
            "0, como se calculaba antes (`python -m jaxmlp.bench.unused_parts`): el modelo, el "
            "optimizador y el batch de cada run tal como lo define su experimento, un miembro, "
            "con datos sintéticos de la forma de su dataset; las dos versiones alternadas, "
            f"{b['rounds']} rondas; medianas, y entre paréntesis los cuartiles del cociente ronda "
            "a ronda. La última columna dice si la primera época da los mismos números.\n\n"
            + markdown(["Run", "Deja fuera", "Todas las partes (s)", "Solo las usadas (s)",
                        "Cociente", "Mismos números"], rows, numeric=(2, 3)))


KINDS = {"epoch_vs_floor": epoch_floor, "epoch_profile": epoch_profile, "sweep": sweep,
         "whole_sweep": whole_sweep, "keras_parity": keras_parity, "roofline": roofline,
         "step_options": step_options, "schedule": schedule, "merge_probe": merge_probe,
         "load": load, "unused_parts": unused_parts, "observer_cost": observer_cost,
         "refit": refit}


def measured_on(stem: str, b: dict, experiments: Path) -> str:
    """The record's date: its own `created`, else the date of the commit that last wrote it."""
    if b.get("created"):
        return b["created"][:10]
    try:
        out = subprocess.run(["git", "log", "-1", "--format=%cs", "--",
                              f"bench/{stem}.json"], cwd=experiments, capture_output=True,
                             text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out = ""
    return f"{out} (fecha del commit que lo escribió)" if out else "sin fecha"


def platform(b: dict) -> str:
    return b.get("environment", {}).get("platform", "—")


def title(b: dict) -> str:
    """A reader's heading for a record (its file is named under it)."""
    kind = b.get("benchmark")
    if kind == "whole_sweep":
        cache = {"cold": ", caché de compilación en frío",
                 "warm": ", caché de compilación en caliente"}.get(b.get("compile_cache"), "")
        label = f": {b['label']}" if b.get("label") else ""
        n = b.get("processes", 1)
        procs = f", {n} procesos" if n > 1 else ""
        return f"Barrido completo de {b['experiment'].upper()}{cache}{procs}{label}"
    return {"epoch_vs_floor": "Una época frente al mínimo de la máquina, y frente a Keras 3",
            "epoch_profile": "Dónde va el tiempo de una época",
            "sweep": "Varios runs en un programa: coste por run",
            "keras_parity": f"Paridad con Keras 3 en {b.get('epochs', '?')} épocas",
            "roofline": "Techo de la GPU y cuánto de él se usa",
            "step_options": "Opciones de compilación del paso",
            "schedule": "Pasos en serie de un barrido",
            "load": "Carga de los datos: float32 en el host o píxeles al dispositivo",
            "merge_probe": "Varios grupos en un bucle sobre los batches",
            "unused_parts": "Solo lo que el modelo usa: dropout y L2",
            "observer_cost": "El hilo escritor: checkpoints, historias y TensorBoard",
            "refit": "Entrenar otra vez en el mismo proceso"}.get(
                kind, str(kind))


# What the speed issue asks for, on one GPU: (experiment, compilation cache, seconds at most).
# The measured value and its verdict come from the newest record in force that measures it.
SWEEP_GOALS = [("ta8", "cold", 30.0), ("ta8", "warm", 15.0), ("p8d", "cold", 5.0),
               ("p8d", "warm", 5.0)]
KERAS_GOAL = 1.5        # Keras 3 fit's epoch / ours, at batch 64 and 128, on the CPU
FLOOR_GOAL = 1.2        # our epoch / the machine's matmul floor, batch 128, on the CPU


def in_force(benches: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
    """The records no newer one replaces (no `superseded` field)."""
    return [(stem, b) for stem, b in benches if not b.get("superseded")]


def newest(benches: list[tuple[str, dict]], experiments: Path, match, replaced: bool = False):
    """(date, stem, record) of the newest record in force (with `replaced`, of any record) that
    `match`es, or None. Records of one day are ordered by their full `created` time."""
    found = [(measured_on(stem, b, experiments)[:10], stem, b)
             for stem, b in (benches if replaced else in_force(benches)) if match(b)]
    return max(found, key=recency) if found else None


def recency(hit) -> tuple:
    """How `newest` orders its (date, stem, record): date, then the full `created`, then name."""
    date, stem, b = hit
    return date, b.get("created", ""), stem


def host(b: dict) -> str:
    """The machine a record names (`environment.device`)."""
    return b.get("environment", {}).get("device", "—")


def newest_per_host(benches, experiments: Path, match) -> list:
    """`newest` for each machine that has a matching record in force, newest first: a goal on
    "the CPU" is measured on whichever host a session draws, and one host's number does not
    stand for another's."""
    hosts = {host(b) for _, b in in_force(benches) if match(b)}
    hits = [newest(benches, experiments, lambda b, h=h: match(b) and host(b) == h)
            for h in hosts]
    return sorted(hits, key=recency, reverse=True)


def keras_on_cpu(b: dict) -> bool:
    """An epoch_vs_floor record on the CPU with Keras timed beside ours."""
    return (b.get("benchmark") == "epoch_vs_floor" and platform(b) == "cpu"
            and any("keras" in r for r in b.get("rows", [])))


def goals(benches: list[tuple[str, dict]], experiments: Path) -> list[list[str]]:
    """The goals table: goal, target, measured value, which record, verdict; the CPU goals once
    per host with a record in force (`cpu_goals`)."""
    rows = []
    for experiment, cache, limit in SWEEP_GOALS:
        hit = sweep_goal_record(benches, experiments, experiment, cache)
        seconds = hit and (hit[2].get("process_wall_time_s") or hit[2]["wall_time_s"])
        shown = seconds and (f"{num(seconds)}\u00a0s" + (
            "" if hit[2].get("process_wall_time_s") else " (solo el entrenamiento)"))
        label = (f"{experiment.upper()} entero en una GPU, "
                 f"{'en frío' if cache == 'cold' else 'en caliente'} (proceso entero)")
        rows.append(goal_row(label, f"≤\u00a0{num(limit)}\u00a0s", shown, hit,
                             seconds and seconds <= limit))
    for cpu in newest_per_host(benches, experiments, keras_on_cpu) or [None]:
        rows += cpu_goals(cpu)
    return rows


def sweep_goal_record(benches, experiments: Path, experiment: str, cache: str):
    """`newest`'s hit for a GPU sweep goal: the newest whole-sweep GPU record in force of
    `experiment` with that compilation cache ('cold' or 'warm'), or None."""
    return newest(benches, experiments,
                  lambda b: b.get("benchmark") == "whole_sweep" and platform(b) == "gpu"
                  and b.get("experiment") == experiment and b.get("compile_cache") == cache
                  # a labelled record is another configuration (XLA flags, say), shown in its
                  # own section; the goal is judged on what the command does as it is
                  and not b.get("label"))


def cpu_goals(cpu) -> list[list[str]]:
    """The CPU goals' rows for one host's newest side-by-side record (None: unmeasured)."""
    by_batch = {r["batch"]: r for r in cpu[2]["rows"]} if cpu else {}
    rows = []
    for batch in (64, 128):
        keras = by_batch.get(batch, {}).get("keras")
        ratios = keras and round_ratios(cpu[2], by_batch[batch]["epochs_s"],
                                        keras.get("epochs_s"))
        shown, met = keras and f"×{keras['speedup']:.2f}", keras and keras["speedup"] >= KERAS_GOAL
        if ratios:  # met only if three rounds in four reach the goal (see the page's note)
            q1, _, q3 = quartiles(ratios)
            shown += f" (por ronda, cuartiles ×{q1:.2f}–×{q3:.2f})"
            met = met and q1 >= KERAS_GOAL
        rows.append(goal_row(f"CPU: Keras 3 `fit` / jaxmlp, batch {batch} (mismo proceso)",
                             f"≥\u00a0×{KERAS_GOAL}", shown, cpu, met))
    ratio = by_batch.get(128, {}).get("ratio")
    rows.append(goal_row("CPU: época / mínimo de la máquina, batch 128",
                         f"≤\u00a0{FLOOR_GOAL:.2f}", ratio and f"{ratio:.3f}", cpu,
                         ratio and ratio <= FLOOR_GOAL))
    return rows


def goal_row(label, target, value, hit, met) -> list[str]:
    """One row of the goals table; `hit` is `newest`'s (date, stem, record) or None."""
    if hit is None or value is None:
        return [label, target, "sin medir", "—", "sin medir"]
    return [label, target, value, where(*hit), "cumplido" if met else "**no**"]


def where(date, stem, b) -> str:
    """A goal's record: its file, machine, date and code."""
    code = f", código `{b['code']}`" if b.get("code") else ""
    return f"`{stem}` ({machine(host(b))}, {date}{code})"


def floor_gap(benches: list[tuple[str, dict]], experiments: Path) -> str | None:
    """Where the CPU floor goal stands against what it leaves room for: the epoch it allows at
    batch 128 (newest CPU epoch_vs_floor record in force), and what the epoch's matrix products
    and weight update alone took in the newest CPU profile in force on the same host. None when
    the goal is met or either record is missing."""
    def at_128(kind, on=None):
        hit = newest(benches, experiments,
                     lambda b: b.get("benchmark") == kind and platform(b) == "cpu"
                     and on in (None, host(b)))
        row = hit and next((r for r in hit[2].get("rows", []) if r.get("batch") == 128), None)
        return (hit[1], row, host(hit[2])) if row else (None, None, None)

    floor_stem, f, host_of = at_128("epoch_vs_floor")
    profile_stem, p, _ = at_128("epoch_profile", on=host_of)
    if not f or not p or f["ratio"] <= FLOOR_GOAL:
        return None
    matmul = p["categories_s"].get("matmul", 0.0)
    update = p["categories_s"].get("parameter-sized update", 0.0)
    return (f"Época / mínimo ≤\u00a0{FLOOR_GOAL:.2f} con batch 128 deja una época de "
            f"{FLOOR_GOAL * f['floor_s']:.3f}\u00a0s como mucho ({FLOOR_GOAL:.2f} × el mínimo de "
            f"{f['floor_s']:.3f}\u00a0s, `{floor_stem}`, en {machine(host_of)}; la época "
            "medida: "
            f"{f['epoch_s']:.3f}\u00a0s). En la traza de `{profile_stem}` (una época de "
            f"{p['epoch_s']:.2f}\u00a0s con el perfilador), los productos de matrices suman "
            f"{matmul:.3f}\u00a0s, {matmul / f['floor_s']:.2f} veces el mínimo, y la "
            f"actualización de los pesos (Adam), {update:.3f}\u00a0s: las dos juntas, "
            f"{(matmul + update) / f['floor_s']:.2f} veces el mínimo, sin contar nada más de la "
            "época." + (
                " Con los productos a ese ritmo y esa actualización, la meta no se alcanzaría "
                "aunque todo lo demás de la época no tardara nada; pedirla es pedir productos "
                "más rápidos que la medida de `matmul` o una actualización de los pesos más "
                "barata que la de esta traza."
                if matmul + update > FLOOR_GOAL * f["floor_s"] else ""))


def gpu_gap(benches: list[tuple[str, dict]], experiments: Path) -> str | None:
    """What each GPU sweep goal leaves once the process has started and loaded its data (as the
    goal's record measured them), and for TA8 warm, what the measured train step predicts: a
    step's cost a + b x members fitted through the GPU roofline's epoch rows (the same card as
    the sweep), applied to the schedule's sequential and vmapped member steps, beside the
    training the sweep measured; and the weight updates' memory traffic against the time left.
    None when no GPU sweep goal has a record that says where its time went."""
    rows, left = [], {}
    for experiment, cache, limit in SWEEP_GOALS:
        hit = sweep_goal_record(benches, experiments, experiment, cache)
        b = hit and hit[2]
        split = (b or {}).get("time_split_s", {})
        if not b or not b.get("process_wall_time_s") or not b.get("since_start_s") \
                or "load" not in split:
            continue
        outside = b["process_wall_time_s"] - b["since_start_s"]
        rest = limit - outside - split["load"]
        left[experiment, cache] = (rest, hit)
        # arranque + salida where the record measured the exit (`bench.whole_sweeps`)
        parts = (f" ({num(outside - b['process_exit_s'], '.1f')} + "
                 f"{num(b['process_exit_s'], '.1f')})"
                 if "process_exit_s" in b else "")
        rows.append([f"{experiment.upper()} {'en frío' if cache == 'cold' else 'en caliente'}, "
                     f"≤\u00a0{num(limit)}\u00a0s", breakable(hit[1]),
                     f"{num(outside, '.1f')}{parts}",
                     num(split['load'], '.1f'), num(rest, '.1f'),
                     f"{num(split.get('compile_wait', 0.0), '.1f')} / "
                     f"{num(split.get('train', 0.0), '.1f')}"])
    if not rows:
        return None
    text = ("Lo que deja cada meta de GPU una vez arrancado el proceso y cargados los datos, "
            "según lo que midió su registro: antes de la primera carga y después del último "
            "registro (arranque de Python, importaciones, salida; entre paréntesis, arranque + "
            "salida, donde el registro midió la salida), la carga, y lo que queda para "
            "compilar, entrenar, evaluar y escribir; al lado, lo que ese registro midió de "
            "espera de compilación y de entrenamiento.\n\n"
            + markdown(["Meta", "Registro", "Fuera del barrido (s)", "Carga (s)", "Queda (s)",
                        "Compilación / entrenamiento medidos (s)"], rows, numeric=range(2, 6)))
    if any(rest <= 0 for rest, _ in left.values()):
        text += ("\nDonde lo que queda es cero o menos, la meta ya se ha pasado antes de "
                 "compilar nada.\n")
    return text + step_model(benches, experiments, left.get(("ta8", "warm")))


def step_model(benches, experiments: Path, warm) -> str:
    """The TA8 warm paragraph of `gpu_gap` ('' without its three records). `warm`: (seconds
    left under the goal, `newest` hit of the goal's sweep record) or None."""
    if warm is None:
        return ""
    rest, (_, sweep_stem, sweep) = warm
    card = host(sweep)
    roof = newest(benches, experiments,
                  lambda b: b.get("benchmark") == "roofline" and host(b) == card
                  and len({r["members"] for r in b.get("epoch", [])}) >= 2)
    sched = newest(benches, experiments, lambda b: b.get("benchmark") == "schedule"
                   and any(e["experiment"] == "ta8" and "vmapped_member_steps" in e
                           for e in b.get("experiments", [])))
    if roof is None or sched is None:
        return ""
    r = roof[2]
    few, many = min(r["epoch"], key=lambda e: e["members"]), max(r["epoch"],
                                                                key=lambda e: e["members"])
    steps = -(-r["n_train"] // r["batch"])
    per_member = (many["epoch_s"] - few["epoch_s"]) / steps / (many["members"] - few["members"])
    fixed = few["epoch_s"] / steps - per_member * few["members"]
    e = next(e for e in sched[2]["experiments"] if e["experiment"] == "ta8")
    serial, member_steps = e["sequential_steps"], e["vmapped_member_steps"]
    merged = e["sequential_steps_one_program_per_batch_and_budget"]
    tb = e["vmapped_update_bytes"] / 1e12
    text = (f"\nEl paso de entrenamiento en {machine(card)}, de `{roof[1]}` (una época del modelo "
            f"combinado de TA8, {num(steps)} pasos de batch {r['batch']}: "
            f"{few['epoch_s']:.4f}\u00a0s "
            f"con {few['members']} miembros y {many['epoch_s']:.4f}\u00a0s con "
            f"{many['members']}), cuesta {num(fixed * 1e6)}\u00a0µs fijos más "
            f"{num(per_member * 1e6, '.1f')}\u00a0µs por miembro (la recta que pasa por esas dos "
            f"épocas). Con los {num(serial)} pasos en serie del barrido y los {num(member_steps)} "
            f"pasos que calculan sus miembros vectorizados (`{sched[1]}`, de los resultados "
            f"guardados), con ese coste para todos los grupos, eso son "
            f"{num(fixed * serial, '.1f')}\u00a0s + "
            f"{num(per_member * member_steps, '.1f')}\u00a0s = "
            f"{num(fixed * serial + per_member * member_steps, '.1f')}\u00a0s de "
            f"entrenamiento; `{sweep_stem}` midió "
            f"{num(sweep['time_split_s'].get('train', 0.0), '.1f')}\u00a0s. Con un programa por "
            "batch y "
            f"presupuesto de épocas ({num(merged)} pasos en serie), la parte fija sería "
            f"{num(fixed * merged, '.1f')}\u00a0s y la de los miembros no cambiaría. La "
            "actualización de "
            "los pesos lee pesos, gradiente y momentos y los vuelve a escribir en cada paso "
            "(en float32, 28 bytes por parámetro con Adam o AdamW, 20 con RMSprop o SGD con "
            f"momento): {num(tb, '.1f')}\u00a0TB en todo el barrido si no se quedan en la caché")
    if rest <= 0:
        return text + ", y la meta no deja tiempo para ellos.\n"
    text += (f"; hacerlo en los {num(rest, '.1f')}\u00a0s que deja la meta pide "
             f"{num(tb / rest, '.1f')}\u00a0TB/s sostenidos, sin contar nada más")
    if r.get("bandwidth_gbs"):
        text += (f" (el ancho de banda medido en esta GPU, `{roof[1]}`: "
                 f"{num(r['bandwidth_gbs'] / 1e3, '.1f')}\u00a0TB/s; a ese ritmo, "
                 f"{num(tb * 1e3 / r['bandwidth_gbs'], '.1f')}\u00a0s)")
    return text + ".\n"


def gpu_status(benches: list[tuple[str, dict]], experiments: Path) -> str:
    gpu = [(stem, b) for stem, b in in_force(benches) if platform(b) == "gpu"]
    if not gpu:
        return ("**Sin mediciones de GPU**: ninguna sesión con GPU ha medido todavía el código "
                "actual; las cifras de GPU faltan en vez de mostrarse otras antiguas.")
    dates = sorted({measured_on(stem, b, experiments)[:10] for stem, b in gpu})
    codes = sorted({b["code"] for _, b in gpu if b.get("code")})
    code = (f", con el código {', '.join(f'`{c}`' for c in codes)}" if codes else "")
    return (f"Las mediciones de GPU ({len(gpu)} archivos) son de {', '.join(dates)}{code}: lo "
            "que haya cambiado después no está medido en GPU. Cada sección dice con qué código "
            "y en qué máquina se tomó.")


def parity_table(experiments: Path) -> str | None:
    """jaxmlp.bench.parity_table's Markdown table (JAX-free), when that module exists and
    there are Keras parity records under experiments/bench/parity."""
    try:
        module = importlib.import_module("jaxmlp.bench.parity_table")
    except ImportError:
        return None
    rows = module.rows(experiments)
    if not rows:
        return None
    compared = [r for r in rows if "diff" in r and r["status"] == "compared"]
    pending = [r for r in rows if "diff" in r and r["status"] != "compared"]
    if not compared and not pending:
        return None
    out = [[f"{r['experiment']} / {r['run']}", pm(r["ours"]["test_accuracy"], fmt=".2f"),
            pm(r["keras"]["test_accuracy"], fmt=".2f"), f"{100 * r['diff']:+.2f}",
            f"{100 * r['tolerance']:.2f}", "dentro" if r["within"] else "**fuera**"]
           for r in compared]
    out += [[f"{r['experiment']} / {r['run']}", pm(r["ours"]["test_accuracy"], fmt=".2f"),
             f"{100 * r['keras']['test_accuracy']['mean']:.2f} "
             f"(n = {r['keras']['test_accuracy']['n']})", "—", "—",
             f"pendiente: {r['keras']['test_accuracy']['n']} de {r['keras_needed']} semillas "
             "de Keras"] for r in pending]
    text = (markdown(["Run", "jaxmlp test (%)", "Keras 3 test (%)", "Δ (pp)", "Tolerancia (pp)",
                      "Veredicto"], out, numeric=(1, 2, 3, 4))
            + f"\n{len(compared)} de {len(rows)} runs tienen ya su réplica completa en Keras 3 "
            "(`python -m jaxmlp.bench.keras_parity`); la tolerancia es el mayor de 1 pp y dos "
            "desviaciones estándar combinadas.")
    alone = [f"{r['experiment']} / {r['run']}" for r in rows
             if r["status"].startswith("ours, no Keras equivalent")]
    if alone:
        text += (" Sin equivalente en Keras, por ser una composición nuestra del coseno y la "
                 "meseta: " + ", ".join(alone) + ".")
    text += "\n"
    stops = [r for r in compared if r.get("epochs")]
    if stops:
        def mean_of(side):
            ep = side["epochs"]
            return f"{num(np.mean(ep), '.1f')} ({min(ep)}–{max(ep)}; n = {len(ep)})"
        table = [[f"{r['experiment']} / {r['run']}", mean_of(r["ours"]), mean_of(r["keras"]),
                  f"{r['epochs']['diff']:+.1f}", num(r['epochs']['tolerance'], '.1f'),
                  "dentro" if r["epochs"]["within"] else "**fuera**"] for r in stops]
        text += ("\nDónde paró EarlyStopping (épocas entrenadas, media y rango entre semillas), "
                 "con la misma tolerancia en épocas (el mayor de 1 y dos desviaciones "
                 "combinadas):\n\n"
                 + markdown(["Run", "jaxmlp", "Keras 3", "Δ (épocas)", "Tolerancia",
                             "Veredicto"], table, numeric=(3, 4)))
    cuts = [r for r in compared if r.get("cuts")]
    if cuts:
        def spread(values):
            return f"{num(np.mean(values), '.1f')} ({min(values)}–{max(values)})"

        def verdict(c):
            mark = "" if c["within"] else " **fuera**"
            return f"{c['diff']:+.1f} ({num(c['tolerance'], '.1f')}){mark}"
        table = []
        for r in cuts:
            name = f"{r['experiment']} / {r['run']}"
            table += [[name, "1.er recorte (época)", spread(r["cuts"]["first_ours"]),
                       spread(r["cuts"]["first_keras"]), verdict(r["cuts"]["first"])],
                      [name, "recortes", spread([len(c) for c in r["ours"]["cuts"]]),
                       spread([len(c) for c in r["keras"]["cuts"]]), verdict(r["cuts"]["count"])]]
        text += ("\nReduceLROnPlateau: la época de su primer recorte y cuántos recortes hizo "
                 "(media y rango entre semillas; Δ con su tolerancia entre paréntesis, la misma "
                 "regla):\n\n"
                 + markdown(["Run", "Medida", "jaxmlp", "Keras 3", "Δ (tolerancia)"], table,
                            numeric=(4,)))
    outside = [f"{r['experiment']} / {r['run']}" for r in compared
               if not r["within"] or not r.get("epochs", {"within": True})["within"]
               or (r.get("cuts") and not (r["cuts"]["first"]["within"]
                                          and r["cuts"]["count"]["within"]))]
    if outside:
        text += ("\n**Fuera de la tolerancia, sin explicación todavía:** " + ", ".join(outside)
                 + ".\n")
    return text


def note(text: str) -> str:
    """A record's own note (English, as the session that measured wrote it), collapsed under
    a Spanish title so the page reads in Spanish and the note stays at hand."""
    body = "\n".join(("    " + line) if line.strip() else "" for line in text.splitlines())
    return f'\n??? note "Nota del registro (en inglés)"\n\n{body}\n'


def distinct_titles(sections: list[dict]) -> None:
    """Give the sections that share a heading the first of their machine, date, code that
    tells them apart (the page's table of contents lists the headings)."""
    by_title: dict[str, list[dict]] = {}
    for s in sections:
        by_title.setdefault(s["title"], []).append(s)
    for same in by_title.values():
        if len(same) < 2:
            continue
        tags = []
        for s in same:  # each its own shortest tag that no other section of the title shares
            for keys in (("host",), ("host", "date"), ("host", "date", "code"),
                         ("host", "date", "code", "file")):
                if all(tag(o, keys) != tag(s, keys) for o in same if o is not s):
                    break
            tags.append(tag(s, keys))
        for s, t in zip(same, tags):
            s["title"] += f" — {t}"


def tag(s: dict, keys: tuple[str, ...]) -> str:
    """What tells a section apart, in words: its machine, date, code or file."""
    words = {"host": lambda: machine(s["host"]) if s["host"] != "—" else "sin máquina",
             "date": lambda: s["date"][:10], "code": lambda: f"código {s['code'] or '—'}",
             "file": lambda: s["file"]}
    return ", ".join(words[k]() for k in keys)


IN_FORCE = re.compile(r"en vigor es `([^`/]+)\.json`(?: \(([^)]*)\))?")


def now_in_force(superseded: str | None, benches: list[tuple[str, dict]],
                 experiments: Path) -> str:
    """For a replaced record whose reason names the record in force («… en vigor es
    `x.json` …»): a sentence when that record has since been replaced too, or measured again
    with other code than the reason says; '' otherwise. The reason is the record's own text
    and stays as it was written."""
    m = IN_FORCE.search(superseded or "")
    by_stem = dict(benches)
    if not m or m.group(1) not in by_stem:
        return ""
    named, seen = m.group(1), set()
    current = named
    while by_stem[current].get("superseded") and current not in seen:
        seen.add(current)
        nxt = IN_FORCE.search(by_stem[current]["superseded"])
        if not nxt or nxt.group(1) not in by_stem:
            break
        current = nxt.group(1)
    b = by_stem[current]
    when = f"{measured_on(current, b, experiments)[:10]}" + (
        f", código `{b['code']}`" if b.get("code") else "")
    if current != named:
        still = "" if not b.get("superseded") else " (también reemplazado)"
        return (f"`{named}.json` se reemplazó a su vez: hoy está en vigor "
                f"`{current}.json`{still} ({when}).")
    said = re.search(r"código (\w+)", m.group(2) or "")
    if said and b.get("code") and not b["code"].startswith(said.group(1)):
        return (f"`{named}.json` se ha vuelto a medir desde entonces: hoy es del {when}.")
    return ""


ORDER = ["whole_sweep", "load", "observer_cost", "refit", "schedule", "roofline", "step_options",
         "epoch_vs_floor", "unused_parts", "epoch_profile", "sweep", "keras_parity"]


def context(benches: list[tuple[str, dict]], experiments: Path) -> dict:
    known = [(stem, b) for stem, b in benches if b.get("benchmark") in KINDS]
    known.sort(key=lambda sb: (ORDER.index(sb[1]["benchmark"]) if sb[1]["benchmark"] in ORDER
                               else len(ORDER), sb[0]))

    def section(stem, b):
        if b["benchmark"] == "roofline" and not b.get("superseded"):
            text = roofline(b, benches, experiments)
        else:
            text = KINDS[b["benchmark"]](b)
        text += against_one_process(b, benches, experiments)
        if b.get("superseded"):
            text += placed_on_roofline(stem, benches)
        if b.get("note"):
            text += note(b["note"])
        date, code, machine = measured_on(stem, b, experiments), b.get("code"), device(b)
        where = (f"Máquina: {machine}. Medido: {date}" if machine is not None
                 else f"Contado el {date}")  # a record that measured nothing on a machine
        return {"file": stem, "title": title(b), "device": machine, "code": code,
                "date": date, "superseded": b.get("superseded"), "text": text,
                "host": host(b), "now": now_in_force(b.get("superseded"), benches, experiments),
                "provenance": where + (f", código `{code}`." if code else ".")}
    # A schedule record measures nothing on any machine; it explains the GPU's sweep times.
    groups = [{"name": name, "sections": [section(stem, b) for stem, b in in_force(known)
                                          if (platform(b) == "gpu"
                                              or b["benchmark"] == "schedule")
                                          == (name == "GPU")]}
              for name in ("GPU", "CPU")]
    distinct_titles([s for g in groups for s in g["sections"]])
    earlier = [section(stem, b) for stem, b in known if b.get("superseded")]
    for s in earlier:  # a collapsed entry's title: what, on which machine, when, which code
        s["title"] += (f" — {short_machine(s['host'])}" if s["host"] != "—" else "") + (
            f", {s['date'][:10]}" + (f", código `{s['code']}`" if s["code"] else ""))
    # The landing page's Keras card: the newest side-by-side CPU comparison in force on each
    # host, so that the headline range covers every machine that measured it.
    hosts = []
    for date, stem, b in newest_per_host(benches, experiments, keras_on_cpu):
        version = next(r["keras"].get("keras", "3") for r in b["rows"] if "keras" in r)
        rows = [{"batch": r["batch"], "jaxmlp_epoch_s": r["epoch_s"],
                 "keras_epoch_s": r["keras"]["epoch_s"], "speedup": r["keras"]["speedup"]}
                for r in sorted(b["rows"], key=lambda r: r["batch"]) if "keras" in r]
        sentence = "; ".join(
            f"batch {r['batch']}, {r['jaxmlp_epoch_s']:.2f} s con `jaxmlp` y "
            f"{r['keras_epoch_s']:.2f} s con Keras {version} `fit` (×{r['speedup']:.2f})"
            for r in rows)
        hosts.append({"device": device(b), "machine": machine(host(b)), "date": date,
                      "code": b.get("code"), "file": stem, "version": version, "rows": rows,
                      "sentence": sentence})
    speedups = [r["speedup"] for h in hosts for r in h["rows"]]
    keras = hosts and {"hosts": hosts, "low": min(speedups), "high": max(speedups)}
    return {"groups": [g for g in groups if g["sections"]],
            "earlier": earlier,
            "goals_table": markdown(["Objetivo", "Meta", "Medido", "Registro", "Estado"],
                                    goals(benches, experiments)),
            "parity": parity_table(experiments),
            "gpu": gpu_status(benches, experiments),
            "floor_gap": floor_gap(benches, experiments),
            "gpu_gap": gpu_gap(benches, experiments),
            "keras": keras}
