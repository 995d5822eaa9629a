"""The public API: jaxmlp.fit / Result.evaluate / predict / save / load, callbacks, input checks."""

import csv
import json
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmlp

ROOT = Path(__file__).resolve().parents[1]


def problem(n=400, dim=10, classes=4, noise=0.0, seed=0):
    """A learnable problem: labels = argmax of a fixed linear map (plus optional label noise)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    y = np.argmax(x @ rng.normal(size=(dim, classes)) + noise * rng.normal(size=(n, classes)), 1)
    return x, y


SMALL = dict(model=jaxmlp.MLP(hidden=(16,)), batch_size=64, verbose=0, seed=0)


def test_the_readme_python_block_runs_as_written(tmp_path, monkeypatch):
    text = (ROOT / "README.md").read_text()
    section = text.split("## Use it as a library", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert "jaxmlp.fit(" in block and "jaxmlp.load(" in block
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), {})
    assert (tmp_path / "model_dir" / "model.json").exists()


@pytest.fixture(scope="module")
def stopped():
    """Noisy labels and a large LR overfit fast: EarlyStopping fires well before 40 epochs."""
    x, y = problem(n=300, noise=2.0)
    r = jaxmlp.fit(x, y, **{**SMALL, "model": jaxmlp.MLP(hidden=(64,))},
                   optimizer=jaxmlp.Adam(0.05), epochs=40, validation_split=0.3,
                   callbacks=[jaxmlp.EarlyStopping(patience=2, restore_best_weights=True)])
    return x, y, r


def test_restored_weights_reproduce_the_best_val_loss_in_history(stopped):
    x, y, r = stopped
    val = r.history["val_loss"]
    assert len(val) < 40  # stopped early, so the last epoch is not the best one
    best = int(np.argmin(val))
    assert best == len(val) - 3  # patience 2: two epochs without improvement after the best
    n_val = 300 - int(np.floor(300 * (1 - 0.3)))  # Keras's tail split: the last 90 examples
    scores = r.evaluate(x[-n_val:], y[-n_val:])
    np.testing.assert_allclose(scores["loss"], val[best], rtol=1e-5)
    np.testing.assert_allclose(scores["accuracy"], r.history["val_accuracy"][best], rtol=1e-6)
    assert abs(scores["loss"] - val[-1]) > 1e-3  # the last epoch's weights would not give it


def test_validation_split_is_the_tail_of_the_arrays_as_validation_data():
    x, y = problem(n=250)
    k = 250 - int(np.floor(250 * (1 - 0.2)))  # 50
    a = jaxmlp.fit(x, y, **SMALL, epochs=3, validation_split=0.2)
    b = jaxmlp.fit(x[:-k], y[:-k], **SMALL, epochs=3, validation_data=(x[-k:], y[-k:]))
    assert a.history == b.history
    assert set(a.history) == {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"}


def test_save_and_load_give_identical_predictions(stopped, tmp_path):
    x, y, r = stopped
    r.save(tmp_path / "m")
    back = jaxmlp.load(tmp_path / "m")
    probs = r.predict(x)
    assert probs.shape == (300, 4) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(back.predict(x), probs)
    assert back.evaluate(x, y) == r.evaluate(x, y)
    assert back.config == r.config
    np.testing.assert_array_equal(back.history["val_loss"], r.history["val_loss"])


def test_summary_lists_the_keras_layers_and_counts_the_weights_fit_trained(tmp_path):
    # TA8's combined model: the seed page gives Keras's count for it, 830,282 parameters
    x = np.random.default_rng(0).normal(size=(64, 3072)).astype(np.float32)
    y = np.arange(64) % 10
    model = jaxmlp.MLP(hidden=(256, 128, 64), batch_norm=True, dropout=(0.3, 0.3, 0.0))
    r = jaxmlp.fit(x, y, model=model, batch_size=32, verbose=0)
    r.save(tmp_path / "m")
    for result in (r, jaxmlp.load(tmp_path / "m")):
        lines = []
        result.summary(print_fn=lines.append)
        assert lines[0] == 'Model: "mlp"'
        names = [line.split()[0] for line in lines[4:-4]]
        assert names == ["dense", "batch_normalization", "activation", "dropout",
                         "dense_1", "batch_normalization_1", "activation_1", "dropout_1",
                         "dense_2", "batch_normalization_2", "activation_2", "dense_3"]
        assert lines[4].split()[1:] == ["(Dense)", "(None,", "256)", "786,688"]
        trainable = sum(a.size for a in jax.tree.leaves(r.params))
        moving = sum(a.size for a in jax.tree.leaves(r.batch_stats))
        assert lines[-3:] == [f"Total params: {trainable + moving:,} (3.17 MB)",
                              f"Trainable params: {trainable:,} (3.16 MB)",
                              f"Non-trainable params: {moving:,} (3.50 KB)"]
        assert trainable + moving == 830_282
    # without batch norm or dropout: the Dense layers alone, nothing non-trainable
    r = jaxmlp.fit(x[:, :10], y, model=jaxmlp.MLP(hidden=(16,)), verbose=0)
    lines = []
    r.summary(print_fn=lines.append)
    assert [line.split()[0] for line in lines[4:-4]] == ["dense", "dense_1"]
    assert lines[-1] == "Non-trainable params: 0 (0.00 B)"


@pytest.mark.parametrize("bad_y, match", [
    (np.full(40, 1.5), "integer class ids"),
    (-np.ones(40, int), "integer class ids"),
    (np.eye(4)[np.arange(40) % 4], "one-hot"),
    (np.zeros(39, int), r"shape \(40,\)"),
])
def test_bad_labels_are_one_line_data_errors_before_training(bad_y, match):
    x, _ = problem(n=40)
    with pytest.raises(jaxmlp.DataError, match=match) as err:
        jaxmlp.fit(x, bad_y, **SMALL)
    assert "\n" not in str(err.value)


def test_nan_or_infinite_inputs_are_one_line_data_errors_before_anything_is_written(tmp_path):
    x, y = problem(n=40)
    bad = x.copy()
    bad[7, 3], bad[9, 0], bad[20, 5] = np.nan, np.inf, -np.inf
    log = tmp_path / "log.csv"
    for call, what in [
        (lambda: jaxmlp.fit(bad, y, **SMALL, callbacks=[jaxmlp.CSVLogger(str(log))]), "x"),
        (lambda: jaxmlp.fit(x, y, **SMALL, validation_data=(bad, y)), "validation_data x"),
        (lambda: jaxmlp.fit_many(bad, y, [{}], **SMALL), "x"),
    ]:
        with pytest.raises(jaxmlp.DataError) as err:
            call()
        assert str(err.value) == (f"{what}: 3 values are NaN or infinite (the first in example "
                                  "7, feature 3); training on them makes every weight NaN: "
                                  "drop or impute those examples first")
    assert not log.exists()
    # a NaN in the validation part of x (validation_split) is refused as well
    with pytest.raises(jaxmlp.DataError, match="example 39, feature 1"):
        jaxmlp.fit(np.where(np.arange(40)[:, None] * 10 + np.arange(x.shape[1]) == 391,
                            np.nan, x), y, **SMALL, validation_split=0.25)
    # predict takes them: a NaN row gives NaN probabilities, the others are unchanged
    r = jaxmlp.fit(x, y, **SMALL)
    probs = r.predict(bad)
    assert np.isnan(probs[[7, 9, 20]]).all() and np.isfinite(np.delete(probs, [7, 9, 20], 0)).all()
    np.testing.assert_array_equal(np.delete(probs, [7, 9, 20], 0),
                                  np.delete(r.predict(x), [7, 9, 20], 0))


def test_evaluate_and_predict_take_keras_arguments_and_refuse_the_rest(stopped):
    x, y, r = stopped
    scores, probs = r.evaluate(x, y), r.predict(x)
    assert r.evaluate(x, y, 32, verbose=0) == scores  # batch_size, also positional
    assert r.evaluate(x, y, batch_size=np.int64(7), verbose=2, sample_weight=None) == scores
    assert r.evaluate(x, y, return_dict=False) == [scores["loss"], scores["accuracy"]]
    np.testing.assert_array_equal(r.predict(x, batch_size=16, verbose=0, steps=None), probs)
    for call, match in [
        (lambda: r.evaluate(x, y, batch_size=0), "evaluate: batch_size=0 is invalid"),
        (lambda: r.evaluate(x, y, verbose=5), "evaluate: verbose=5 is invalid"),
        (lambda: r.evaluate(x, y, return_dict="yes"), "return_dict='yes' is invalid"),
        (lambda: r.evaluate(x, y, sample_weight=np.ones(len(y))),
         "evaluate: sample_weight= is a Keras evaluate argument jaxmlp does not take"),
        (lambda: r.predict(x, steps=2), "predict: steps= is a Keras predict argument"),
        (lambda: r.predict(x, return_dict=True), "predict: unknown argument return_dict=; "
                                                 "allowed x, batch_size, verbose"),
    ]:
        with pytest.raises(jaxmlp.ConfigError, match=match) as err:
            call()
        assert "\n" not in str(err.value)


def test_labels_beyond_classes_and_input_mismatches_are_one_line_errors(stopped):
    x, y = problem(n=40)
    y = np.arange(40) % 4
    with pytest.raises(jaxmlp.DataError, match="classes=3") as err:
        jaxmlp.fit(x, y, **SMALL, classes=3)  # labels go up to 3
    assert "\n" not in str(err.value)
    with pytest.raises(jaxmlp.DataError, match="7 features per example, x has 10"):
        jaxmlp.fit(x, y, **SMALL, validation_data=(x[:, :7], y))
    with pytest.raises(jaxmlp.DataError, match="takes 10"):
        stopped[2].predict(x[:, :7])
    with pytest.raises(jaxmlp.ConfigError, match="batch_size"):
        jaxmlp.fit(x, y, **{**SMALL, "batch_size": 0})
    with pytest.raises(jaxmlp.ConfigError, match="not supported"):
        jaxmlp.fit(x, y, **SMALL, callbacks=["early_stopping"])


def test_two_best_checkpoints_must_watch_the_same_metric(tmp_path):
    # One best-tracking hook: a val_loss store fed val_accuracy values kept the worst epoch.
    x, y = problem(n=40)
    loss = jaxmlp.ModelCheckpoint(tmp_path / "a", monitor="val_loss", save_best_only=True)
    acc = jaxmlp.ModelCheckpoint(tmp_path / "b", monitor="val_accuracy", save_best_only=True)
    with pytest.raises(jaxmlp.ConfigError, match="watch different things") as err:
        jaxmlp.fit(x, y, **SMALL, validation_split=0.25, callbacks=[loss, acc])
    assert "\n" not in str(err.value) and not (tmp_path / "a").exists()
    same = jaxmlp.ModelCheckpoint(tmp_path / "c", monitor="val_loss", mode="min",
                                  save_best_only=True)  # "auto" on a loss is "min": allowed
    r = jaxmlp.fit(x, y, **SMALL, epochs=3, validation_split=0.25, callbacks=[loss, same])
    best = str(int(np.argmin(r.history["val_loss"])))
    for folder in ("a", "c"):
        assert [p.name for p in (tmp_path / folder / "best").iterdir() if p.name.isdigit()] \
            == [best]


def test_file_callbacks_and_a_scheduler(tmp_path):
    x, y = problem(n=200)
    r = jaxmlp.fit(x, y, **SMALL, epochs=4, validation_split=0.25, callbacks=[
        jaxmlp.LearningRateScheduler(lambda epoch, lr: 0.01 * 0.5 ** epoch),
        jaxmlp.CSVLogger(tmp_path / "h.csv"), jaxmlp.TensorBoard(tmp_path / "tb"),
        jaxmlp.ModelCheckpoint(tmp_path / "best", save_best_only=True),
        jaxmlp.TerminateOnNaN()])
    np.testing.assert_allclose(r.history["learning_rate"], [0.01, 0.005, 0.0025, 0.00125],
                               rtol=1e-6)
    rows = list(csv.DictReader(open(tmp_path / "h.csv")))
    assert [int(row["epoch"]) for row in rows] == [0, 1, 2, 3]
    np.testing.assert_allclose([float(row["val_loss"]) for row in rows], r.history["val_loss"])
    assert (tmp_path / "tb" / "validation").is_dir()
    best = int(np.argmin(r.history["val_loss"]))
    assert [p.name for p in (tmp_path / "best" / "best").iterdir()
            if p.name.isdigit()] == [str(best)]


@pytest.mark.parametrize("split, before, after, header", [
    # What Keras 3's CSVLogger writes (keras/src/callbacks/csv_logger.py): the logs' keys
    # sorted; the learning rate only when a callback before the CSVLogger in the list puts it
    # in the logs (the CSVLogger fixes its columns at the first epoch's end); without any val_
    # key, a val_ copy of every key appended (NA).
    (0.0, None, None, "epoch,accuracy,loss,val_accuracy,val_loss"),
    (0.25, jaxmlp.ReduceLROnPlateau(patience=1), None,
     "epoch,accuracy,learning_rate,loss,val_accuracy,val_loss"),
    (0.25, None, jaxmlp.ReduceLROnPlateau(patience=1),
     "epoch,accuracy,loss,val_accuracy,val_loss"),
    (0.0, jaxmlp.LearningRateScheduler(lambda epoch, lr: lr), None,
     "epoch,accuracy,learning_rate,loss,val_accuracy,val_learning_rate,val_loss"),
])
def test_csv_logger_writes_kerass_columns_and_line_ends(tmp_path, split, before, after, header):
    x, y = problem(n=100)
    path = tmp_path / "h.csv"
    r = jaxmlp.fit(x, y, **SMALL, epochs=2, validation_split=split,
                   callbacks=[c for c in (before, jaxmlp.CSVLogger(path), after) if c])
    lines = path.read_bytes().decode().split("\r\n")
    assert lines[0] == header and lines[-1] == "" and len(lines) == 4
    rows = list(csv.DictReader(open(path, newline="")))
    for key in header.split(",")[1:]:
        if key in r.history:
            np.testing.assert_allclose([float(row[key]) for row in rows], r.history[key])
        else:
            assert [row[key] for row in rows] == ["NA", "NA"]


def test_csv_logger_separator_and_tensorboard_weight_histograms(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    x, y = problem(n=100)
    model = jaxmlp.MLP(hidden=(16,), batch_norm=True)
    r = jaxmlp.fit(x, y, **{**SMALL, "model": model}, epochs=5, validation_split=0.2,
                   callbacks=[jaxmlp.CSVLogger(tmp_path / "h.csv", separator=";"),
                              jaxmlp.TensorBoard(tmp_path / "tb", histogram_freq=np.int64(2))])
    rows = list(csv.DictReader(open(tmp_path / "h.csv", newline=""), delimiter=";"))
    np.testing.assert_allclose([float(row["val_loss"]) for row in rows], r.history["val_loss"])
    train = EventAccumulator(str(tmp_path / "tb" / "train"), size_guidance={"histograms": 0})
    train.Reload()
    tags = train.Tags()["histograms"]
    assert sorted(tags) == ["batch_stats/norm_0/mean", "batch_stats/norm_0/var",
                            "params/dense_0/bias", "params/dense_0/kernel", "params/norm_0/bias",
                            "params/norm_0/scale", "params/out/bias", "params/out/kernel"]
    # Keras: epochs 0, N, 2N, ...; the last one holds the weights fit ended with
    events = train.Histograms("params/out/kernel")
    assert [e.step for e in events] == [0, 2, 4]
    kernel = np.asarray(r.params["out"]["kernel"])
    last = events[-1].histogram_value
    assert last.num == kernel.size and np.isclose(last.sum, kernel.sum(), rtol=1e-5)
    assert (last.min, last.max) == (kernel.min(), kernel.max())
    # without histogram_freq, no histogram
    jaxmlp.fit(x, y, **SMALL, callbacks=[jaxmlp.TensorBoard(tmp_path / "tb2")])
    quiet = EventAccumulator(str(tmp_path / "tb2" / "train"))
    assert quiet.Reload().Tags()["histograms"] == []


def test_gradient_clipping_changes_training_and_is_saved_with_the_model(tmp_path):
    x, y = problem(n=200)
    plain = jaxmlp.fit(x, y, **SMALL, epochs=3, optimizer=jaxmlp.SGD(0.5))
    clipped = jaxmlp.fit(x, y, **SMALL, epochs=3, optimizer=jaxmlp.SGD(0.5, clipvalue=1e-3))
    loose = jaxmlp.fit(x, y, **SMALL, epochs=3, optimizer=jaxmlp.SGD(0.5, clipnorm=1e6))
    # a tiny clip slows training down; one above every gradient's norm changes only rounding
    assert clipped.history["loss"][-1] > plain.history["loss"][-1] + 0.1
    np.testing.assert_allclose(loose.history["loss"], plain.history["loss"], rtol=1e-5)
    clipped.save(tmp_path / "m")
    back = jaxmlp.load(tmp_path / "m")
    assert back.config.optim.clipvalue == 1e-3 and back.config == clipped.config


def test_keras_callback_arguments_at_their_defaults_run_and_others_are_one_line_errors(
        tmp_path):
    x, y = problem(n=60)
    accepted = [  # Keras code as written: these change nothing here
        jaxmlp.TensorBoard(tmp_path / "tb", histogram_freq=0, write_graph=True,
                           write_images=False, update_freq="epoch", profile_batch=0,
                           embeddings_freq=0),
        jaxmlp.ModelCheckpoint(tmp_path / "ck", save_weights_only=True, save_freq="epoch",
                               initial_value_threshold=None),
        jaxmlp.CSVLogger(tmp_path / "h.csv", separator=",", append=False),
        jaxmlp.BackupAndRestore(tmp_path / "b", save_freq="epoch", double_checkpoint=True),
        jaxmlp.TerminateOnNaN(raise_error=False),
    ]
    assert accepted[0] == jaxmlp.TensorBoard(tmp_path / "tb")
    assert accepted[1] == jaxmlp.ModelCheckpoint(tmp_path / "ck")
    r = jaxmlp.fit(x, y, **SMALL, epochs=2, callbacks=accepted)
    plain = jaxmlp.fit(x, y, **SMALL, epochs=2)
    assert r.history == plain.history
    assert jaxmlp.load(tmp_path / "ck").evaluate(x, y) == r.evaluate(x, y)
    for call, message in [
        (lambda: jaxmlp.TensorBoard("tb", update_freq="batch"),
         "TensorBoard.update_freq='batch' is not supported: the logs are written once an "
         "epoch (Keras's default update_freq='epoch' is accepted)"),
        (lambda: jaxmlp.ModelCheckpoint("ck", save_freq=100),
         "ModelCheckpoint.save_freq=100 is not supported: saves happen at the end of an epoch "
         "(Keras's default save_freq='epoch' is accepted)"),
        (lambda: jaxmlp.CSVLogger("h.csv", append=True), "CSVLogger.append=True is not "
                                                         "supported"),
        (lambda: jaxmlp.EarlyStopping(patienc=3),
         "EarlyStopping: unknown argument patienc=; allowed monitor, min_delta, patience, mode, "
         "baseline, restore_best_weights, start_from_epoch, verbose"),
        (lambda: jaxmlp.TerminateOnNaN(raise_error=True), "TerminateOnNaN.raise_error=True"),
        (lambda: jaxmlp.TensorBoard("tb", histogram_freq=-1), "histogram_freq=-1 is invalid"),
        (lambda: jaxmlp.CSVLogger("h.csv", separator="\n"), "separator='\\n' is invalid"),
    ]:
        with pytest.raises(jaxmlp.ConfigError) as err:
            call()
        assert message in str(err.value) and "\n" not in str(err.value)


def test_keras_only_fit_arguments_are_one_line_errors_that_say_what_to_do():
    x, y = problem(n=40)
    for kw, match in [({"shuffle": False}, "reshuffled every epoch"),
                      ({"class_weight": {0: 2.0}}, "class_weight= is a Keras fit argument"),
                      ({"initial_epoch": 3}, "BackupAndRestore"),
                      ({"validation_freq": 2}, "after every epoch"),
                      ({"epoch": 3}, "unknown argument epoch=; allowed x, y, model")]:
        with pytest.raises(jaxmlp.ConfigError, match=match) as err:
            jaxmlp.fit(x, y, **SMALL, **kw)
        assert "\n" not in str(err.value)
    keras_defaults = {"shuffle": np.True_, "class_weight": None, "initial_epoch": 0,
                      "validation_freq": 1, "steps_per_epoch": None}  # what jaxmlp does anyway
    assert len(jaxmlp.fit(x, y, **SMALL, **keras_defaults).history["loss"]) == 1
    assert jaxmlp.MLP(output_clip=1e-7).output_clip == pytest.approx(1e-7)


def test_val_monitors_without_validation_data_warn_and_stay_idle():
    # Keras: EarlyStopping(patience=0) on val_loss with no validation data warns and never stops.
    x, y = problem(n=100)
    with pytest.warns(UserWarning, match="`val_loss` which is not available"):
        r = jaxmlp.fit(x, y, **SMALL, epochs=3, callbacks=[jaxmlp.EarlyStopping(patience=0)])
    assert len(r.history["loss"]) == 3
    assert set(r.history) == {"loss", "accuracy", "learning_rate"}


def test_callbacks_verbose_1_print_kerass_lines_when_they_act(tmp_path, capsys):
    # Keras 3's words (keras/src/callbacks/*.py), at the epochs the history says they acted.
    x, y = problem(n=300, noise=2.0)
    r = jaxmlp.fit(x, y, **SMALL, optimizer=jaxmlp.Adam(0.05), epochs=30,
                   validation_split=0.3, callbacks=[
                       jaxmlp.EarlyStopping(patience=4, restore_best_weights=True, verbose=1),
                       jaxmlp.ReduceLROnPlateau(patience=1, factor=0.5, verbose=1),
                       jaxmlp.ModelCheckpoint(tmp_path / "ck", save_best_only=True, verbose=1)])
    out = capsys.readouterr().out.splitlines()
    lr, val, n = r.history["learning_rate"], r.history["val_loss"], len(r.history["loss"])
    assert n < 30  # it stopped: the test needs every kind of line
    cuts = [e for e in range(n - 1) if lr[e + 1] < lr[e]]
    assert cuts
    for e in cuts:
        assert f"Epoch {e + 1}: ReduceLROnPlateau reducing learning rate to " \
               f"{float(np.float32(lr[e])) * 0.5}." in out
    best, ck = None, str((tmp_path / "ck").absolute())
    for e in range(n):
        shown = "None" if best is None else f"{best:.5f}"
        if best is None or val[e] < best:
            assert f"Epoch {e + 1}: val_loss improved from {shown} to {val[e]:.5f}, saving " \
                   f"model to {ck}" in out
            assert f"Epoch {e + 1}: finished saving model to {ck}" in out
            best = val[e]
        else:
            assert f"Epoch {e + 1}: val_loss did not improve from {shown}" in out
    assert out[-2:] == [f"Epoch {n}: early stopping", "Restoring model weights from the end of "
                        f"the best epoch: {int(np.argmin(val)) + 1}."]
    for e in cuts:  # in the list's order, as Keras calls on_epoch_end
        lines = [line for line in out if line.startswith(f"Epoch {e + 1}: ")]
        assert "ReduceLROnPlateau" in lines[0] and "val_loss" in lines[1]
    capsys.readouterr()
    jaxmlp.fit(x, y, **SMALL, optimizer=jaxmlp.Adam(0.05), epochs=30, validation_split=0.3,
               callbacks=[jaxmlp.ModelCheckpoint(tmp_path / "ck2", save_best_only=True, verbose=1),
                          jaxmlp.ReduceLROnPlateau(patience=1, factor=0.5, verbose=1)])
    out = capsys.readouterr().out.splitlines()
    lines = [line for line in out if line.startswith(f"Epoch {cuts[0] + 1}: ")]
    assert "val_loss" in lines[0] and "ReduceLROnPlateau" in lines[-1]
    with pytest.raises(jaxmlp.ConfigError, match="EarlyStopping.verbose='yes'"):
        jaxmlp.EarlyStopping(verbose="yes")
    assert jaxmlp.EarlyStopping(verbose=1) == jaxmlp.EarlyStopping(verbose=1)


def test_verbose_1_prints_one_line_per_epoch(capsys):
    x, y = problem(n=100)
    jaxmlp.fit(x, y, **{**SMALL, "verbose": 1}, epochs=2, validation_split=0.2)
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[:2] for line in lines] == [["epoch", "1/2"], ["epoch", "2/2"]]
    assert all("val_loss" in line for line in lines)


def test_optimizer_constructors_use_keras_names_and_defaults():
    assert jaxmlp.Adam().keras_epsilon and jaxmlp.Adam().epsilon == 1e-7
    assert jaxmlp.SGD(momentum=0.9, nesterov=True).learning_rate == 0.01
    assert jaxmlp.RMSprop().rho == 0.9 and jaxmlp.AdamW().weight_decay == 0.004
    assert jaxmlp.MLP((8,), dropout=0.3).dropout == (0.3,)
    assert float(jnp.float32(jaxmlp.CosineSchedule().initial_lr)) == pytest.approx(1e-3)


def test_a_model_checkpoint_folder_is_replaced_by_the_next_fit_and_loads_as_a_model(tmp_path):
    # Keras overwrites its checkpoint file; a second fit into the same folder used to crash
    # (every-epoch mode) or keep the first fit's better best (save_best_only) silently.
    x, y = problem(n=200)
    every, best = tmp_path / "every", tmp_path / "best"
    first = jaxmlp.fit(x, y, **SMALL, epochs=5, validation_split=0.25, callbacks=[
        jaxmlp.ModelCheckpoint(every), jaxmlp.ModelCheckpoint(best, save_best_only=True)])
    assert sorted(p.name for p in every.iterdir()) == ["latest", "model.json"]  # no empty best/
    assert sorted(p.name for p in best.iterdir()) == ["best", "model.json"]
    assert np.array_equal(jaxmlp.load(every).predict(x), first.predict(x))  # the last epoch's
    small = {**SMALL, "model": jaxmlp.MLP(hidden=(3,))}
    second = jaxmlp.fit(x, y, **small, epochs=2, validation_split=0.25, callbacks=[
        jaxmlp.ModelCheckpoint(every), jaxmlp.ModelCheckpoint(best, save_best_only=True)])
    assert min(second.history["val_loss"]) > min(first.history["val_loss"])  # a worse best
    assert [p.name for p in (every / "latest").iterdir() if p.name.isdigit()] == ["1"]
    loaded = jaxmlp.load(best)
    assert loaded.config.model.hidden == (3,) and loaded.history == {}
    best_epoch = int(np.argmin(second.history["val_loss"]))
    assert [p.name for p in (best / "best").iterdir() if p.name.isdigit()] == [str(best_epoch)]
    xv, yv = x[150:], y[150:]
    assert loaded.evaluate(xv, yv)["loss"] == pytest.approx(second.history["val_loss"][best_epoch],
                                                            rel=1e-5)


def test_file_callbacks_pointing_where_they_cannot_write_fail_before_training(tmp_path):
    x, y = problem(n=40)
    (tmp_path / "afile").write_text("x")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    cases = [
        (jaxmlp.CSVLogger(tmp_path), "is a folder"),
        (jaxmlp.TensorBoard(tmp_path / "afile"), "is a file"),
        (jaxmlp.ModelCheckpoint(tmp_path / "afile" / "ck"), "is a file, so"),
        (jaxmlp.ModelCheckpoint(tmp_path / "mine"), r"holds other files \(notes.txt\)"),
    ]
    for cb, match in cases:
        with pytest.raises(jaxmlp.ConfigError, match=match) as err:
            jaxmlp.fit(x, y, **SMALL, callbacks=[cb])
        assert "\n" not in str(err.value)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "mine"]
    with pytest.raises(jaxmlp.ConfigError, match="both write to"):
        jaxmlp.fit(x, y, **SMALL, callbacks=[jaxmlp.CSVLogger(tmp_path / "a"),
                                             jaxmlp.TensorBoard(tmp_path / "a")])
    for make, match in [(lambda: jaxmlp.ModelCheckpoint("w.{epoch:02d}.keras"), "templates"),
                        (lambda: jaxmlp.TensorBoard(None), "allowed a path"),
                        (lambda: jaxmlp.CSVLogger(""), "allowed a path"),
                        (lambda: jaxmlp.LearningRateScheduler(0.1), "allowed a function")]:
        with pytest.raises(jaxmlp.ConfigError, match=match):
            make()


def test_result_save_refuses_to_replace_what_it_did_not_write(stopped, tmp_path):
    r = stopped[2]
    (tmp_path / "user" / "weights").mkdir(parents=True)
    (tmp_path / "user" / "weights" / "precious.txt").write_text("x")
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "model.json").write_text('{"mine": 1}')
    (tmp_path / "d" / "model.json").mkdir(parents=True)
    for folder in ("user", "f", "d"):
        with pytest.raises(FileExistsError, match="did not write"):
            r.save(tmp_path / folder)
    assert (tmp_path / "user" / "weights" / "precious.txt").read_text() == "x"
    assert (tmp_path / "f" / "model.json").read_text() == '{"mine": 1}'
    r.save(tmp_path / "m")
    r.save(tmp_path / "m")  # a saved model's folder is replaced
    with pytest.raises(jaxmlp.DataError, match="format"):
        jaxmlp.load(tmp_path / "f")
    (tmp_path / "f" / "model.json").write_text("{not json")
    with pytest.raises(jaxmlp.DataError, match="not a jaxmlp model.json"):
        jaxmlp.load(tmp_path / "f")
    with pytest.raises(NotADirectoryError, match="is a file"):
        jaxmlp.load(tmp_path / "f" / "model.json")


def test_a_resave_killed_at_any_point_leaves_the_old_model_or_the_new(stopped, tmp_path,
                                                                      monkeypatch):
    # It used to delete model.json first: a kill during a re-save left no model at all, and
    # a kill while Orbax removed the old weights/ left a folder every later save refused.
    from jaxmlp import loop

    x, _, old = stopped
    new = jaxmlp.fit(x, stopped[1], **{**SMALL, "model": jaxmlp.MLP(hidden=(3,))}, epochs=1)
    folder = tmp_path / "m"
    old.save(folder)

    def killed(*a, **k):
        raise KeyboardInterrupt  # the process stops here

    for stage in ("_remove_old_weights", "atomic.write_json"):
        target = loop if stage.startswith("_") else loop.atomic
        name = stage.split(".")[-1]
        with monkeypatch.context() as m:
            m.setattr(target, name, killed)
            with pytest.raises(KeyboardInterrupt):
                new.save(folder)
        # before the commit (write_json): the old model; after it: the new one
        want = new if stage.startswith("_") else old
        assert np.array_equal(jaxmlp.load(folder).predict(x), want.predict(x)), stage
        old.save(folder)  # a later save clears what the killed one left
        assert sorted(p.name for p in folder.iterdir() if p.name.startswith("weights")) == [
            json.loads((folder / "model.json").read_text())["weights"]]
    assert np.array_equal(jaxmlp.load(folder).predict(x), old.predict(x))


def test_saves_into_one_folder_at_once_and_models_that_cannot_be_right(stopped, tmp_path):
    # Two processes saving into one folder: one removed the other's weights as leftovers.
    import subprocess
    import sys

    x, _, r = stopped
    r.save(tmp_path / "a")
    script = ("import jaxmlp, sys\nm = jaxmlp.load(sys.argv[1])\n"
              "for _ in range(15): m.save(sys.argv[2])\n")
    r.save(tmp_path / "both")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "a"),
                               str(tmp_path / "both")], stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    loads = 0
    while any(p.poll() is None for p in procs):  # reads meanwhile: the old model or the new
        assert np.array_equal(jaxmlp.load(tmp_path / "both").predict(x), r.predict(x))
        loads += 1
    for p in procs:
        assert p.wait() == 0, p.stderr.read()
    assert loads and np.array_equal(jaxmlp.load(tmp_path / "both").predict(x), r.predict(x))
    # model.json edited to another architecture than its weights': said, not loaded silently
    doc = json.loads((tmp_path / "a" / "model.json").read_text())
    doc["config"]["model"]["hidden"] = [65]
    (tmp_path / "a" / "model.json").write_text(json.dumps(doc))
    with pytest.raises(jaxmlp.DataError, match=r"do not fit model.json's config .*: \(64,\) "
                                               r"on disk, \(65,\) in the config"):
        jaxmlp.load(tmp_path / "a")
    doc["config"]["model"].update(hidden=[64, 8], dropout=0.0)  # another layer: another tree
    (tmp_path / "a" / "model.json").write_text(json.dumps(doc))
    with pytest.raises(jaxmlp.DataError, match="do not fit model.json's config \\(another "
                                               "architecture") as err:
        jaxmlp.load(tmp_path / "a")
    assert "\n" not in str(err.value)
    (tmp_path / "bk").mkdir()
    (tmp_path / "bk" / "backup.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="is a BackupAndRestore folder"):
        jaxmlp.load(tmp_path / "bk")


@pytest.mark.parametrize("schedule, match", [
    (lambda epoch, lr: lr if epoch < 2 else lr * 0.1, "jnp.where"),
    (lambda epoch, lr: None, "jnp.where"),
    (lambda epoch, lr: jnp.ones(3) * lr, r"shape \(3,\)"),
])
def test_a_schedule_that_cannot_run_compiled_is_one_config_error(schedule, match):
    x, y = problem(n=40)
    with pytest.raises(jaxmlp.ConfigError, match=match) as err:
        jaxmlp.fit(x, y, **SMALL, callbacks=[jaxmlp.LearningRateScheduler(schedule)])
    assert "\n" not in str(err.value)


def test_a_one_argument_schedule_is_called_with_the_epoch_as_in_keras():
    x, y = problem(n=100)
    r = jaxmlp.fit(x, y, **SMALL, epochs=3, callbacks=[
        jaxmlp.LearningRateScheduler(lambda epoch: 0.01 / (epoch + 1))])
    np.testing.assert_allclose(r.history["learning_rate"], [0.01, 0.005, 0.01 / 3], rtol=1e-6)


def test_numpy_integers_bool_labels_and_empty_arrays():
    x, y = problem(n=60)
    r = jaxmlp.fit(x, y > 1, **{**SMALL, "batch_size": np.int64(32), "seed": np.int32(1)},
                   epochs=np.int64(1), classes=np.int64(2))
    assert r.config.train.epochs == 1 and r.config.model.num_classes == 2
    assert r.predict(x[:0]).shape == (0, 2)
    errors = [
        (lambda: jaxmlp.fit(x[:0], y[:0], **SMALL), jaxmlp.DataError, "no examples"),
        (lambda: jaxmlp.fit(x, y, **SMALL, validation_data=(x[:0], y[:0])), jaxmlp.DataError,
         "validation_data: no examples"),
        (lambda: r.evaluate(x[:0], y[:0]), jaxmlp.DataError, "no examples"),
        (lambda: jaxmlp.fit(x, y.astype(str), **SMALL), jaxmlp.DataError, "integer class ids"),
        (lambda: jaxmlp.fit(x.astype(np.complex128), y, **SMALL), jaxmlp.DataError, "real"),
        (lambda: jaxmlp.fit(x, y, **SMALL, epochs=0), jaxmlp.ConfigError, "fit: epochs=0"),
        (lambda: jaxmlp.fit(x, y, **SMALL, callbacks=jaxmlp.EarlyStopping()), jaxmlp.ConfigError,
         "a list of callbacks"),
        (lambda: jaxmlp.EarlyStopping(min_delta="0.1"), jaxmlp.ConfigError, "min_delta"),
    ]
    for call, kind, match in errors:
        with pytest.raises(kind, match=match) as err:
            call()
        assert "\n" not in str(err.value)


def interrupted_fit(monkeypatch, epoch: int, *args, **kwargs):
    """`jaxmlp.fit` interrupted once `epoch`'s files are written: the observer raises, as a
    crash would (training may have run ahead by up to loop.OBSERVERS_BEHIND chunks)."""
    from jaxmlp import callbacks as CB

    written = CB.Effects.epoch

    def epoch_then_fail(self, e, row, state):
        written(self, e, row, state)
        if e == epoch:
            raise RuntimeError(f"interrupted at epoch {epoch}")

    with monkeypatch.context() as m:
        m.setattr(CB.Effects, "epoch", epoch_then_fail)
        return jaxmlp.fit(*args, **kwargs)


def test_a_model_checkpoint_loads_while_a_fit_is_writing_it(tmp_path):
    # A reviewer's loop: 7.6-9 % of loads failed with raw Orbax or TensorStore errors (a step
    # renamed away, a half-deleted one) or said "saved no weights yet" mid-fit. Here a second
    # process writes every epoch's checkpoint while this one loads it, 40 times.
    import subprocess
    import sys

    folder = tmp_path / "ck"
    writer = subprocess.Popen([sys.executable, "-c", (
        "import numpy as np, jaxmlp\n"
        "rng = np.random.default_rng(0)\n"
        "x = rng.normal(size=(64, 8)).astype('float32'); y = (x[:, 0] > 0).astype(int)\n"
        "jaxmlp.fit(x, y, model=jaxmlp.MLP((8,)), epochs=100000, batch_size=64, verbose=0,\n"
        f"           callbacks=[jaxmlp.ModelCheckpoint({str(folder)!r})])\n")],
        stderr=subprocess.DEVNULL)
    x = np.zeros((2, 8), "float32")
    try:
        loads = 0
        while loads < 40:
            assert writer.poll() is None, "the writer stopped"
            try:
                jaxmlp.load(folder).predict(x)
                loads += 1
            except FileNotFoundError:
                assert loads == 0  # before the fit's first save only
    finally:
        writer.kill()
        writer.wait()


def test_a_checkpoint_folder_without_a_complete_step_for_a_moment_is_read_again(tmp_path,
                                                                                monkeypatch):
    # Beside a writing fit, a load once listed no finalized step and no temporary folder (the
    # new step renamed, not yet marked complete; the old one being removed) and said "saved
    # no weights yet" mid-fit. A folder with anything in it is listed again; an empty one is
    # still FileNotFoundError at once.
    import orbax.checkpoint as ocp

    x, y = problem(n=64)
    jaxmlp.fit(x, y, **{**SMALL, "epochs": 1},
               callbacks=[jaxmlp.ModelCheckpoint(tmp_path / "ck")])
    listed, calls = ocp.utils.checkpoint_steps, []

    def for_a_moment_none(folder):
        calls.append(folder)
        return [] if len(calls) <= 2 else listed(folder)

    monkeypatch.setattr(ocp.utils, "checkpoint_steps", for_a_moment_none)
    assert jaxmlp.load(tmp_path / "ck").predict(x).shape == (64, 4) and len(calls) == 3
    (tmp_path / "empty" / "latest").mkdir(parents=True)
    (tmp_path / "empty" / "model.json").write_text((tmp_path / "ck" / "model.json").read_text())
    calls.clear()
    with pytest.raises(FileNotFoundError, match="saved no weights yet"):
        jaxmlp.load(tmp_path / "empty")
    assert len(calls) == 1


def test_a_resumed_fit_keeps_its_model_checkpoints_until_it_saves_new_ones(tmp_path,
                                                                           monkeypatch):
    # A resumed fit emptied its ModelCheckpoint folders at its first save: killed before that
    # save finished, the fit had no checkpoint at all (a best from long ago included).
    from jaxmlp import observers

    x, y = problem(n=300, noise=1.0)
    kw = {**SMALL, "model": jaxmlp.MLP(hidden=(16,)), "epochs": 8, "validation_split": 0.2}
    whole = jaxmlp.fit(x, y, **kw)

    def callbacks():
        return [jaxmlp.BackupAndRestore(tmp_path / "bk"),
                jaxmlp.ModelCheckpoint(tmp_path / "best", save_best_only=True),
                jaxmlp.ModelCheckpoint(tmp_path / "every")]

    with pytest.raises(RuntimeError, match="interrupted"):
        interrupted_fit(monkeypatch, 4, x, y, **kw, callbacks=callbacks())
    before = {k: jaxmlp.load(tmp_path / k).predict(x) for k in ("best", "every")}

    def dies_while_saving(self, *a, **k):
        raise RuntimeError("killed before its first save")

    with monkeypatch.context() as m:  # killed inside the first save of each folder
        m.setattr(observers.CheckpointStore, "save_best", dies_while_saving)
        m.setattr(observers.CheckpointStore, "save_latest", dies_while_saving)
        with pytest.raises(RuntimeError, match="killed before"):
            jaxmlp.fit(x, y, **kw, callbacks=callbacks())
    for k in ("best", "every"):  # still the checkpoints the first fit saved
        assert np.array_equal(jaxmlp.load(tmp_path / k).predict(x), before[k])
    done = jaxmlp.fit(x, y, **kw, callbacks=callbacks())
    assert done.history == whole.history
    best = int(np.argmin(whole.history["val_loss"]))
    assert [p.name for p in (tmp_path / "best" / "best").iterdir() if p.name.isdigit()] == \
        [str(best)]
    assert [p.name for p in (tmp_path / "every" / "latest").iterdir() if p.name.isdigit()] == \
        [str(len(whole.history["loss"]) - 1)]
    assert np.array_equal(jaxmlp.load(tmp_path / "every").predict(x), whole.predict(x))


def test_a_resumed_fits_verbose_lines_go_on_from_the_backup(tmp_path, monkeypatch, capsys):
    # The plateau's count of cuts and the best value started from scratch after a resume:
    # "reducing learning rate" at an epoch without a cut, "did not improve from None".
    x, y = problem(n=300, noise=2.0)
    kw = {**SMALL, "optimizer": jaxmlp.Adam(0.05), "epochs": 10, "validation_split": 0.3}

    def callbacks(folder):
        return [jaxmlp.BackupAndRestore(tmp_path / "bk"),
                jaxmlp.ReduceLROnPlateau(patience=1, factor=0.5, verbose=1),
                jaxmlp.ModelCheckpoint(tmp_path / folder, save_best_only=True, verbose=1)]

    capsys.readouterr()
    jaxmlp.fit(x, y, **kw, callbacks=callbacks("ck")[1:])
    whole = capsys.readouterr().out.replace(str(tmp_path / "ck"), "CK").splitlines()
    with pytest.raises(RuntimeError, match="interrupted"):
        interrupted_fit(monkeypatch, 4, x, y, **kw, callbacks=callbacks("ck2"))
    capsys.readouterr()
    jaxmlp.fit(x, y, **{**kw, "verbose": 1}, callbacks=callbacks("ck2"))
    out = capsys.readouterr().out.replace(str(tmp_path / "ck2"), "CK").splitlines()
    done = int(re.match(r"resumed from .* after (\d+) epochs$", out[0]).group(1))
    later = [line for line in out if line.startswith("Epoch ")]
    assert later and later == [line for line in whole
                               if int(line.split()[1].rstrip(":")) > done]


def test_backup_and_restore_resumes_an_interrupted_fit_bit_for_bit(tmp_path, monkeypatch, capsys):
    x, y = problem(n=300, noise=1.0)
    kw = {**SMALL, "model": jaxmlp.MLP(hidden=(16,), dropout=0.2), "epochs": 8,
          "validation_split": 0.2}

    def callbacks(*extra):
        return [jaxmlp.EarlyStopping(patience=3, restore_best_weights=True),
                jaxmlp.ReduceLROnPlateau(patience=1, factor=0.5), *extra]

    whole = jaxmlp.fit(x, y, **kw, callbacks=callbacks())
    backup, log = jaxmlp.BackupAndRestore(tmp_path / "bk"), jaxmlp.CSVLogger(tmp_path / "h.csv")
    with pytest.raises(RuntimeError, match="interrupted"):
        interrupted_fit(monkeypatch, 3, x, y, **kw, callbacks=callbacks(backup, log))
    assert (tmp_path / "bk" / "backup.json").exists()
    with pytest.raises(jaxmlp.ConfigError, match=r"another fit \(config.train.epochs: 8 -> 9\)"):
        jaxmlp.fit(x, y, **{**kw, "epochs": 9}, callbacks=callbacks(backup))
    with pytest.raises(jaxmlp.ConfigError, match=r"another fit \(data.sha1"):
        jaxmlp.fit(x + 1, y, **kw, callbacks=callbacks(backup))  # other data, same shapes
    capsys.readouterr()
    resumed = jaxmlp.fit(x, y, **{**kw, "verbose": 1}, callbacks=callbacks(backup, log))
    out = capsys.readouterr().out
    # The backup is the last chunk the observers finished: epoch 3's raised, and training may
    # have run ahead by up to OBSERVERS_BEHIND chunks, whose observers still ran.
    done = int(re.match(r"resumed from .* after (\d+) epochs$", out.splitlines()[0]).group(1))
    assert 3 <= done < len(whole.history["loss"])
    assert out.count("\nepoch ") == len(whole.history["loss"]) - done  # only the epochs it ran
    assert resumed.history == whole.history  # every epoch, bit for bit
    for a, b in zip(jax.tree.leaves(resumed.params), jax.tree.leaves(whole.params)):
        assert np.array_equal(a, b)
    assert not (tmp_path / "bk").exists()  # delete_checkpoint=True, as Keras
    rows = list(csv.DictReader(open(tmp_path / "h.csv")))
    assert [float(r["loss"]) for r in rows] == pytest.approx(whole.history["loss"], rel=1e-12)


def test_a_backup_made_with_another_schedule_function_is_refused(tmp_path):
    # The function is not in the config (a placeholder is): the backup hashes its jaxpr.
    x, y = problem(n=100)
    backup = jaxmlp.BackupAndRestore(tmp_path / "bk", delete_checkpoint=False)
    kw = {**SMALL, "epochs": 2}
    jaxmlp.fit(x, y, **kw, callbacks=[backup, jaxmlp.LearningRateScheduler(
        lambda epoch, lr: lr * 0.5)])
    with pytest.raises(jaxmlp.ConfigError, match=r"another fit \(schedule_function: 'sha1:"):
        jaxmlp.fit(x, y, **kw, callbacks=[backup, jaxmlp.LearningRateScheduler(
            lambda epoch, lr: lr * 0.25)])
    with pytest.raises(jaxmlp.ConfigError, match="schedule_function"):
        jaxmlp.fit(x, y, **kw, callbacks=[backup])  # none now
    again = jaxmlp.fit(x, y, **{**kw, "verbose": 0}, callbacks=[
        backup, jaxmlp.LearningRateScheduler(lambda epoch, lr: lr * 0.5)])  # same, new lambda
    assert len(again.history["loss"]) == 2


def test_a_fresh_fit_owns_its_backup_and_checkpoint_folders(tmp_path):
    x, y = problem(n=200)
    kw = {**SMALL, "epochs": 2}
    # An earlier fit's unfinished backup (a save killed before Orbax renamed it) and its
    # backup.json: a new fit starts afresh and writes its own backup.json.
    bk = tmp_path / "bk"
    (bk / "latest" / "1.orbax-checkpoint-tmp-7").mkdir(parents=True)
    (bk / "backup.json").write_text('{"format": "jaxmlp.backup/1", "config": {}, "data": null}')
    backup = jaxmlp.BackupAndRestore(bk, delete_checkpoint=False)
    first = jaxmlp.fit(x, y, **kw, callbacks=[backup])
    assert not list((bk / "latest").glob("*tmp*"))
    again = jaxmlp.fit(x, y, **kw, callbacks=[backup])  # resumes this fit's finished backup
    assert again.history == first.history
    # A ModelCheckpoint folder of an earlier fit is emptied when a fit that never saves starts
    # (no validation data for val_loss): load must not give the earlier fit's model.
    ck = jaxmlp.ModelCheckpoint(tmp_path / "ck", save_best_only=True)
    jaxmlp.fit(x, y, **kw, validation_split=0.25, callbacks=[ck])
    with pytest.warns(UserWarning, match="not available"):
        jaxmlp.fit(x, y, **kw, callbacks=[ck])
    with pytest.raises(FileNotFoundError, match="no model.json"):
        jaxmlp.load(tmp_path / "ck")
    # Folders one inside the other: a ModelCheckpoint or backup folder is replaced or deleted
    # whole, so nesting anything in it (or it in another) is refused before training.
    for cbs in ([jaxmlp.ModelCheckpoint(tmp_path / "m"), jaxmlp.BackupAndRestore(tmp_path / "m/b")],
                [jaxmlp.BackupAndRestore(tmp_path / "b"), jaxmlp.CSVLogger(tmp_path / "b/l.csv")]):
        with pytest.raises(jaxmlp.ConfigError, match="one inside the"):
            jaxmlp.fit(x, y, **kw, callbacks=cbs)


def test_a_resumed_fit_shows_each_epoch_once_in_tensorboard(tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    x, y = problem(n=200)
    kw = {**SMALL, "epochs": 6, "validation_split": 0.25}
    cbs = [jaxmlp.BackupAndRestore(tmp_path / "bk"), jaxmlp.TensorBoard(tmp_path / "tb")]
    with pytest.raises(RuntimeError, match="interrupted"):
        interrupted_fit(monkeypatch, 3, x, y, **kw, callbacks=cbs)
    r = jaxmlp.fit(x, y, **kw, callbacks=cbs)
    for split, key in (("train", "loss"), ("validation", "val_loss")):
        events = EventAccumulator(str(tmp_path / "tb" / split)).Reload().Scalars("epoch_loss")
        assert [e.step for e in events] == list(range(6))
        assert [e.value for e in events] == pytest.approx(r.history[key], rel=1e-6)



REFIT = dict(model=jaxmlp.MLP(hidden=(16,), dropout=0.3), batch_size=64, verbose=0, epochs=3,
             validation_split=0.25, optimizer=jaxmlp.Adam(1e-2),
             callbacks=[jaxmlp.LearningRateScheduler(lambda e, lr: lr * 0.7),
                        jaxmlp.EarlyStopping(patience=1)])


@pytest.fixture(scope="module")
def refit():
    """The programs a first fit (REFIT on 300 examples) built, to start each second fit from."""
    from jaxmlp import group

    x, y = problem(n=300, noise=1.0)
    group._BUILT.clear()
    first = jaxmlp.fit(x, y, **REFIT)
    return x, y, first, dict(group._BUILT)


def refit_and_fresh(refit, x, y, second: dict):
    """`second` fitted where only the first fit's programs exist, and again from nothing;
    returns (that fit, the fresh one, whether the first one built anything)."""
    from jaxmlp import group

    group._BUILT.clear()
    group._BUILT.update(refit[3])
    reused = jaxmlp.fit(x, y, **second)
    new = group._BUILT.keys() != refit[3].keys()
    group._BUILT.clear()
    fresh = jaxmlp.fit(x, y, **second)
    for p, q in zip(jax.tree.leaves((reused.params, reused.batch_stats)),
                    jax.tree.leaves((fresh.params, fresh.batch_stats)), strict=True):
        np.testing.assert_array_equal(p, q)
    assert reused.history == fresh.history
    return reused, fresh, new


def test_a_fit_that_differs_only_in_numbers_reuses_the_compiled_programs(refit):
    # Seed, learning rate, dropout rate, patience and epochs are numbers in the train state:
    # the second fit runs the first one's programs and still gets exactly its own numbers.
    x, y, first, _ = refit
    second = dict(REFIT, seed=1, optimizer=jaxmlp.Adam(3e-3), epochs=5,
                  model=jaxmlp.MLP(hidden=(16,), dropout=0.1),
                  callbacks=[jaxmlp.LearningRateScheduler(lambda e, lr: lr * 0.7),
                             jaxmlp.EarlyStopping(patience=3)])
    reused, _, new = refit_and_fresh(refit, x, y, second)
    assert not new
    assert reused.history != first.history


@pytest.mark.parametrize("change", [
    dict(model=jaxmlp.MLP(hidden=(16,))),              # no dropout: the program draws no masks
    dict(model=jaxmlp.MLP(hidden=(16,), dropout=0.3, l2=1e-3)),  # an L2 term
    dict(n=280),                                       # another number of training examples
    dict(validation_split=0.0, callbacks=[]),          # no validation data
    dict(callbacks=[jaxmlp.LearningRateScheduler(lambda e, lr: lr * 0.9),
                    jaxmlp.EarlyStopping(patience=1)]),
])
def test_what_a_compiled_program_closes_over_gets_a_program_of_its_own(refit, change):
    x, y, _, _ = refit
    n = change.pop("n", len(x))
    _, _, new = refit_and_fresh(refit, x[:n], y[:n], {**REFIT, **change})
    assert new


def test_fit_many_gives_each_config_the_result_fit_gives_it(capsys):
    # Four fits, two programs: the first three differ only in numbers (seed, learning rate,
    # callbacks' arguments, epochs); the fourth has no dropout.
    from jaxmlp import group

    x, y = problem(n=300, noise=1.0)
    shared = dict(model=jaxmlp.MLP(hidden=(16,), dropout=0.3), optimizer=jaxmlp.Adam(1e-2),
                  epochs=6, batch_size=64, validation_split=0.25,
                  callbacks=[jaxmlp.EarlyStopping(patience=2, restore_best_weights=True,
                                                  verbose=1)])
    configs = [dict(seed=0), dict(seed=1, optimizer=jaxmlp.Adam(3e-3)),
               dict(seed=2, epochs=5, callbacks=[jaxmlp.EarlyStopping(  # stops after epoch 2
                   monitor="loss", min_delta=10.0, patience=0, verbose=1)]),
               dict(model=jaxmlp.MLP(hidden=(16,)))]
    group._BUILT.clear()
    many = jaxmlp.fit_many(x, y, configs, verbose=1, **shared)
    assert len(group._BUILT) == 2
    out = capsys.readouterr().out.splitlines()
    assert any(line.startswith("[configs 0-2] epoch 1/6: 3/3 active") for line in out)
    assert any(line.startswith("[configs 0-2] epoch 3/6: 2/3 active") for line in out)
    assert any(line.startswith("[config 3] epoch 1/6  loss ") for line in out)
    assert "[config 2] Epoch 2: early stopping" in out
    for i, cfg in enumerate(configs):
        solo = jaxmlp.fit(x, y, **{**shared, **cfg, "verbose": 0})
        said = [line.removeprefix(f"[config {i}] ") for line in out
                if line.startswith(f"[config {i}] ") and " epoch " not in line[:20]]
        assert said == capsys.readouterr().out.splitlines()  # the callbacks' own lines
        assert many[i].config == solo.config and many[i].history == solo.history
        for p, q in zip(jax.tree.leaves((many[i].params, many[i].batch_stats)),
                        jax.tree.leaves((solo.params, solo.batch_stats)), strict=True):
            np.testing.assert_array_equal(p, q)
    assert len(many[2].history["loss"]) == 2 and len(many[0].history["loss"]) > 2


def test_fit_many_refuses_what_it_cannot_do_in_one_line(tmp_path):
    x, y = problem(n=100)
    errors = [
        ([], "configs=\\[\\] is invalid: allowed a non-empty list of dicts"),
        (dict(seed=1), "configs=\\{'seed': 1\\} is invalid"),
        ([dict(seed=0), 3], "configs\\[1\\]=3 is invalid: allowed a dict of model, optimizer"),
        ([dict(validation_split=0.2)], "configs\\[0\\]: validation_split= is shared by every "
                                       "fit: pass it to fit_many itself"),
        ([dict(lr=0.1)], "configs\\[0\\]: lr= is not a fit argument; allowed in a config: model"),
        ([dict(), dict(epochs=0)], "configs\\[1\\]: epochs=0 is invalid: allowed an integer"),
        ([dict(callbacks=[jaxmlp.CSVLogger(str(tmp_path / "log.csv"))])],
         "configs\\[0\\]: CSVLogger writes one fit's files; fit_many takes the callbacks that "
         "write nothing"),
        ([dict(), dict(callbacks=["stop"])], "^fit_many: configs\\[1\\]: callbacks"),
    ]
    for configs, match in errors:
        with pytest.raises(jaxmlp.ConfigError, match=match) as err:
            jaxmlp.fit_many(x, y, configs, verbose=0)
        assert "\n" not in str(err.value)
    with pytest.raises(jaxmlp.ConfigError, match="^fit_many: callbacks='x' is invalid"):
        jaxmlp.fit_many(x, y, [dict(seed=0), dict(seed=1)], callbacks="x")
    with pytest.raises(jaxmlp.ConfigError, match="^fit_many: ModelCheckpoint writes one fit's"):
        jaxmlp.fit_many(x, y, [dict(seed=0)], callbacks=[jaxmlp.ModelCheckpoint(tmp_path)])
    with pytest.raises(jaxmlp.ConfigError, match="fit_many: class_weight= is a Keras fit"):
        jaxmlp.fit_many(x, y, [dict()], class_weight={0: 1.0})
    with pytest.raises(jaxmlp.ConfigError, match="fit_many: unknown argument foo=; allowed x, "
                                                 "y, configs, model"):
        jaxmlp.fit_many(x, y, [dict()], foo=1)
    assert list(tmp_path.iterdir()) == []


def test_fit_many_vmapped_as_on_a_gpu_groups_more_and_agrees_with_fit(monkeypatch):
    # Where members are vmapped (accelerators; forced here on the CPU), a fit without dropout
    # shares the program of fits with it, and every Result agrees with fit's to rounding.
    from jaxmlp import group

    x, y = problem(n=300, noise=1.0)
    shared = dict(model=jaxmlp.MLP(hidden=(16,), dropout=0.3), optimizer=jaxmlp.Adam(1e-2),
                  epochs=3, batch_size=64, validation_split=0.25, verbose=0)
    configs = [dict(seed=0), dict(seed=1, model=jaxmlp.MLP(hidden=(16,)))]
    monkeypatch.setattr(group, "member_axis", lambda: "vmap")
    group._BUILT.clear()
    many = jaxmlp.fit_many(x, y, configs, **shared)
    assert len(group._BUILT) == 1
    for r, cfg in zip(many, configs):
        solo = jaxmlp.fit(x, y, **{**shared, **cfg})
        for k, v in solo.history.items():
            np.testing.assert_allclose(r.history[k], v, rtol=2e-5, atol=1e-6)


def test_integer_optimizer_numbers_train_as_the_same_floats():
    # inject_hyperparams gave SGD(1)'s learning rate an integer slot: a schedule halving it
    # trained at 0 (and the first config's dtype held for every fit_many member).
    x, y = problem(n=120)
    kw = dict(model=jaxmlp.MLP(hidden=(8,)), epochs=3, batch_size=32, verbose=0,
              callbacks=[jaxmlp.LearningRateScheduler(lambda e, lr: lr * 0.5)])
    ints = jaxmlp.fit(x, y, optimizer=jaxmlp.SGD(1, momentum=0), **kw)
    floats = jaxmlp.fit(x, y, optimizer=jaxmlp.SGD(1.0, momentum=0.0), **kw)
    assert ints.history["learning_rate"] == [0.5, 0.25, 0.125]
    assert ints.history == floats.history


def test_a_jitted_schedule_over_another_table_is_another_schedule():
    # A jax.jit function inside the schedule keeps its constants in its own jaxpr: the
    # fingerprint (reuse, fit_many's programs, BackupAndRestore) must see them.
    from jaxmlp.epoch import schedule_fingerprint

    def schedule(table):
        return jax.jit(lambda epoch, lr: jnp.asarray(table, jnp.float32)[epoch])

    a, b = schedule([0.1, 0.01, 0.001]), schedule([0.5, 0.5, 0.5])
    assert schedule_fingerprint(a) != schedule_fingerprint(b)
    assert schedule_fingerprint(a) == schedule_fingerprint(schedule([0.1, 0.01, 0.001]))
    x, y = problem(n=120)
    kw = dict(model=jaxmlp.MLP(hidden=(8,)), epochs=3, batch_size=32, verbose=0)
    jaxmlp.fit(x, y, callbacks=[jaxmlp.LearningRateScheduler(a)], **kw)
    r = jaxmlp.fit(x, y, callbacks=[jaxmlp.LearningRateScheduler(b)], **kw)
    assert r.history["learning_rate"] == [0.5, 0.5, 0.5]


def test_a_schedulers_line_comes_before_its_epochs_line_as_in_keras(capsys):
    x, y = problem(n=120)
    jaxmlp.fit(x, y, model=jaxmlp.MLP(hidden=(8,)), epochs=2, batch_size=32, verbose=1,
               callbacks=[jaxmlp.LearningRateScheduler(lambda e, lr: 0.01, verbose=1)])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("Epoch 1: LearningRateScheduler setting learning rate to ")
    assert out[1].startswith("epoch 1/2  loss ")
    assert out[2].startswith("Epoch 2: LearningRateScheduler") and out[3].startswith("epoch 2/2")
