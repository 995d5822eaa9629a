"""The engine (epoch, group, fit_run): learning, determinism, no recompilation, partial batches,
restored weights, devices."""

import dataclasses
import json
import logging
import sys
import textwrap
from pathlib import Path

import conftest
import jax
import numpy as np
import pytest
from conftest import tiny_data, tiny_run

from jaxmlp import config as C
from jaxmlp import models
from jaxmlp.epoch import evaluate
from jaxmlp.group import build_group, init_group
from jaxmlp.loop import fit_run

ROOT = Path(__file__).resolve().parents[1]


def test_fit_learns_and_returns_a_keras_history(data):
    _, hist, scores = fit_run(tiny_run(epochs=8, lr=3e-2), data)
    assert hist["epoch"] == list(range(8))
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate",
                "epoch_time_s"):
        assert len(hist[key]) == 8
    assert hist["loss"][-1] < hist["loss"][0]
    assert hist["val_accuracy"][-1] > hist["val_accuracy"][0]
    assert scores["test"][1] > 0.5  # 4 classes: chance is 0.25
    assert set(scores) == {"train", "val", "test"}


def test_same_seed_gives_an_identical_history_and_parameters(data):
    run = tiny_run(epochs=3, batch_norm=True, dropout=0.2, l2=1e-3)
    s1, h1, _ = fit_run(run, data)
    s2, h2, _ = fit_run(run, data)
    h1.pop("epoch_time_s"), h2.pop("epoch_time_s")
    assert h1 == h2
    for a, b in zip(jax.tree.leaves(s1.params), jax.tree.leaves(s2.params)):
        np.testing.assert_array_equal(a, b)
    _, h3, _ = fit_run(tiny_run(epochs=3, batch_norm=True, dropout=0.2, l2=1e-3, seed=1), data)
    assert h3["loss"] != h1["loss"]


def test_no_recompilation_after_the_first_epoch(data, caplog):
    group = build_group([tiny_run(epochs=10, dropout=0.1)], data)
    state = init_group(group)
    state, _ = group.step(state, data)  # first epoch compiles
    with jax.log_compiles(True), caplog.at_level(logging.WARNING):
        for _ in range(3):
            state, _ = group.step(state, data)
        jax.block_until_ready(state)
    compiles = [r.getMessage() for r in caplog.records if "Compiling" in r.getMessage()]
    assert compiles == []
    assert group.step._cache_size() == 1


def test_a_partial_last_batch_is_trained_like_keras(data):
    # 200 examples at batch 32: 6 full batches + one of 8 -> 7 optimizer steps per epoch.
    state, _, _ = fit_run(tiny_run(epochs=2, batch_size=32), data)
    assert int(state.step) == 2 * 7
    state, _, _ = fit_run(tiny_run(epochs=2, batch_size=40), data)  # divides evenly
    assert int(state.step) == 2 * 5


def test_dropout_masks_drawn_ahead_train_bit_for_bit_as_masks_drawn_in_the_step(monkeypatch,
                                                                                data):
    """Two members with different rates (one layer at 0), BatchNorm, a partial last batch: the
    epoch that draws its masks before the loop over batches is another program with the same
    numbers, epoch after epoch."""
    from jaxmlp import epoch

    runs = [tiny_run("a", epochs=2, batch_size=48, batch_norm=True, dropout=(0.5, 0.2)),
            tiny_run("b", epochs=2, batch_size=48, batch_norm=True, dropout=(0.0, 0.3), seed=1)]

    def two_epochs(ahead: bool):
        monkeypatch.setattr(epoch, "masks_ahead_default", lambda mesh=None: ahead)
        group = build_group(runs, data)
        state, out = init_group(group), []
        for _ in range(2):
            state, record = group.step(state, data)
            out.append(record)
        hlo = group.step.lower(init_group(group), data).as_text()
        return jax.tree.map(np.asarray, (state, out)), hlo

    (ahead, ahead_hlo), (inline, inline_hlo) = two_epochs(True), two_epochs(False)
    # 200 examples at batch 48: 4 full batches whose masks (4 x 48 x 16 per member) are drawn
    # ahead; the last 8 examples draw theirs in their step, as every step does inline.
    assert "4x48x16xi1" in ahead_hlo and "4x48x16xi1" not in inline_hlo
    leaves_a, leaves_b = jax.tree.leaves(ahead), jax.tree.leaves(inline)
    assert len(leaves_a) == len(leaves_b)
    for a, b in zip(leaves_a, leaves_b):
        assert np.array_equal(a, b)


def test_masks_are_drawn_ahead_on_one_cpu_device_only():
    from types import SimpleNamespace

    from jaxmlp.epoch import masks_ahead_default
    cpu = jax.default_backend() == "cpu"
    assert masks_ahead_default() is cpu
    assert masks_ahead_default(SimpleNamespace(size=1)) is cpu
    assert masks_ahead_default(SimpleNamespace(size=2)) is False


def test_fit_run_returns_the_restored_weights_its_scores_come_from(data):
    # EarlyStopping(restore_best_weights) at a large LR: the run stops after its best epoch, and
    # the state's params are the best epoch's (val loss = the best in history), not the last's.
    hooks = C.HooksConfig(early_stopping=C.EarlyStopping(patience=1, restore_best_weights=True))
    state, hist, scores = fit_run(tiny_run(epochs=30, lr=0.3, hooks=hooks), data)
    best = int(np.argmin(hist["val_loss"]))
    assert best < len(hist["val_loss"]) - 1
    np.testing.assert_allclose(scores["val"][0], hist["val_loss"][best], rtol=1e-5)
    fns = models.build(tiny_run().model)
    loss, _ = evaluate(fns, state.params, state.batch_stats, state.l2, data.x_val, data.y_val)
    np.testing.assert_allclose(loss, hist["val_loss"][best], rtol=1e-5)


def test_the_learning_rate_is_logged_per_epoch(data):
    _, hist, _ = fit_run(tiny_run(epochs=2, lr=0.02), data)
    np.testing.assert_allclose(hist["learning_rate"], [0.02, 0.02], rtol=1e-6)


FOUR_DEVICES = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    sys.path.insert(0, "tests")
    from conftest import tiny_data, tiny_run
    from jaxmlp.epoch import device_data
    from jaxmlp.loop import fit_run
    from jaxmlp.group import build_group, init_group
    assert jax.device_count() == 4, jax.devices()
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
    ds = tiny_data(n_train=256)
    out = {}
    for model, kw in (("dropout", {"dropout": 0.2}), ("batchnorm", {"batch_norm": True})):
        run = tiny_run(epochs=3, batch_size=64, **kw)
        for name, m in (("one", None), ("four", mesh)):
            data = device_data(ds, m)
            group = build_group([run], data, mesh=m)
            hlo = group.step.lower(init_group(group), data).compile().as_text()
            _, hist, scores = fit_run(run, data, mesh=m)
            out[model + "/" + name] = {
                "hist": {k: v for k, v in hist.items() if k != "epoch_time_s"},
                "test": scores["test"], "all_reduce": "all-reduce" in hlo}
    print(json.dumps(out))
""")

TRAIN_METRICS = ("loss", "accuracy", "learning_rate")
VAL_METRICS = ("val_loss", "val_accuracy")


conftest.background("epoch-four", [sys.executable, "-c", FOUR_DEVICES],
                    conftest.four_devices_env())


def on_four_devices(key: str) -> dict:
    """The subprocess `key` (a script on 4 forced CPU devices, started by conftest as soon as
    the tests are collected): its last stdout line as JSON. Nothing here is timed."""
    proc = conftest.background_result(key)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.background("epoch-four")
def test_four_devices_give_the_same_metrics_as_one():
    out = on_four_devices("epoch-four")

    def close(model, keys, atol):
        one, four = out[model + "/one"], out[model + "/four"]
        assert four["all_reduce"] and not one["all_reduce"]  # the batch really is split
        for key in keys:
            np.testing.assert_allclose(four["hist"][key], one["hist"][key], rtol=0, atol=atol,
                                       err_msg=f"{model}: {key}")
        return one, four

    # Same global batch, permutation and dropout keys; only the order of float sums differs
    # (per-device partial sums + all-reduce), so every metric agrees to float32 rounding.
    one, four = close("dropout", TRAIN_METRICS + VAL_METRICS, atol=1e-5)
    np.testing.assert_allclose(four["test"], one["test"], atol=1e-5)
    # With BatchNorm, training metrics agree just as closely. Evaluation may not: the Dense bias
    # in front of a BatchNorm has a true gradient of exactly 0, so its computed gradient is pure
    # rounding noise, which Adam normalises into steps of about +-lr. That bias then drifts
    # differently on 4 devices, and the moving mean (used in eval mode) follows it. Keras does
    # the same. So: train metrics to 1e-5; val_loss to 1e-2 and val_accuracy to at most 2 of
    # the 40 validation examples changing class.
    close("batchnorm", TRAIN_METRICS, atol=1e-5)
    close("batchnorm", ("val_loss",), atol=1e-2)
    close("batchnorm", ("val_accuracy",), atol=2 / 40 + 1e-6)


PUBLIC_FOUR_DEVICES = textwrap.dedent("""
    import json, sys
    import numpy as np
    sys.path.insert(0, "tests")
    from conftest import tiny_data
    import jaxmlp
    from jaxmlp.epoch import Data, device_data
    from jaxmlp.loop import fit_run
    from jaxmlp.group import local_mesh
    assert local_mesh().size == 4
    ds = tiny_data(n_train=256)
    r = jaxmlp.fit(ds.x_train, ds.y_train, model=jaxmlp.MLP((16, 8), dropout=0.2),
                   optimizer=jaxmlp.Adam(1e-2), epochs=3, batch_size=64, verbose=0,
                   validation_data=(ds.x_val, ds.y_val))
    one = Data(ds.x_train, ds.y_train, ds.x_val, ds.y_val, ds.x_test[:0], ds.y_test[:0])
    _, hist, _ = fit_run(r.config, device_data(one, None))
    print(json.dumps({"four": r.history, "one": {k: hist[k] for k in r.history}}))
""")


conftest.background("fit-four", [sys.executable, "-c", PUBLIC_FOUR_DEVICES],
                    conftest.four_devices_env())


@pytest.mark.background("fit-four")
def test_the_public_fit_runs_data_parallel_over_every_local_device():
    # jaxmlp.fit shards each batch over the 4 local devices by itself; the same run on one
    # device (fit_run without a mesh) gives the same metrics up to float32 summation order.
    out = on_four_devices("fit-four")
    for key in TRAIN_METRICS + VAL_METRICS:
        np.testing.assert_allclose(out["four"][key], out["one"][key], rtol=0, atol=1e-5,
                                   err_msg=key)


def test_tiny_data_helper_is_learnable():
    d = tiny_data()
    assert d.x_train.shape == (200, 12) and d.y_train.dtype == np.int32


def test_compile_options_apply_and_an_unknown_one_falls_back_to_the_default(data):
    """--quick's compile option gives the same numbers here (tiny data, f32), and an option this
    XLA does not know is dropped instead of failing the sweep."""
    from jaxmlp.group import compile_group

    group = build_group([tiny_run()], data)
    state = init_group(group)
    plain = compile_group(group, state, data)
    quick = compile_group(group, state, data, {"xla_cpu_use_fusion_emitters": False})
    unknown = compile_group(group, state, data, {"xla_cpu_no_such_option": True})
    outs = [jax.device_get(g.step(init_group(group), data)[1]["metrics"])
            for g in (plain, quick, unknown)]
    np.testing.assert_allclose(outs[1], outs[0], rtol=1e-5)
    np.testing.assert_array_equal(outs[2], outs[0])


def test_groups_of_one_model_and_size_share_one_final_program(data):
    """A sweep compiles a final evaluation once for groups that differ only in optimizer, batch
    or epochs, and each group's scores are those of its own uncompiled final evaluation."""
    from jaxmlp.group import compile_final

    def compiled(runs):
        group = build_group(runs, data)
        state = init_group(group)
        state, _ = group.step(state, data)  # trained one epoch: the weights differ by group
        return group, state, compile_final(group, init_group(group), data)

    adam = [tiny_run(f"a{i}", lr=1e-2 * (i + 1), seed=i) for i in range(2)]
    sgd = [dataclasses.replace(r, name=f"s{i}", optim=C.OptimConfig("sgd", 0.1, momentum=0.9),
                               train=dataclasses.replace(r.train, batch_size=50, epochs=7))
           for i, r in enumerate(adam)]
    three = adam + [tiny_run("a2", seed=5)]
    wider = [tiny_run(f"w{i}", hidden=(16, 9), seed=i) for i in range(2)]
    # The same model and size, but a member with an L2 term: its losses include it.
    l2 = [adam[0], dataclasses.replace(adam[1], model=dataclasses.replace(adam[1].model,
                                                                          l2=0.01))]
    groups = {name: compiled(runs) for name, runs in
              {"adam": adam, "sgd": sgd, "three": three, "wider": wider, "l2": l2}.items()}
    assert groups["sgd"][2].evaluate is groups["adam"][2].evaluate  # one program
    for other in ("three", "wider", "l2"):  # another member count or model: its own program
        assert groups[other][2].evaluate is not groups["adam"][2].evaluate
    for name, (group, state, with_final) in groups.items():
        shared = jax.tree.leaves(jax.device_get(with_final.final(state, data)))
        own = jax.tree.leaves(jax.device_get(group.final(state, data)))
        assert len(shared) == len(own)
        for a, b in zip(shared, own):
            np.testing.assert_array_equal(a, b, err_msg=name)


def test_uses_of_flags_each_dropout_layer_and_the_l2_term_some_member_uses():
    cfg = C.ModelConfig(hidden=(8, 6, 4), input_dim=4, num_classes=3)
    assert models.uses_of([cfg]) == models.Uses((False, False, False), False)
    some = [dataclasses.replace(cfg, dropout=(0.3, 0.0, 0.0)),
            dataclasses.replace(cfg, dropout=(0.0, 0.0, 0.1), output_l2=1e-3)]
    assert models.uses_of(some) == models.Uses((True, False, True), True)
    assert models.uses_of([cfg, dataclasses.replace(cfg, l2=1e-4)]).l2
    assert models.build(cfg).uses == models.uses_of([cfg])  # by default, the model's own
    with pytest.raises(ValueError, match="depths"):
        models.uses_of([cfg, C.ModelConfig(hidden=(8,), input_dim=4, num_classes=3)])
    with pytest.raises(ValueError, match="one dropout flag per hidden layer"):
        models.build(cfg, models.Uses((True,), False))


def _traced_epoch_calls(monkeypatch, runs, data, masks_ahead):
    """How often tracing one epoch of `runs` (one group) draws a dropout mask and forms the
    L2 penalty: the calls of models.dropout_mask and models.l2_penalty while it is traced."""
    from jaxmlp import optim
    from jaxmlp.epoch import device_data, init_states, make_epoch

    calls = {"mask": 0, "l2": 0}
    mask, penalty = models.dropout_mask, models.l2_penalty

    def counted(name, fn):
        def wrapper(*args, **kw):
            calls[name] += 1
            return fn(*args, **kw)
        return wrapper

    monkeypatch.setattr(models, "dropout_mask", counted("mask", mask))
    monkeypatch.setattr(models, "l2_penalty", counted("l2", penalty))
    fns = models.build(runs[0].model, models.uses_of(r.model for r in runs))
    run_epoch = make_epoch(fns, optim.make(runs[0].optim), batch_size=32, n_train=200,
                           masks_ahead=masks_ahead)
    state = jax.tree.map(lambda a: a[0], init_states(runs[:1]))
    jax.make_jaxpr(run_epoch)(state, device_data(data))
    return calls


@pytest.mark.parametrize("masks_ahead", [True, False])
def test_a_group_computes_no_dropout_or_l2_term_that_no_member_uses(monkeypatch, data,
                                                                    masks_ahead):
    plain = [tiny_run("a"), tiny_run("b", seed=1)]
    assert _traced_epoch_calls(monkeypatch, plain, data, masks_ahead) == {"mask": 0, "l2": 0}
    # One member drops units in the first layer, another has an L2 term: the group's program
    # draws first-layer masks and forms the penalty (for every member), never second-layer
    # masks. Each mask is drawn in the full batches' step and in the partial last batch's
    # (200 = 6 x 32 + 8), and the penalty in the two steps and the evaluation.
    some = [tiny_run("a", dropout=(0.2, 0.0)), tiny_run("b", seed=1, l2=1e-3)]
    assert _traced_epoch_calls(monkeypatch, some, data, masks_ahead) == {"mask": 2, "l2": 3}
    everything = [tiny_run("a", dropout=0.2, l2=1e-3)]
    assert _traced_epoch_calls(monkeypatch, everything, data, masks_ahead) == {"mask": 4,
                                                                               "l2": 3}


@pytest.mark.parametrize("masks_ahead", [True, False])
def test_leaving_out_unused_dropout_and_l2_changes_numbers_by_rounding_only(data, masks_ahead):
    """Rates and coefficients of 0 are the identity: an epoch that computes only what the
    model uses (models.Uses) gives the numbers of one that computes every part, to float32
    rounding (XLA fuses the two programs differently)."""
    from jaxmlp import optim
    from jaxmlp.epoch import device_data, init_states, make_epoch

    for model in ({"dropout": (0.25, 0.0)}, {}, {"l2": 1e-3}):
        run = tiny_run("t", **model)
        everything = models.Uses((True, True), True)
        assert models.build(run.model).uses != everything
        outs = []
        for fns in (models.build(run.model), models.build(run.model, everything)):
            run_epoch = jax.jit(make_epoch(fns, optim.make(run.optim), batch_size=32,
                                           n_train=200, masks_ahead=masks_ahead))
            state = jax.tree.map(lambda a: a[0], init_states([run]))
            outs.append(jax.device_get(run_epoch(state, device_data(data))))
        for a, b in zip(*map(jax.tree.leaves, outs), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=str(model))


def test_on_the_cpu_runs_group_only_with_runs_that_use_the_same_parts(data):
    """Looped members (lax.map) group only with runs that use the same dropout layers and L2
    term, so each computes exactly its own program: a member of a sweep that also trains runs
    with dropout gets its solo numbers bit for bit. Vmapped, they share one program."""
    from jaxmlp import runner

    runs = [tiny_run("plain", seed=1), tiny_run("drop", dropout=(0.3, 0.0), seed=2),
            tiny_run("l2", l2=1e-3, seed=3), tiny_run("plain2", seed=4)]
    items = [runner.Member(r, 0) for r in runs]
    by_map = [[m.run.name for m in g] for g in runner.groups(items, "group", "map")]
    assert by_map == [["plain", "plain2"], ["drop"], ["l2"]]
    assert len(runner.groups(items, "group", "vmap")) == 1
    plain = [runs[0], runs[3]]
    state, _ = build_group(plain, data, members="map").step(init_group(
        build_group(plain, data)), data)
    solo = build_group(plain[:1], data)
    alone, _ = solo.step(init_group(solo), data)
    for a, b in zip(jax.tree.leaves(jax.device_get(state)), jax.tree.leaves(jax.device_get(alone))):
        np.testing.assert_array_equal(np.asarray(a)[:1], b)
