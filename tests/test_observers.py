"""jaxmlp.observers and jaxmlp.atomic: real Orbax checkpoints, real event files, no mocks."""

import gc
import json
import os
import shutil
import stat
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from jaxmlp import atomic, observers
from jaxmlp.observers import CheckpointError, CheckpointStore, HistoryLog

MEMBERS = 3  # leading member axis: a vmapped group of runs

# A failed Orbax restore (the corruption tests) abandons TensorStore coroutines, which complain
# ("never awaited", "Event loop is closed") whenever the garbage collector finds them: noise from
# inside Orbax. `failed_restores` collects them before its test ends; these filters hide them.
pytestmark = [pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
              pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning")]


@pytest.fixture
def failed_restores():
    yield
    gc.collect()


class State(NamedTuple):
    params: dict
    batch_stats: dict
    opt_state: Any
    key: jax.Array
    step: jax.Array
    epoch: jax.Array
    hooks: dict


def make_state(seed: int) -> State:
    """A train state shaped like jaxmlp's, different bits for every seed, NaN and -0.0 included."""
    rng = np.random.default_rng(seed)
    params = {"dense_0": {"kernel": rng.normal(size=(MEMBERS, 4, 8)).astype(np.float32),
                          "bias": np.array([[0.0, -0.0, np.nan, 1.5, 2, 3, 4, 5]] * MEMBERS,
                                           np.float32)},
              "dense_1": {"kernel": rng.normal(size=(MEMBERS, 8, 2)).astype(np.float32)}}
    params = jax.tree.map(jnp.asarray, params)
    tx = optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)
    opt_state = jax.vmap(tx.init)(params)
    keys = jax.random.split(jax.random.key(seed), MEMBERS)
    return State(
        params=params,
        batch_stats={"bn": {"mean": jnp.full((MEMBERS, 8), seed, jnp.float32)}},
        opt_state=opt_state,
        key=jax.random.key_data(keys),  # uint32 (MEMBERS, 2)
        step=jnp.int32(100 * seed), epoch=jnp.int32(seed),
        hooks={"early_stopping": {"wait": jnp.full((MEMBERS,), seed, jnp.int32),
                                  "best": jnp.full((MEMBERS,), jnp.inf, jnp.float32)}})


def assert_bitwise_equal(got, want):
    assert type(got) is type(want)
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        g, w = np.asarray(g), np.asarray(w)
        assert g.dtype == w.dtype and g.shape == w.shape
        assert g.tobytes() == w.tobytes()


def leaf_dtypes(tree):
    return [np.asarray(x).dtype for x in jax.tree.leaves(tree)]


def store_with_epochs(directory, epochs=(1, 2, 3), **kwargs) -> CheckpointStore:
    store = CheckpointStore(directory, **kwargs)
    for epoch in epochs:
        store.save_latest(epoch, make_state(epoch), extra={"history": {"loss": [0.5] * epoch}})
    store.wait()
    return store


# --- CheckpointStore: latest ------------------------------------------------------------------

def test_restore_latest_gives_newest_epoch_bitwise(tmp_path):
    with store_with_epochs(tmp_path) as store:
        epoch, state, extra = store.restore_latest(make_state(0))
    assert epoch == 3
    assert extra == {"history": {"loss": [0.5] * 3}}
    assert_bitwise_equal(state, make_state(3))
    assert state.key.dtype == np.uint32 and state.key.shape == (MEMBERS, 2)


def test_keeps_only_keep_latest_steps(tmp_path):
    store_with_epochs(tmp_path, epochs=(1, 2, 3, 4), keep_latest=2).close()
    assert sorted(p.name for p in (tmp_path / "latest").iterdir() if p.is_dir()) == ["3", "4"]


def test_restore_accepts_an_abstract_template(tmp_path):
    abstract = jax.eval_shape(lambda: make_state(0))
    with store_with_epochs(tmp_path, epochs=(1,)) as store:
        epoch, state, _ = store.restore_latest(abstract)
    assert epoch == 1
    assert_bitwise_equal(state, make_state(1))


def test_no_checkpoint_restores_none(tmp_path):
    with CheckpointStore(tmp_path) as store:
        assert store.restore_latest(make_state(0)) is None
        assert store.restore_best(make_state(0)) is None


def test_save_latest_refuses_an_epoch_not_after_the_newest(tmp_path):
    # Orbax itself would skip such a save without a word.
    with store_with_epochs(tmp_path) as store, pytest.raises(ValueError, match="already holds"):
        store.save_latest(2, make_state(2))


def test_a_new_store_resumes_from_an_existing_directory(tmp_path):
    store_with_epochs(tmp_path).close()
    with CheckpointStore(tmp_path) as store:
        epoch, state, _ = store.restore_latest(make_state(0))
        store.save_latest(epoch + 1, state)
        store.wait()
        assert store.restore_latest(make_state(0))[0] == 4


# --- CheckpointStore: best --------------------------------------------------------------------

def test_best_min_keeps_lowest_value_and_latest_separately(tmp_path):
    with CheckpointStore(tmp_path, monitor="val_loss", mode="min") as store:
        saved = []
        for epoch, val_loss in zip((1, 2, 3), (0.5, 0.4, 0.45)):
            store.save_latest(epoch, make_state(epoch))
            saved.append(store.save_best(epoch, make_state(epoch).params, val_loss))
        store.wait()
        assert saved == [True, True, False]
        epoch, params, info = store.restore_best(make_state(0).params)
        assert (epoch, info) == (2, {"epoch": 2, "val_loss": 0.4})
        assert_bitwise_equal(params, make_state(2).params)
        assert store.restore_latest(make_state(0))[0] == 3
        assert store.best.best_step() == 2  # Orbax's own ranking agrees (best_mode="min")
    assert [p.name for p in (tmp_path / "best").iterdir() if p.is_dir()] == ["2"]


def test_best_max_keeps_highest_value(tmp_path):
    with CheckpointStore(tmp_path, monitor="val_accuracy", mode="max") as store:
        for epoch, acc in zip((1, 2, 3), (0.7, 0.9, 0.8)):
            store.save_latest(epoch, make_state(epoch))
            store.save_best(epoch, make_state(epoch), acc)
        store.wait()
        epoch, state, info = store.restore_best(make_state(0))
        assert (epoch, info["val_accuracy"]) == (2, 0.9)
        assert_bitwise_equal(state, make_state(2))
        assert store.restore_latest(make_state(0))[0] == 3


def test_best_value_survives_a_restart_and_nan_never_wins(tmp_path):
    with CheckpointStore(tmp_path) as store:
        assert store.save_best(1, make_state(1), 0.4)
    with CheckpointStore(tmp_path) as store:
        assert not store.save_best(2, make_state(2), 0.45)
        assert not store.save_best(3, make_state(3), float("nan"))
        assert store.save_best(4, make_state(4), 0.3)
        store.wait()
        assert store.restore_best(make_state(0))[0] == 4
    assert [p.name for p in (tmp_path / "best").iterdir() if p.is_dir()] == ["4"]


# --- CheckpointStore: atomicity and corruption -------------------------------------------------

def truncate_data_files(step_dir: Path):
    for f in (step_dir / "state" / "d").iterdir():
        with open(f, "r+b") as fh:
            fh.truncate(10)


CORRUPTIONS = {
    "truncated arrays": truncate_data_files,
    "deleted manifest": lambda d: (d / "state" / "manifest.ocdbt").unlink(),
    "deleted extra": lambda d: (d / "extra" / "metadata").unlink(),
    "empty step folder": lambda d: [shutil.rmtree(d), d.mkdir()],
}


@pytest.mark.parametrize("corrupt", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_corrupt_newest_falls_back_to_previous_with_a_warning(tmp_path, corrupt,
                                                             failed_restores):
    store_with_epochs(tmp_path).close()
    corrupt(tmp_path / "latest" / "3")
    with CheckpointStore(tmp_path) as store:
        with pytest.warns(UserWarning, match="cannot be restored, restored epoch 2"):
            epoch, state, _ = store.restore_latest(make_state(0))
        assert epoch == 2
        assert_bitwise_equal(state, make_state(2))
        # The unreadable step is moved aside, so training can write epoch 3 again.
        assert (tmp_path / "unreadable" / "latest-3").is_dir()
        store.save_latest(3, make_state(3))
        store.wait()
        assert store.restore_latest(make_state(0))[0] == 3


def test_killed_save_leaves_a_tmp_folder_that_is_ignored_and_cleaned(tmp_path):
    store_with_epochs(tmp_path).close()
    tmp = tmp_path / "latest" / "4.orbax-checkpoint-tmp"
    shutil.copytree(tmp_path / "latest" / "3", tmp)
    truncate_data_files(tmp)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback needed: the tmp folder is not a step
        with CheckpointStore(tmp_path) as store:
            assert store.restore_latest(make_state(0))[0] == 3
    assert not tmp.exists()


def test_truncated_best_metrics_are_set_aside_instead_of_breaking_the_store(tmp_path):
    # Orbax itself raises JSONDecodeError when it opens a best folder holding such a file.
    with CheckpointStore(tmp_path) as store:
        store.save_best(1, make_state(1), 0.4)
    with open(tmp_path / "best" / "1" / "metrics" / "metrics", "r+b") as f:
        f.truncate(3)
    with pytest.warns(UserWarning, match="unreadable metrics"):
        store = CheckpointStore(tmp_path)
    with store:
        assert store.restore_best(make_state(0)) is None
        assert store.save_best(2, make_state(2), 0.5)
    assert (tmp_path / "unreadable" / "best-1").is_dir()


def test_all_checkpoints_corrupt_raises_and_moves_nothing(tmp_path, failed_restores):
    store_with_epochs(tmp_path, epochs=(1, 2)).close()
    for epoch in (1, 2):
        truncate_data_files(tmp_path / "latest" / str(epoch))
    with CheckpointStore(tmp_path) as store:
        with pytest.raises(CheckpointError, match="none can be restored") as error:
            store.restore_latest(make_state(0))
    assert "epoch 1:" in str(error.value) and "epoch 2:" in str(error.value)
    assert not (tmp_path / "unreadable").exists()


def test_template_of_another_shape_is_an_error_not_a_silent_reshape(tmp_path,
                                                                   failed_restores):
    store_with_epochs(tmp_path, epochs=(1,)).close()
    wrong = make_state(0)._replace(key=jnp.zeros((MEMBERS + 1, 2), jnp.uint32))
    with CheckpointStore(tmp_path) as store:
        with pytest.raises(CheckpointError, match="shape"):
            store.restore_latest(wrong)


def test_plain_orbax_reads_the_checkpoints(tmp_path):
    with store_with_epochs(tmp_path) as store:
        store.save_best(2, make_state(2), 0.4)
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, make_state(0))
    state = ocp.StandardCheckpointer().restore(tmp_path / "latest" / "3" / "state", abstract)
    assert_bitwise_equal(state, make_state(3))
    with ocp.CheckpointManager(tmp_path / "best") as manager:
        out = manager.restore(2, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), extra=ocp.args.JsonRestore()))
    assert_bitwise_equal(out["state"], make_state(2))
    assert out["extra"] == {"epoch": 2, "val_loss": 0.4}


# --- HistoryLog ----------------------------------------------------------------------------------

ROWS = [{"val_loss": 0.9, "loss": 1.0, "accuracy": 0.5, "val_accuracy": 0.4, "learning_rate": 1e-3},
        {"val_loss": 0.7, "loss": 0.8, "accuracy": 0.6, "val_accuracy": 0.5, "learning_rate": 1e-3},
        {"val_loss": float("nan"), "loss": 0.6, "accuracy": 0.7, "val_accuracy": 0.6,
         "learning_rate": 1e-4}]


def test_history_csv_is_keras_csvlogger_layout_and_json_is_history_dict(tmp_path):
    log = HistoryLog(tmp_path / "h.csv", tmp_path / "h.json")
    for epoch, row in enumerate(ROWS):
        log.append(epoch, row)
    lines = (tmp_path / "h.csv").read_text().splitlines()
    assert lines[0] == "epoch,accuracy,learning_rate,loss,val_accuracy,val_loss"
    assert lines[1] == "0,0.5,0.001,1.0,0.4,0.9"
    assert lines[3] == "2,0.7,0.0001,0.6,0.6,nan"
    doc = json.loads((tmp_path / "h.json").read_text())
    assert list(doc) == ["epoch", "accuracy", "learning_rate", "loss", "val_accuracy", "val_loss"]
    assert doc["epoch"] == [0, 1, 2]
    assert doc["val_loss"] == [0.9, 0.7, None]  # strict JSON: NaN is null
    assert sorted(os.listdir(tmp_path)) == ["h.csv", "h.json"]  # no temp files left


def test_history_load_round_trips_and_resume_replaces_replayed_epochs(tmp_path):
    path = tmp_path / "h.csv"
    log = HistoryLog(path)
    for epoch, row in enumerate(ROWS):
        log.append(epoch, row)
    loaded = HistoryLog.load(path)
    assert loaded["epoch"] == [0, 1, 2]
    np.testing.assert_array_equal(loaded["val_loss"], [0.9, 0.7, np.nan])
    assert loaded["learning_rate"] == [1e-3, 1e-3, 1e-4]
    # Resume from a checkpoint taken after epoch 1: epoch 2 is trained again and replaced.
    resumed = HistoryLog(path, initial=loaded)
    resumed.append(2, {**ROWS[2], "val_loss": 0.65})
    resumed.append(3, ROWS[2])
    assert HistoryLog.load(path)["epoch"] == [0, 1, 2, 3]
    assert HistoryLog.load(path)["val_loss"][2] == 0.65
    resumed.append(1, ROWS[1])
    assert HistoryLog.load(path)["epoch"] == [0, 1]


def test_history_missing_metric_is_na_like_keras(tmp_path):
    log = HistoryLog(tmp_path / "h.csv")
    log.append(0, {"loss": 1.0})
    log.append(1, {"loss": 0.5, "val_loss": 0.6})
    assert (tmp_path / "h.csv").read_text().splitlines() == [
        "epoch,loss,val_loss", "0,1.0,NA", "1,0.5,0.6"]
    assert np.isnan(HistoryLog.load(tmp_path / "h.csv")["val_loss"][0])


def test_a_sweep_history_rewritten_at_most_every_min_interval_and_whole_at_close(tmp_path):
    log = HistoryLog(tmp_path / "h.csv", durable=False, min_interval=3600.0)
    log.extend([(0, {"loss": 1.0}), (1, {"loss": 0.5})])  # the first append is written
    log.append(2, {"loss": 0.25})  # within the interval: not yet
    assert HistoryLog.load(tmp_path / "h.csv")["epoch"] == [0, 1]
    log.close()
    assert HistoryLog.load(tmp_path / "h.csv")["loss"] == [1.0, 0.5, 0.25]
    durable = HistoryLog(tmp_path / "d.csv", min_interval=3600.0)  # durable logs ignore it
    durable.append(0, {"loss": 1.0})
    durable.append(1, {"loss": 0.5})
    assert HistoryLog.load(tmp_path / "d.csv")["epoch"] == [0, 1]


# --- atomic --------------------------------------------------------------------------------------

def test_atomic_json_creates_parents_writes_null_for_nan_and_leaves_no_temp(tmp_path):
    path = tmp_path / "a" / "b" / "r.json"
    atomic.write_json(path, {"x": float("inf"), "y": [1.5, float("nan")], "z": np.float32(2.5),
                             "w": np.arange(2)})
    assert json.loads(path.read_text()) == {"x": None, "y": [1.5, None], "z": 2.5, "w": [0, 1]}
    assert os.listdir(path.parent) == ["r.json"]


def test_atomic_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "r.json"
    atomic.write_json(path, {"ok": 1})
    with pytest.raises(TypeError):
        atomic.write_json(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"ok": 1}
    assert os.listdir(tmp_path) == ["r.json"]


def test_atomic_file_mode_follows_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic.write_text(tmp_path / "t.txt", "hi")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "t.txt").stat().st_mode) == 0o644


# --- TensorBoardLog ------------------------------------------------------------------------------

def read_events(folder: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    return acc


def test_tensorboard_scalars_follow_keras_layout(tmp_path):
    log = observers.TensorBoardLog(tmp_path)
    for epoch, row in enumerate(ROWS[:2]):
        log.scalars(epoch, row)
    log.scalars(2, {**ROWS[2], "val_loss": 0.5})
    log.close()
    train, val = read_events(tmp_path / "train"), read_events(tmp_path / "validation")
    assert sorted(train.Tags()["scalars"]) == ["epoch_accuracy", "epoch_learning_rate",
                                               "epoch_loss"]
    assert sorted(val.Tags()["scalars"]) == ["epoch_accuracy", "epoch_loss"]
    loss = train.Scalars("epoch_loss")
    assert [e.step for e in loss] == [0, 1, 2]
    np.testing.assert_allclose([e.value for e in loss], [1.0, 0.8, 0.6], rtol=1e-6)
    np.testing.assert_allclose([e.value for e in val.Scalars("epoch_loss")], [0.9, 0.7, 0.5],
                               rtol=1e-6)
    np.testing.assert_allclose([e.value for e in train.Scalars("epoch_learning_rate")],
                               [1e-3, 1e-3, 1e-4], rtol=1e-6)


def test_tensorboard_flushes_are_readable_and_only_close_fsyncs(tmp_path, monkeypatch):
    synced = []
    fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), fsync(fd)))
    log = observers.TensorBoardLog(tmp_path)  # flush_every=0: a flush after every call
    for epoch, row in enumerate(ROWS):
        log.scalars(epoch, row)
    # Flushed to the OS: TensorBoard reads every epoch before the files are closed...
    assert [e.step for e in read_events(tmp_path / "train").Scalars("epoch_loss")] == [0, 1, 2]
    assert synced == []  # ...without a single fsync
    log.close()
    assert len(synced) == 2  # one per file (train, validation), at close
    assert [e.step for e in read_events(tmp_path / "validation").Scalars("epoch_loss")] == [
        0, 1, 2]


def test_tensorboard_histograms_one_per_leaf(tmp_path):
    log = observers.TensorBoardLog(tmp_path)
    params = jax.tree.map(lambda a: a[0], make_state(1).params)
    params["dense_0"]["bias"] = jnp.arange(8, dtype=jnp.bfloat16)
    log.histograms(0, params)
    log.close()
    assert sorted(read_events(tmp_path / "train").Tags()["histograms"]) == [
        "dense_0/bias", "dense_0/kernel", "dense_1/kernel"]


# --- Progress ------------------------------------------------------------------------------------

def test_progress_quiet_prints_nothing(capsys):
    progress = observers.Progress(50, quiet=True)
    progress.update(2, ROWS[0])
    progress.line("resumed")
    assert capsys.readouterr() == ("", "")


def test_progress_prints_one_line_per_epoch_with_metrics(capsys):
    progress = observers.Progress(50, label="[adam]")
    progress.update(2, {"val_loss": 0.5, "loss": 0.43214, "accuracy": 0.845,
                        "learning_rate": 1e-3, "epoch_time_s": 2.13})
    progress.update(3, {"loss": 0.4})
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "[adam] epoch 3/50  loss 0.4321  accuracy 0.8450  val_loss 0.5000  lr 1.0e-03  2.1s",
        "[adam] epoch 4/50  loss 0.4000"]
    assert "\r" not in err


# --- GroupObserver's progress line ---------------------------------------------------------------

def _hist(epochs, secs=2.0):
    return {"epoch": list(range(epochs)), "val_accuracy": [0.5] * epochs,
            "epoch_time_s": [secs] * epochs}


def test_progress_line_bounds_the_time_left_by_the_longest_active_member():
    import numpy as np

    hists = [_hist(3), _hist(3)]
    text = observers.progress_text(hists, [(0, 2), (1, 2)], np.array([True, False]), [50, 10])
    # member 0 may run 50 - 3 = 47 more epochs at 2 s each: 94 s
    assert text == ("epoch 3/50: 1/2 active, val_accuracy mean 0.5000, 2.00 s/epoch, "
                    "at most 1m34s left")


def test_progress_line_of_the_last_epoch_says_done_not_0_active():
    import numpy as np

    text = observers.progress_text([_hist(3)], [(0, 2)], np.array([False]), [3])
    assert text == "epoch 3/3: done, val_accuracy mean 0.5000, 2.00 s/epoch"
    assert "0/1" not in text


def test_heartbeat_after_the_last_epoch_names_the_final_work_not_another_epoch():
    import numpy as np

    assert observers.next_status([(0, 2), (1, 2)], np.array([True, False])) == \
        "training epoch 4"
    assert observers.next_status([(0, 49)], np.array([False])) == \
        "final evaluation, saving the models"
