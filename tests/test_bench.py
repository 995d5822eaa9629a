"""jaxmlp.bench: the Keras twin of a run, the parity plan and records, and the JAX-free table.

Keras tests run on tiny synthetic data and skip when Keras (the `bench` extra) is absent.
"""

import dataclasses
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys

import numpy as np
import pytest
from conftest import tiny_data, tiny_run

from jaxmlp import config as C
from jaxmlp import data as D
from jaxmlp.bench import epoch_floor, keras_parity, keras_replica, parity_table, sweep
from jaxmlp.experiments import p8d, ta8
from jaxmlp.records import count_params

os.environ.setdefault("KERAS_BACKEND", "jax")  # before any Keras import
needs_keras = pytest.mark.skipif(importlib.util.find_spec("keras") is None,
                                 reason="Keras is the optional `bench` extra")


def tiny_dataset(n_train=180, n_val=20):
    """A Dataset whose train + val rejoined (200) split at floor(200 * 0.9) = 180: the tail."""
    d = tiny_data(n_train=n_train, n_val=n_val)
    return D.Dataset(*(np.asarray(a) for a in d), num_classes=4, identity={"name": "tiny"})


# --- the plan: every run of both experiments -------------------------------------------------

def test_plan_covers_every_run_with_enough_seeds():
    todo = {(e.name, r.name): (r, seeds, skip) for e, r, seeds, skip in keras_parity.plan(
        ["p8d", "ta8"])}
    assert set(todo) == {("p8d", r.name) for r in p8d.RUNS} | {("ta8", r.name)
                                                                for r in ta8.EXPERIMENT.runs}
    exps = {"p8d": p8d.EXPERIMENT, "ta8": ta8.EXPERIMENT}
    for (exp, name), (run, seeds, skip) in todo.items():
        noisy = run.hooks.early_stopping is not None or run.hooks.reduce_lr is not None
        ours = exps[exp].more_seeds.get(name, exps[exp].seeds)
        # 5 for noisy runs, else 3, and never fewer than our own seeds of the run.
        assert seeds == max(5 if noisy else 3, ours), name
        assert run.model.input_dim == C.INPUT_DIMS[run.train.dataset]
        # Only our scaled composition lacks a Keras equivalent.
        assert (skip is not None) == (name == "con_callbacks_escalado"), name


def test_plan_order_is_p8d_then_ta8_callback_runs_first():
    names = [f"{e.name}/{r.name}" for e, r, _, _ in keras_parity.plan(["p8d", "ta8"])]
    assert names[:7] == [f"p8d/{r.name}" for r in p8d.RUNS]
    assert names[7:12] == [f"ta8/{n}" for n in keras_parity.PRIORITY]


def test_same_config_reuses_an_earlier_identical_run(tmp_path):
    runs = {r.name: keras_parity.as_trained(r) for r in ta8.EXPERIMENT.runs}
    path = keras_parity.record_path(tmp_path, "ta8", "combined", 1)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"run": "combined", "seed": 1}))
    twin = keras_parity.same_config(ta8.EXPERIMENT, runs["opt_adam"], 1, tmp_path)
    assert twin == {"run": "opt_adam", "seed": 1, "label": runs["opt_adam"].label,
                    "same_config_as": "combined"}
    assert keras_parity.same_config(ta8.EXPERIMENT, runs["batch_32"], 1, tmp_path) is None
    assert keras_parity.same_config(ta8.EXPERIMENT, runs["opt_adam"], 0, tmp_path) is None


def test_epoch_floor_benchmarks_ta8s_own_combined_run():
    run = epoch_floor.combined_run(64, epochs=3)
    (combined,) = [r for r in ta8.PART1 if r.name == "combined"]
    assert run.model == C.ModelConfig(**{**C.to_dict(combined.model), "input_dim": 3072})
    assert (run.optim, run.train.batch_size, run.train.epochs) == (combined.optim, 64, 3)


@pytest.mark.skipif(__import__("jax").default_backend() != "cpu", reason="the CPU's first layer")
def test_epoch_floor_times_each_cpu_choice_undone_beside_ours():
    """The befores of models.data_matmul and of masks drawn ahead, each a row of its own. A
    model built inside plain_first_layer() keeps the plain product (no barrier in its program)
    after the context ends; ours has the barrier."""
    import jax

    from jaxmlp import epoch, models
    from jaxmlp.group import build_group, init_group

    out = epoch_floor.bench([64], repeats=2, n=256)
    [row] = out["rows"]
    for name in ("plain_first_layer", "masks_in_step"):
        p = row[name]
        assert len(row["epochs_s"]) == len(p["epochs_s"]) == 2
        assert p["speedup"] == p["epoch_s"] / row["epoch_s"]
    assert "keras" not in row
    assert models.first_layer_dot is not jax.lax.dot_general  # restored
    assert epoch.masks_ahead_default() is True  # restored

    data = epoch_floor.synthetic_cifar(128)
    with epoch_floor.plain_first_layer():
        plain = build_group([epoch_floor.combined_run(64)], data)
    ours = build_group([epoch_floor.combined_run(64)], data)
    lowered = {name: g.step.lower(init_group(g), data).as_text()
               for name, g in (("plain", plain), ("ours", ours))}
    assert "optimization_barrier" in lowered["ours"]
    assert "optimization_barrier" not in lowered["plain"]


def test_keras_arrays_rejoin_so_the_tail_split_matches():
    x, y = keras_parity.keras_arrays(tiny_dataset(), 0.1)
    assert x.shape == (200, 12) and y.shape == (200,)
    with pytest.raises(ValueError, match="cut"):
        keras_parity.keras_arrays(tiny_dataset(n_train=179, n_val=21), 0.1)


def test_cosine_is_the_seeds_formula():
    f = keras_replica.cosine(C.CosineSchedule(initial_lr=1e-3, period=10, min_lr=0.0))
    # 1e-3/2 (1 + cos(pi e/10)): e=0 -> 1e-3, e=5 -> 5e-4, e=10 -> 0, e=20 -> 1e-3 (periodic).
    np.testing.assert_allclose([f(0, 9.0), f(5, 9.0), f(10, 9.0), f(20, 9.0)],
                               [1e-3, 5e-4, 0.0, 1e-3], atol=1e-12)
    held = keras_replica.cosine(C.CosineSchedule(1e-3, period=10, min_lr=1e-6, hold=True))
    assert held(20, 0.0) == pytest.approx(1e-6)


def test_plateau_cuts_are_epochs_whose_lr_went_down():
    assert keras_parity.plateau_cuts([1e-3, 1e-3, 5e-4, 0.0], [1e-3, 5e-4, 5e-4, 0.0]) == [1]


# --- the Keras twin ---------------------------------------------------------------------------

@needs_keras
@pytest.mark.parametrize("model", [p8d.MODEL, ta8.COMBINED], ids=["p8d", "ta8_combined"])
def test_keras_model_has_jaxmlp_parameter_counts(model):
    net = keras_replica.model(model)
    ours = count_params(model)
    assert net.count_params() == ours["total"]
    assert sum(int(np.prod(w.shape)) for w in net.trainable_weights) == ours["trainable"]


@needs_keras
def test_keras_layers_follow_the_spec():
    import keras

    net = keras_replica.model(dataclasses.replace(ta8.COMBINED, input_dim=3072))
    dense = [layer for layer in net.layers if isinstance(layer, keras.layers.Dense)]
    norms = [layer for layer in net.layers if isinstance(layer, keras.layers.BatchNormalization)]
    drops = [layer.rate for layer in net.layers if isinstance(layer, keras.layers.Dropout)]
    for layer in dense[:-1]:
        assert type(layer.kernel_initializer).__name__ == "HeNormal"
        assert layer.kernel_regularizer.l2 == pytest.approx(1e-4)
    out = dense[-1]  # Keras's Dense(10, softmax) defaults, as the seed wrote it
    assert type(out.kernel_initializer).__name__ == "GlorotUniform"
    assert out.kernel_regularizer is None
    assert [(n.momentum, n.epsilon) for n in norms] == [(0.99, 1e-3)] * 3
    assert drops == pytest.approx([0.3, 0.3, 0.2])


@needs_keras
@pytest.mark.parametrize("optim,kind", [
    (C.OptimConfig("adam", 2e-3), "Adam"), (C.OptimConfig("adamw", weight_decay=1e-4), "AdamW"),
    (C.OptimConfig("sgd", momentum=0.9, nesterov=True), "SGD"),
    (C.OptimConfig("rmsprop", rho=0.8), "RMSprop")])
def test_keras_optimizer_takes_the_configs_arguments(optim, kind):
    opt = keras_replica.optimizer(optim)
    assert type(opt).__name__ == kind
    assert float(opt.learning_rate) == pytest.approx(optim.learning_rate)
    if kind == "SGD":
        assert (opt.momentum, opt.nesterov) == (0.9, True)
    if kind == "RMSprop":
        assert opt.rho == pytest.approx(0.8)
    if kind == "AdamW":
        assert opt.weight_decay == pytest.approx(1e-4)


@needs_keras
def test_keras_trace_scheduler_overwrites_plateau_cuts():
    """Keras 3 with LearningRateScheduler + ReduceLROnPlateau over 12 epochs, hand-traced.

    min_delta=10 makes every epoch after the first a non-improvement (epoch 0 beats best=inf),
    so with patience=1 the plateau halves the LR at the end of every epoch e >= 1, unless the
    LR is already at min_lr=0 (e = 8, where the cosine of period 8 is 0). The scheduler then
    sets cosine(e) at the next epoch's start: every epoch trains with the bare cosine.
    """
    cos = C.CosineSchedule(initial_lr=1e-2, period=8)
    hooks = C.HooksConfig(schedule=cos, reduce_lr=C.ReduceLROnPlateau(
        factor=0.5, patience=1, min_delta=10.0))
    rec = keras_parity.train(tiny_run(epochs=12, hooks=hooks), 0, tiny_dataset())
    lr = [1e-2 / 2 * (1 + math.cos(math.pi * e / 8)) for e in range(12)]
    h = rec["history"]
    np.testing.assert_allclose(h["learning_rate"], lr, rtol=1e-6, atol=1e-12)
    after = [lr[0]] + [v * 0.5 for v in lr[1:]]
    np.testing.assert_allclose(h["lr_after_epoch"], after, rtol=1e-6, atol=1e-12)
    assert rec["plateau_cuts"] == [1, 2, 3, 4, 5, 6, 7, 9, 10, 11]
    assert rec["keras_callbacks"] == ["ReduceLROnPlateau", "LearningRateScheduler"]
    assert rec["epochs_run"] == 12 and rec["stopped_epoch"] is None


@needs_keras
def test_keras_record_early_stopping_epoch_and_restore():
    # min_delta=10: epoch 0 improves on best=None, epoch 1 does not; patience=1 and epoch > 0,
    # so Keras stops at the end of epoch 1 (stopped_epoch=1, 2 epochs run), best epoch 0.
    hooks = C.HooksConfig(early_stopping=C.EarlyStopping(
        patience=1, min_delta=10.0, restore_best_weights=True),
        checkpoint=C.ModelCheckpoint("val_accuracy"))
    rec = keras_parity.train(tiny_run(epochs=6, hooks=hooks, batch_norm=True, dropout=0.2,
                                      l2=1e-3), 0, tiny_dataset())
    assert (rec["stopped_early"], rec["stopped_epoch"], rec["epochs_run"]) == (True, 1, 2)
    assert rec["es_best_epoch"] == 0 and rec["restored_best"] is True
    assert rec["plateau_cuts"] == [] and len(rec["history"]["val_loss"]) == 2
    assert 0.0 <= rec["test"]["accuracy"] <= 1.0


# --- the comparison, JAX-free -----------------------------------------------------------------

def _config(**hooks):
    return {"model": {"hidden": [8]}, "optim": {"name": "adam"},
            "train": {"epochs": 4, "seed": 0},
            "hooks": {"early_stopping": None, "reduce_lr": None, "schedule": None,
                      "lr_composition": "keras", **hooks}}


def _write(tmp_path, runs, keras):
    exp = tmp_path / "toy"
    (exp / "histories").mkdir(parents=True)
    doc = {"runs": []}
    for name, cfg, accs in runs:
        seeds = []
        for k, a in enumerate(accs):
            csv_path = f"histories/{name}{k}.csv"
            (exp / csv_path).write_text(
                "epoch,learning_rate\n0,0.001\n1,0.001\n2,0.0005\n3,0.0005\n")
            seeds.append({"seed": k, "test": {"accuracy": a}, "epochs_run": 4,
                          "stopped_early": False, "lr_reductions": 2, "final_lr": 0.00025,
                          "history_csv": csv_path})
        doc["runs"].append({"name": name, "config": cfg, "seeds": seeds})
    (exp / "results.json").write_text(json.dumps(doc))
    for name, cfg, accs in keras:
        for k, a in enumerate(accs):
            rec = {"run": name, "seed": k, "config": {**cfg, "train": {"epochs": 4, "seed": k}},
                   "test": {"accuracy": a}, "epochs_run": 3, "stopped_early": True,
                   "plateau_cuts": [0], "lr_reductions": 1}
            path = keras_parity.record_path(tmp_path / "bench" / "parity", "toy", name, k)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(rec))


def test_parity_rows_tolerance_verdict_stops_and_cuts(tmp_path):
    plateau = _config(reduce_lr={"factor": 0.5})
    scaled = _config(reduce_lr={}, schedule={}, lr_composition="scale")
    _write(tmp_path, [("near", plateau, [0.80, 0.82, 0.84]), ("far", _config(), [0.80, 0.82, 0.84]),
                      ("ours_only", scaled, [0.8]), ("missing", _config(), [0.8]),
                      ("other_def", _config(), [0.8, 0.8]), ("few", plateau, [0.8, 0.8, 0.8])],
           [("near", plateau, [0.79, 0.80, 0.81, 0.79, 0.81]),
            ("far", _config(), [0.70, 0.71, 0.72]),
            ("other_def", _config(early_stopping={}), [0.8, 0.8]),
            ("few", plateau, [0.8, 0.8, 0.8])])
    rows = {r["run"]: r for r in parity_table.rows(tmp_path, experiments=("toy",))}
    near, far = rows["near"], rows["far"]
    # ours: mean .82, std .02 (n 3); Keras (5 seeds: a plateau run needs 5): mean .80, std .01.
    # pooled = sqrt((2*.02^2 + 4*.01^2)/6) = sqrt(.0002) = .014142; tolerance
    # = max(.01, 2 * .014142) = .028284; |diff| .02: within.
    assert near["diff"] == pytest.approx(0.02)
    assert near["pooled_std"] == pytest.approx(math.sqrt(0.0002))
    assert near["tolerance"] == pytest.approx(2 * math.sqrt(0.0002))
    assert near["within"] is True and near["status"] == "compared"
    # Keras mean .71, std .01: pooled .015811 again, tolerance .031623 < |diff| .11: beyond.
    assert far["diff"] == pytest.approx(0.11) and far["within"] is False
    # Our LR column 1e-3, 1e-3, 5e-4, 5e-4 then final 2.5e-4: cuts at the end of epochs 1 and 3.
    assert near["ours"]["cuts"] == [[1, 3]] * 3 and near["keras"]["cuts"] == [[0]] * 5
    assert near["ours"]["epochs"] == [4] * 3 and near["keras"]["epochs"] == [3] * 5
    assert rows["few"]["status"] == "incomplete: 3 of 5 Keras seeds"
    assert rows["ours_only"]["status"] == "ours, no Keras equivalent"
    assert rows["missing"]["status"] == "no Keras records yet"
    assert rows["other_def"]["status"].startswith("configs differ")
    table = parity_table.markdown(list(rows.values()))
    assert table.count("\n") == 2 + len(rows)
    assert "| toy | far |" in table and "**fuera**" in table
    assert "2,4 · 2,4 · 2,4" in table  # our cuts, 1-based as Keras prints epochs
    cov = parity_table.coverage(list(rows.values()))["toy"]
    assert cov == {"runs": 6, "within": ["near", "other_def"], "beyond": ["far"],
                   "configs_differ": ["other_def"],
                   "not_compared": {"ours_only": "ours, no Keras equivalent",
                                    "missing": "no Keras records yet", "few": "incomplete"}}
    assert "3 of 6 runs compared, 2 within" in parity_table.coverage_text(list(rows.values()))


def test_parity_table_imports_no_jax():
    # jaxmlp/__init__ (the public API) imports the engine; a bare package stands in for it, so
    # that only the imports of parity_table and what it uses (records, config) count.
    folder = os.path.dirname(os.path.dirname(os.path.dirname(parity_table.__file__)))
    code = ("import sys, types; p = types.ModuleType('jaxmlp'); "
            f"p.__path__ = [{os.path.join(folder, 'jaxmlp')!r}]; sys.modules['jaxmlp'] = p; "
            "import jaxmlp.bench.parity_table; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'jax', 'jaxlib', 'flax', 'optax', 'keras'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_stop_epochs_compared_within_two_pooled_stds():
    # No spread on either side: pooled std 0, so the tolerance is the 1-epoch floor; 6 > 1.
    flat = parity_table.compare_epochs([10, 10, 10], [4, 4, 4])
    assert (flat["diff"], flat["tolerance"], flat["within"]) == (6.0, 1.0, False)
    # Sample variances 2 and 2: pooled sqrt((1*2 + 1*2) / 2) = sqrt(2); tol 2 sqrt(2) > |-1|.
    noisy = parity_table.compare_epochs([10, 12], [11, 13])
    assert noisy["diff"] == -1.0 and noisy["within"] is True
    assert noisy["tolerance"] == pytest.approx(2 * math.sqrt(2))


def test_epoch_times_runs_a_group_of_the_given_runs(data):
    times = epoch_floor.epoch_times([tiny_run(), tiny_run("b", lr=1e-3)], data, repeats=2)
    assert len(times) == 2


@pytest.mark.parametrize("hidden,members,batch", [((16, 8), 1, 32), ((16, 8), 2, 64),
                                                   ((3, 3, 3), 1, 48), ((5,), 3, 200)])
def test_epoch_flops_are_the_products_the_traced_epoch_runs(data, hidden, members, batch):
    """The floor's count: forward, weight gradients, input gradients of every layer but the
    first (data), evaluation. A single member, groups, a deep and a shallow model, a remainder
    batch, and one batch of the whole training set."""
    import jax

    from jaxmlp.bench import dot_flops
    from jaxmlp.group import build_group, init_group

    runs = [tiny_run(f"r{i}", hidden=hidden, batch_size=batch, seed=i) for i in range(members)]
    group = build_group(runs, data)
    traced = dot_flops(jax.make_jaxpr(group.step)(init_group(group), data).jaxpr)
    cfg = runs[0].model
    widths = (12, *hidden, 4)
    w = sum(a * b for a, b in zip(widths, widths[1:]))
    by_hand = (2 * w + 2 * w + 2 * (w - 12 * widths[1])) * 200 + 2 * w * 40  # 200 train, 40 val
    assert traced == members * by_hand == members * epoch_floor.epoch_flops(cfg, 200, 40)
    assert epoch_floor.epoch_flops(cfg, 200, 40) < 6 * w * 200 + 2 * w * 40  # not 6w


def test_dot_flops_counts_scans_the_costlier_branch_no_dead_product_and_refuses_a_while():
    import jax
    import jax.numpy as jnp

    from jaxmlp.bench import dot_flops

    a, b = jnp.ones((4, 3)), jnp.ones((3, 5))  # one product: 2 * 4 * 5 * 3 = 120 FLOPs

    def scanned(a, b):
        return jax.lax.scan(lambda c, _: (c, c @ b), a, None, length=7)[1]

    def branches(p, a, b):
        return jax.lax.cond(p, lambda: (a @ b) @ b.T, lambda: jnp.zeros((4, 3)))

    def dead(a, b):
        unused = (a @ b) @ b.T  # noqa: F841 (traced, never used: XLA drops it)
        return a @ b

    def looped(a, b):
        return jax.lax.while_loop(lambda c: c.sum() < 0, lambda c: (c @ b) @ b.T, a)

    assert dot_flops(jax.make_jaxpr(jnp.matmul)(a, b).jaxpr) == 120
    assert dot_flops(jax.make_jaxpr(jax.jit(scanned))(a, b).jaxpr) == 7 * 120
    assert dot_flops(jax.make_jaxpr(branches)(True, a, b).jaxpr) == 120 + 2 * 4 * 3 * 5
    assert dot_flops(jax.make_jaxpr(dead)(a, b).jaxpr) == 120
    with pytest.raises(ValueError, match="while loop"):
        dot_flops(jax.make_jaxpr(looped)(a, b).jaxpr)


def test_whole_sweep_reads_a_complete_invocation(tmp_path):
    doc = {"experiment": "toy", "command": "python -m x", "created": "t", "environment": {},
           "dataset": {"name": "toy", "n_train": 10},
           "settings": {"this_invocation": {"complete": True, "groups_total": 2,
                                            "wall_time_s": 12.5}},
           "runs": [{"seeds": [{"epochs_run": 3}, {"epochs_run": 4}]},
                    {"seeds": [{"epochs_run": 5}]}]}
    path = tmp_path / "results.json"
    path.write_text(json.dumps(doc))
    out = sweep.whole_sweep(path)
    assert (out["runs"], out["members"], out["epochs"], out["groups"]) == (2, 3, 12, 2)
    assert "processes" not in out and "cores_per_process" not in out
    assert "observers_first" not in out  # an invocation before the writer thread's priorities
    doc["settings"]["this_invocation"].update(processes=2, cores_per_process=1,
                                              observers_first=True)
    path.write_text(json.dumps(doc))
    out = sweep.whole_sweep(path)
    assert (out["processes"], out["cores_per_process"], out["observers_first"]) == (2, 1, True)
    doc["settings"]["this_invocation"]["complete"] = False
    path.write_text(json.dumps(doc))
    with pytest.raises(SystemExit, match="not one complete"):
        sweep.whole_sweep(path)


def _ours_and_kerass_val_loss(out_scale: float = 1.0, output_clip: float = 0.0):
    """Keras `evaluate` and jaxmlp's validation loss on identical weights (the output kernel
    multiplied by `out_scale`: large values saturate the softmax)."""
    import jax

    from jaxmlp import epoch, models

    cfg = C.ModelConfig(hidden=(16, 8), batch_norm=True, dropout=0.3, l2=1e-2, input_dim=12,
                        num_classes=4, kernel_init="he_normal", output_clip=output_clip)
    params, stats = models.build(cfg).init(jax.random.key(3))
    params["out"]["kernel"] = params["out"]["kernel"] * out_scale
    rng = np.random.default_rng(0)
    for i, width in enumerate(cfg.hidden):  # non-trivial BatchNorm state on both sides
        stats[f"norm_{i}"] = {"mean": rng.normal(size=width).astype(np.float32),
                              "var": rng.uniform(0.5, 2.0, width).astype(np.float32)}
        params[f"norm_{i}"] = {"scale": rng.uniform(0.5, 1.5, width).astype(np.float32),
                               "bias": rng.normal(size=width).astype(np.float32)}
    net = keras_replica.compiled(C.RunConfig("t", model=cfg))
    weights = []
    for i in range(len(cfg.hidden)):
        d, n, s = params[f"dense_{i}"], params[f"norm_{i}"], stats[f"norm_{i}"]
        weights += [d["kernel"], d["bias"], n["scale"], n["bias"], s["mean"], s["var"]]
    weights += [params["out"]["kernel"], params["out"]["bias"]]
    net.set_weights([np.asarray(w) for w in weights])
    d = tiny_data()
    theirs = net.evaluate(d.x_val, d.y_val, verbose=0, return_dict=True)
    loss, acc = epoch.evaluate(models.build(cfg), params, stats, models.l2_coefs(cfg),
                               d.x_val, d.y_val)
    return (float(loss), float(acc)), (theirs["loss"], theirs["accuracy"])


@needs_keras
def test_val_loss_is_kerass_on_the_same_weights():
    """Keras `evaluate` and jaxmlp's validation loss on identical weights: cross-entropy plus the
    L2 term of the hidden kernels, BatchNorm from its moving statistics (epsilon 1e-3). The L2
    term here is about 1e-2 * (192 * 2/12 + 128 * 2/16) ~ 0.5 next to a cross-entropy ~ 1.4,
    so leaving it out on either side fails. Nothing saturates here, so the exact loss and
    Keras's clipped one agree."""
    (loss, acc), (k_loss, k_acc) = _ours_and_kerass_val_loss()
    np.testing.assert_allclose(loss, k_loss, rtol=1e-5)
    np.testing.assert_allclose(acc, k_acc, rtol=1e-6)


@needs_keras
def test_saturated_val_loss_is_kerass_only_with_output_clip():
    """With a saturated softmax, Keras's loss caps each example at -log(1e-7): ours equals it
    with output_clip=1e-7 and is larger without (what makes val_loss, and so EarlyStopping,
    differ on BatchNorm models whose moving statistics drift)."""
    (clipped, _), (k_loss, _) = _ours_and_kerass_val_loss(200.0, output_clip=1e-7)
    (exact, _), _ = _ours_and_kerass_val_loss(200.0)
    np.testing.assert_allclose(clipped, k_loss, rtol=1e-4)
    assert exact > k_loss + 1.0



# --- epoch_profile: categories read from real compiled HLO and a real profiler trace ---------

def test_epoch_profile_puts_real_hlo_instructions_in_categories(tmp_path):
    import jax
    import jax.numpy as jnp

    from jaxmlp.bench import epoch_profile as EP

    def step(w, m, x, idx):
        xb = x[idx]  # the batch gather
        g = xb.T @ jnp.tanh(xb @ w)  # matmuls, a batch-sized activation
        m = 0.9 * m + 0.1 * g  # a weight-sized update
        return w - 0.01 * m / (jnp.sqrt(m * m) + 1e-7), m, jnp.sum(g, axis=0)

    w, m = jnp.ones((32, 32)), jnp.zeros((32, 32))
    x, idx = jnp.ones((500, 32)), jnp.arange(16)
    f = jax.jit(step)
    ins = EP.hlo_instructions(f.lower(w, m, x, idx).compile().as_text())
    cats = {EP.category(i, {(32, 32)}, 16) for i in ins.values()}
    assert {"matmul", "parameter-sized update", "batch gather"} <= cats
    assert cats <= set(EP.CATEGORIES)
    f(w, m, x, idx)
    times, wall = EP.trace_ops(f, w, m, x, idx, directory=str(tmp_path))
    traced = [k for k in times if k in ins]
    assert traced and wall > 0
    assert any(EP.category(ins[k], {(32, 32)}, 16) == "matmul" for k in traced)
    # The real epoch's masks drawn ahead: steps x batch x units, booleans.
    masks = EP.hlo_instructions(jax.jit(lambda k: jax.random.bernoulli(k, 0.5, (4, 16, 32)))
                                .lower(jax.random.key(0)).compile().as_text())
    assert "dropout masks ahead" in {EP.category(i, set(), 16) for i in masks.values()}
    assert "dropout masks ahead" not in {EP.category(i, set(), 4) for i in masks.values()}


def test_plateau_cuts_compare_first_cut_and_count_by_hand():
    """First cut over the seeds that cut (1-based), and the count of cuts, each against
    max(1, 2 x pooled std). Ours first cuts 5, 6 vs Keras 10, 8: diff -3.5, pooled std
    sqrt((0.5 + 2) / 2) = 1.118, tolerance 2.236: outside. Counts 2, 1, 0 vs 1, 2: diff -0.5,
    pooled sqrt((2 * 1 + 1 * 0.5) / 3) = 0.913, tolerance 1.826: within."""
    out = parity_table.compare_cuts([[4, 10], [5], []], [[9], [7, 12]])
    assert out["first_ours"] == [5, 6] and out["first_keras"] == [10, 8]
    assert out["first"]["diff"] == pytest.approx(-3.5)
    assert out["first"]["tolerance"] == pytest.approx(2 * math.sqrt(1.25))
    assert not out["first"]["within"]
    assert out["count"]["diff"] == pytest.approx(-0.5)
    assert out["count"]["tolerance"] == pytest.approx(2 * math.sqrt(2.5 / 3))
    assert out["count"]["within"]
    assert parity_table.compare_cuts([[3], None], [[4]]) is None  # a history missing
    assert parity_table.compare_cuts([[], []], [[4]]) is None  # no cut on one side


# --- step_options and the roofline's rows from it ----------------------------------------------

def test_step_options_times_each_variant_in_its_own_process_and_records_failures(tmp_path):
    from jaxmlp.bench import step_options

    with pytest.raises(SystemExit, match="NAME:UNROLL:XLA_FLAGS"):
        step_options.parse_variant("unroll_zero:0:")
    out = tmp_path / "so.json"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        [sys.executable, "-m", "jaxmlp.bench.step_options", "--members", "2", "--n-train", "256",
         "--variant", "plain:1:", "--variant", "unrolled:2:",
         "--variant", "bad:1:--xla_no_such_flag_exists=1", "--json", str(out)],
        env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = {v["name"]: v for v in json.loads(out.read_text())["variants"]}
    for name, unroll in (("plain", 1), ("unrolled", 2)):
        r = rows[name]
        assert r["unroll"] == unroll and r["compile_s"] > 0 and len(r["epoch_times_s"]) == 3
        assert r["epoch_s"] == sorted(r["epoch_times_s"])[1]  # the median of 3
        assert math.isclose(r["step_us"], r["epoch_s"] / (256 / 64) * 1e6)
    assert "error" in rows["bad"] and "compile_s" not in rows["bad"]  # said, not a crash
    assert "bad" in proc.stdout and "ERROR" in proc.stdout


def test_step_options_interleaved_compares_bit_for_bit_and_alternates_rounds(tmp_path, capsys):
    from jaxmlp.bench import step_options

    assert step_options.compile_options(
        "--xla_a=true --xla_b=512 --xla_c=X_DOT,X_REDUCE --xla_d=False") == {
        "xla_a": True, "xla_b": 512, "xla_c": "X_DOT,X_REDUCE", "xla_d": False}
    with pytest.raises(SystemExit, match="--name=value"):
        step_options.compile_options("--xla_flag_without_value")
    with pytest.raises(SystemExit, match="--rounds 0: must be at least 1"):
        step_options.main(["--rounds", "0"])
    out = tmp_path / "so.json"
    assert step_options.main([
        "--members", "1", "--batch", "64", "--n-train", "256", "--rounds", "4",
        "--variant", "default:1:", "--variant", "unrolled:2:",
        "--variant", "regions:1:--xla_cpu_copy_insertion_use_region_analysis=true",
        "--variant", "unknown:1:--xla_no_such_option_exists=1", "--json", str(out),
        "--note", "tests running"]) == 0
    record = json.loads(out.read_text())
    assert record["note"] == "tests running"
    assert record["rounds"] == 4 and record["repeats"] == 1 and record["batch"] == 64
    rows = {v["name"]: v for v in record["variants"]}
    assert "No such compile option" in rows["unknown"]["error"]
    for name in ("default", "unrolled", "regions"):
        r = rows[name]
        assert len(r["epoch_times_s"]) == 4 and r["compile_s"] > 0
        assert r["epoch_s"] == np.median(r["epoch_times_s"]) and r["equal_to"] == "default"
        assert math.isclose(r["step_us"], r["epoch_s"] / (256 / 64) * 1e6)
    assert rows["default"]["equal"]
    # copies placed otherwise: the same arithmetic, so the same bits
    assert rows["regions"]["equal"]
    printed = capsys.readouterr().out
    assert "unknown" in printed and "ERROR" in printed and "bit for bit = default" in printed


def test_step_options_interleaved_sees_a_variant_that_changes_the_numbers(tmp_path):
    """The bit-for-bit column can say no: a model with another L2 coefficient is no variant of
    the same computation, and the comparison must catch it."""
    from jaxmlp.bench import epoch_floor as ef
    from jaxmlp.bench import step_options

    real = ef.combined_run
    calls = []

    def varied(batch, epochs=1000):
        run = real(batch, epochs)
        calls.append(run)
        if len(calls) == 2:  # the second variant's group
            run = dataclasses.replace(run, model=dataclasses.replace(run.model, l2=0.5))
        return run

    import unittest.mock as mock

    variants = [step_options.parse_variant("a:1:"), step_options.parse_variant("b:1:")]
    with mock.patch.object(ef, "combined_run", varied):
        rows = step_options.interleaved(variants, 1, 64, 256, 1)
    assert rows[0]["equal"] and not rows[1]["equal"]


def test_roofline_epoch_row_from_a_step_options_record(tmp_path):
    peak = {"benchmark": "roofline", "peak_tflops": {"float32_training_precision": 100.0},
            "environment": {"device": "Toy"}, "epoch": [{"members": 1, "epoch_s": 9.0}],
            "created": "2000-01-01T00:00:00Z"}
    probe = {"members": 4, "n_train": 6400, "batch": 64,
             "variants": [{"name": "default", "unroll": 1, "xla_flags": "", "epoch_s": 0.5},
                          {"name": "other", "unroll": 1, "xla_flags": "", "epoch_s": 0.1}]}
    (tmp_path / "peak.json").write_text(json.dumps(peak))
    (tmp_path / "probe.json").write_text(json.dumps(probe))
    from jaxmlp.bench import roofline

    assert roofline.main(["--peak-from", str(tmp_path / "peak.json"), "--members",
                          "--epoch-from", str(tmp_path / "probe.json"),
                          "--json", str(tmp_path / "out.json")]) == 0
    out = json.loads((tmp_path / "out.json").read_text())
    w = 3072 * 256 + 256 * 128 + 128 * 64 + 64 * 10  # TA8's combined model's dense weights
    # 4 members, 6,400 trained (no gradient with respect to the data), 1,000 evaluated.
    flops = 4 * ((6 * w - 2 * 3072 * 256) * 6400 + 2 * w * 1000)
    [row] = out["epoch"]  # the earlier record's rows (older code) are replaced
    assert row["members"] == 4 and row["epoch_s"] == 0.5
    assert math.isclose(row["tflops"], flops / 0.5 / 1e12)
    assert math.isclose(row["percent_of_peak"], flops / 0.5 / 1e12)  # of 100 TFLOP/s
    assert out["created"] != peak["created"]
    assert out["flop_count"] == epoch_floor.FLOP_COUNT


def test_roofline_measures_memory_bandwidth_and_refuses_a_negative_stream(tmp_path, capsys):
    from jaxmlp.bench import roofline

    out = tmp_path / "roof.json"
    assert roofline.main(["--size", "64", "--stream", "4096", "--members",
                          "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["bandwidth_elements"] == 4096 and 0 < r["bandwidth_gbs"] < math.inf
    assert "memory bandwidth (triad over 2 x 4,096 float32)" in capsys.readouterr().out
    assert roofline.main(["--size", "64", "--stream", "0", "--members",
                          "--json", str(out)]) == 0
    assert "bandwidth_gbs" not in json.loads(out.read_text())  # 0: not measured
    with pytest.raises(SystemExit) as e:  # refused before anything is timed
        roofline.main(["--stream", "-1", "--json", str(tmp_path / "no.json")])
    assert e.value.code == 2 and not (tmp_path / "no.json").exists()
    assert "--stream -1: allowed 0 (not measured) or a number of elements" in (
        capsys.readouterr().err)


def test_sweep_bench_times_group_and_solo_interleaved(tmp_path, capsys):
    out = tmp_path / "sweep.json"
    assert sweep.main(["--n", "200", "--members", "1", "--solo", "2", "--rounds", "2",
                       "--repeats", "1", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    g = r["group_vs_solo"]
    assert g["members"] == 2 and g["rounds"] == 2
    assert g["speedup"] == g["solo_epochs_s"] / g["group_epoch_s"] > 0
    assert [row["members"] for row in r["scaling"]] == [1] and "keras" not in r
    with pytest.raises(SystemExit) as e:
        sweep.main(["--rounds", "0"])
    assert e.value.code == 2 and "--rounds must be at least 1, got 0" in capsys.readouterr().err


def test_sweep_record_shows_its_command_without_the_note_and_output_path():
    from jaxmlp.bench import sweep

    assert sweep.command(["--members", "1", "2", "--note", "quiet machine", "--json", "o.json",
                          "--keras", "--note=x", "--json=y"]) == (
        "python -m jaxmlp.bench.sweep --members 1 2 --keras")


def test_epoch_floor_prints_the_ratio_round_by_round_only_for_alternating_rounds():
    record = {"repeats": 1}
    # Rounds: 1.2, 1.3, 1.1, 1.3 -> median 1.25, quartiles 1.175 and 1.3.
    ours, other = [1.0, 2.0, 1.0, 1.0], [1.2, 2.6, 1.1, 1.3]
    assert epoch_floor.per_round(record, ours, other) == (
        "; per round: median 1.25 (quartiles 1.18-1.30)")
    assert epoch_floor.per_round({"repeats": 3}, ours, other) == ""  # blocks, not rounds
    assert epoch_floor.per_round(record, ours[:3], other[:3]) == ""  # too few rounds


def test_whole_sweeps_times_each_experiment_cold_then_warm_and_writes_both_records(tmp_path,
                                                                                  capsys):
    from jaxmlp.bench import whole_sweeps

    records = tmp_path / "records"
    code = whole_sweeps.main(["--data-dir", str(tmp_path / "none"), "--work",
                              str(tmp_path / "work"), "--records", str(records),
                              "--experiments", "p8d", "--tag", "toy", "--code", "abc1234",
                              "--note", "a note", "--", "--quick", "--quiet"])
    assert code == 0
    cold = json.loads((records / "p8d_sweep_toy.json").read_text())
    warm = json.loads((records / "p8d_sweep_toy_warm.json").read_text())
    assert (cold["compile_cache"], warm["compile_cache"]) == ("cold", "warm")
    assert "--retrain" in warm["command"] and "--retrain" not in cold["command"]
    for r in (cold, warm):  # the process timed from outside: at least the sweep inside it
        assert r["benchmark"] == "whole_sweep" and r["experiment"] == "p8d"
        assert r["process_wall_time_s"] >= r["wall_time_s"] > 0
        # its exit, from the results.json write to the process's end
        assert 0 <= r["process_exit_s"] < r["process_wall_time_s"] - r["wall_time_s"]
        assert (r["code"], r["note"]) == ("abc1234", "a note") and "label" not in r
    assert sorted(p.name for p in records.iterdir()) == ["p8d_sweep_toy.json",
                                                         "p8d_sweep_toy_warm.json"]


def test_whole_sweeps_past_its_deadline_writes_nothing_and_says_so(tmp_path, capsys):
    from jaxmlp.bench import whole_sweeps

    records = tmp_path / "records"
    code = whole_sweeps.main(["--data-dir", str(tmp_path), "--work", str(tmp_path / "work"),
                              "--records", str(records), "--experiments", "p8d",
                              "--deadline", "0.01", "--", "--quick", "--quiet"])
    out = capsys.readouterr().out
    assert code == 1 and list(records.iterdir()) == []
    # Stopped, or (on a loaded machine, past 0.01 s before it began) never started: either way
    # the command says so and writes nothing.
    assert ("p8d_sweep_gpu: stopped at the deadline; no record" in out
            or "p8d_sweep_gpu: not started, the deadline has passed" in out)
    assert "p8d_sweep_gpu_warm: not started" in out
    with pytest.raises(SystemExit):
        whole_sweeps.parse(["--data-dir", "d", "--work", "w", "--records", "r",
                            "--deadline", "0"])


# --- jaxmlp.bench.schedule: a sweep's sequential steps, from committed results ---------------

def _schedule_case():
    from jaxmlp import config as C
    from jaxmlp.experiments import cli

    def run(name, batch, epochs, lr=1e-3):
        return C.RunConfig(name, model=C.ModelConfig(hidden=(4,)),
                           optim=C.OptimConfig("adam", lr),
                           train=C.TrainConfig(epochs=epochs, batch_size=batch))
    # a and b share a program (they differ in a number only); c has another batch size, and d
    # another epoch budget: three programs, two of them with batch 10 and budget 6
    exp = cli.Experiment("toy", "Toy", "fashion_mnist",
                         (run("a", 10, 6), run("b", 10, 6, lr=1e-2), run("c", 25, 6),
                          run("d", 10, 9)), seeds=2, more_seeds={"d": 1})
    ran = {"a": [3, 6], "b": [5, 2], "c": [4, 4], "d": [7]}
    results = {"dataset": {"n_train": 100},
               "runs": [{"name": n, "seeds": [{"seed": s, "epochs_run": e}
                                              for s, e in enumerate(es)]}
                        for n, es in ran.items()]}
    return exp, results


def test_schedule_counts_each_groups_sequential_steps_and_what_a_mask_computes():
    from jaxmlp.bench import schedule

    exp, results = _schedule_case()
    s = schedule.schedule(exp, results)
    by_runs = {tuple(g["runs"]): g for g in s["groups"]}
    ab = by_runs["a", "b"]
    # 100 examples at batch 10: 10 steps an epoch; the longest member ran 6 epochs
    assert (ab["members"], ab["longest"], ab["sequential_steps"]) == (4, 6, 60)
    # members ran 3 + 6 + 5 + 2 = 16 epochs; vmapped, all four compute 6: 24 - 16 = 8 masked
    assert (ab["member_epochs"], ab["masked_member_epochs"]) == (16, 8)
    c = by_runs["c",]
    assert (c["steps_per_epoch"], c["sequential_steps"], c["masked_member_epochs"]) == (4, 16, 0)
    assert by_runs["d",]["sequential_steps"] == 70
    assert s["sequential_steps"] == 60 + 16 + 70
    # one program per (batch, budget): (10, 6), (25, 6), (10, 9) stay apart; nothing merges
    assert s["programs_one_per_batch_and_budget"] == 3
    assert s["sequential_steps_one_program_per_batch_and_budget"] == 146


def test_schedule_counts_the_steps_vmapped_members_compute_and_their_updates_bytes():
    from jaxmlp import config as C
    from jaxmlp.bench import schedule

    exp, results = _schedule_case()
    s = schedule.schedule(exp, results)
    by_runs = {tuple(g["runs"]): g for g in s["groups"]}
    # vmapped, each member computes its group's longest epochs: a, b: 4 members x 6 x 10
    # steps; c: 2 x 4 x 4; d: 1 x 7 x 10
    assert [by_runs[k]["vmapped_member_steps"] for k in (("a", "b"), ("c",), ("d",))] == [
        240, 32, 70]
    assert s["vmapped_member_steps"] == 342
    # Fashion-MNIST's 784 inputs, 4 hidden units, 10 classes, with biases; Adam: 28 bytes
    params = 784 * 4 + 4 + 4 * 10 + 10
    assert {g["trainable_params"] for g in s["groups"]} == {params}
    assert {g["update_bytes_per_param"] for g in s["groups"]} == {28}
    assert s["vmapped_update_bytes"] == 342 * params * 28
    # read weight, gradient and each state array, write the weight and each state array back
    per = schedule.update_bytes_per_param
    assert [per(C.OptimConfig(n)) for n in ("adam", "adamw", "rmsprop", "sgd")] == [
        28, 28, 20, 12]
    assert per(C.OptimConfig("sgd", momentum=0.9)) == 20


def test_schedule_merges_groups_of_one_batch_and_budget_and_refuses_missing_epochs(
        tmp_path, monkeypatch, capsys):
    import dataclasses

    from jaxmlp.bench import schedule

    exp, results = _schedule_case()
    # e: another model (wider), same batch and budget as a and b: its own program, which the
    # merged count folds into theirs
    from jaxmlp import config as C
    e = C.RunConfig("e", model=C.ModelConfig(hidden=(8,)), optim=C.OptimConfig("adam"),
                    train=C.TrainConfig(epochs=6, batch_size=10))
    exp = dataclasses.replace(exp, runs=exp.runs + (e,))
    results["runs"].append({"name": "e", "seeds": [{"seed": 0, "epochs_run": 2},
                                                   {"seed": 1, "epochs_run": 1}]})
    s = schedule.schedule(exp, results)
    assert len(s["groups"]) == 4 and s["sequential_steps"] == 60 + 16 + 70 + 20
    assert s["sequential_steps_one_program_per_batch_and_budget"] == 60 + 16 + 70

    results["runs"] = [r for r in results["runs"] if r["name"] != "c"]
    with pytest.raises(ValueError, match="no epochs for c seed 0, c seed 1"):
        schedule.schedule(exp, results)
    # the command: a missing results.json is one line on stderr and exit 2, nothing written
    out = tmp_path / "s.json"
    assert schedule.main(["--experiments", "ta8", "--results", str(tmp_path),
                          "--json", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot read ") and err.count("\n") == 1 and not out.exists()


@pytest.mark.parametrize("name", ["ta8", "p8d"])
def test_schedule_of_the_committed_results_covers_every_member_once(name):
    import importlib
    import json
    from pathlib import Path

    from jaxmlp.bench import schedule

    results = json.loads((Path(__file__).parents[1] / "experiments" / name /
                          "results.json").read_text())
    exp = importlib.import_module(f"jaxmlp.experiments.{name}").EXPERIMENT
    s = schedule.schedule(exp, results)
    seeds = [x for r in results["runs"] for x in r["seeds"]]
    assert sum(g["members"] for g in s["groups"]) == len(seeds)
    assert s["member_epochs"] == sum(x["epochs_run"] for x in seeds)
    assert sorted(n for g in s["groups"] for n in g["runs"]) == sorted(
        r["name"] for r in results["runs"])
    assert (s["sequential_steps_one_program_per_batch_and_budget"] <= s["sequential_steps"])


def test_the_committed_schedule_record_is_what_the_committed_results_give():
    import importlib
    import json
    from pathlib import Path

    from jaxmlp.bench import schedule

    root = Path(__file__).parents[1] / "experiments"
    record = json.loads((root / "bench" / "schedule.json").read_text())
    for e in record["experiments"]:
        results = json.loads((root / e["experiment"] / "results.json").read_text())
        exp = importlib.import_module(f"jaxmlp.experiments.{e['experiment']}").EXPERIMENT
        assert schedule.schedule(exp, results) == e, (
            f"experiments/bench/schedule.json is stale for {e['experiment']}: "
            "python -m jaxmlp.bench.schedule --json experiments/bench/schedule.json")


def test_observer_cost_writes_tensorboard_rows_both_ways_and_reads_them_back():
    from jaxmlp.bench import observer_cost

    got = observer_cost.tensorboard_cost(epochs=20, rounds=2)  # raises if a row is missing
    assert got["epochs"] == 20 and len(got["rounds_us"]) == 2
    # one event per folder and epoch is smaller on disk than one event per value
    assert got["bytes_per_epoch"] < got["per_value"]["bytes_per_epoch"]


def test_merge_probe_times_groups_apart_and_in_one_loop_with_the_same_numbers(tmp_path, capsys):
    from jaxmlp.bench import merge_probe

    out = tmp_path / "probe.json"
    assert merge_probe.main(["--n-train", "128", "--rounds", "2", "--max-groups", "2",
                             "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["benchmark"] == "merge_probe" and record["same_numbers"] is True
    assert [g["runs"] for g in record["groups"]] == [["baseline"], ["deep"]]  # TA8's first two
    assert record["steps_per_epoch"] == 2 and len(record["ratios"]) == 2
    assert record["apart_epoch_s"] == pytest.approx(sum(g["epoch_s"] for g in record["groups"]))
    assert "merged / apart" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # one group is no comparison
        merge_probe.main(["--n-train", "128", "--max-groups", "1"])
    with pytest.raises(SystemExit):  # P8D is one group
        merge_probe.main(["--experiment", "p8d", "--n-train", "128"])
    with pytest.raises(SystemExit):
        merge_probe.main(["--batch", "0"])


# --- jaxmlp.bench.load: the experiments' data load, host features or device pixels ---------

def test_load_bench_times_both_ways_in_fresh_processes_and_checks_same_arrays(tmp_path, capsys):
    from test_data import write_cifar10, write_fashion_mnist

    from jaxmlp.bench import load

    write_fashion_mnist(tmp_path / "data")
    write_cifar10(tmp_path / "data")
    out = tmp_path / "load.json"
    assert load.main(["--data-dir", str(tmp_path / "data"), "--rounds", "2",
                      "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["benchmark"] == "load" and r["rounds"] == 2
    assert [d["dataset"] for d in r["datasets"]] == ["fashion_mnist", "cifar10"]
    for d in r["datasets"]:
        for mode in ("features", "pixels"):
            assert len(d[mode]["wall_s"]) == 2 and all(t > 0 for t in d[mode]["wall_s"])
            assert d[mode]["median_wall_s"] == statistics.median(d[mode]["wall_s"])
        assert d["speedup"] == d["features"]["median_wall_s"] / d["pixels"]["median_wall_s"]
    assert "same arrays on the device" in capsys.readouterr().out
    # one process's view: both ways put the very same bytes on the device
    one = {m: load.one(str(tmp_path / "data"), "cifar10", m) for m in ("features", "pixels")}
    assert one["features"]["sha256"] == one["pixels"]["sha256"]
    with pytest.raises(SystemExit):
        load.main(["--data-dir", str(tmp_path), "--rounds", "0"])
    # a missing dataset: the child's error, exit 1, nothing written
    assert load.main(["--data-dir", str(tmp_path / "none"), "--rounds", "1",
                      "--json", str(tmp_path / "no.json")]) == 1
    assert "failed" in capsys.readouterr().err and not (tmp_path / "no.json").exists()


def test_unused_parts_bench_times_both_programs_and_compares_their_numbers(tmp_path, capsys):
    from jaxmlp.bench import unused_parts

    out = tmp_path / "parts.json"
    assert unused_parts.main(["--runs", "p8d:sin_callbacks", "ta8:l2", "--n-train", "300",
                              "--rounds", "3", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["benchmark"] == "unused_parts" and r["rounds"] == 3
    p8d, l2 = r["runs"]
    # P8D's model drops units in its first layer only and has no L2 term; TA8's l2 run the
    # reverse: what each leaves out is what its experiment defines.
    assert p8d["uses"] == {"dropout": [True, False], "l2": False}
    assert l2["uses"] == {"dropout": [False, False, False], "l2": True}
    assert (p8d["input_dim"], l2["input_dim"]) == (784, 3072)
    assert (p8d["batch"], l2["batch"]) == (128, 64) and p8d["n_train"] == 300
    for row in r["runs"]:
        assert [len(row["epoch_s"][k]) for k in ("used", "every")] == [3, 3]
        assert row["ratio_by_round"] == [u / e for u, e in zip(row["epoch_s"]["used"],
                                                               row["epoch_s"]["every"])]
        assert row["ratio"] == statistics.median(row["ratio_by_round"])
        assert 0 <= row["max_rel_difference"] < 1e-4
    printed = capsys.readouterr().out
    assert "leaves out: dropout 2, L2" in printed
    assert "leaves out: dropout 1, dropout 2, dropout 3)" in printed
    # the largest relative difference of two pytrees, 0 only when equal bit for bit
    a = {"w": np.array([1.0, 2.0], np.float32)}
    assert unused_parts.difference(a, a) == 0.0
    assert unused_parts.difference({"w": np.array([1.0, 2.2])}, a) == pytest.approx(0.1, 1e-6)
    # refused before anything is timed, nothing written: a run that uses every part (nothing
    # to leave out), an unknown run or experiment, no rounds
    for bad in (["--runs", "ta8:combined"], ["--runs", "ta8:nope"], ["--runs", "x:y"]):
        assert unused_parts.main([*bad, "--json", str(tmp_path / "no.json")]) == 2
    err = capsys.readouterr().err
    assert "combined uses every part" in err and "no run 'nope'" in err
    assert "no experiment 'x'" in err and not (tmp_path / "no.json").exists()
    with pytest.raises(SystemExit):
        unused_parts.main(["--rounds", "0"])


def test_refit_summary_takes_medians_over_processes_and_refuses_zero_fits(capsys):
    from jaxmlp.bench import refit

    rounds = [[(9.0, 21), (1.0, 19), (0.5, 17)], [(7.0, 21), (0.25, 19), (0.25, 17)],
              [(8.0, 21), (0.5, 19), (0.5, 17)]]
    got = refit.summary(rounds)
    assert got["first_fit_s"] == 8.0 and got["later_fit_s"] == 0.5  # medians of 0.75, 0.25, 0.5
    assert got["total_s"] == 9.0  # of 10.5, 7.5 and 9.0
    assert got["epochs"] == [21, 19, 17] and got["rounds_s"][1] == [7.0, 0.25, 0.25]
    assert refit.summary([[(3.0, 5)]])["later_fit_s"] is None
    many = refit.summary([[(4.0, [21, 19])], [(5.0, [21, 19])], [(3.0, [21, 19])]])
    assert many == {"first_fit_s": None, "later_fit_s": None, "total_s": 4.0,
                    "epochs": [21, 19], "rounds_s": [4.0, 5.0, 3.0]}
    with pytest.raises(SystemExit) as err:
        refit.main(["--fits", "0"])
    assert err.value.code == 2 and "--fits 0" in capsys.readouterr().err


def test_benchmarks_that_time_compiles_start_their_children_without_a_compile_cache():
    from jaxmlp.bench import CACHE_VARIABLES, without_compile_cache

    env = {name: "/somewhere" for name in CACHE_VARIABLES} | {"PATH": "/bin", "XLA_FLAGS": "-x"}
    assert without_compile_cache(env, JAX_PLATFORMS="cpu") == {
        "PATH": "/bin", "XLA_FLAGS": "-x", "JAX_PLATFORMS": "cpu"}
    # This test run sets a shared cache (conftest): the children would have loaded from it.
    assert os.environ["JAXMLP_COMPILE_CACHE"] and os.environ["JAX_COMPILATION_CACHE_DIR"]
    assert not set(CACHE_VARIABLES) & set(without_compile_cache())
