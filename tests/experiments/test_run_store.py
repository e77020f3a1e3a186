"""The run store: layout, identity checks and atomic training states."""

import json
import os

import numpy as np
import pytest

from tf_lottery.experiments import run_store, schema
from tf_lottery.lottery.rewind import Snapshot


def _config():
    config = schema.defaults()
    config.train.lr = 0.01
    return config


def test_layout_names_experiment_hash_replicate_branch_and_round(tmp_path):
    store = run_store.RunStore(str(tmp_path), _config())
    assert store.root == os.path.join(tmp_path, "lottery", store.hash)
    assert store.level_dir(2, 3) == os.path.join(store.root, "replicate_2", "round_3")
    assert store.level_dir(0, 1, "reinit") == os.path.join(
        store.root, "replicate_0", "branch_reinit", "round_1"
    )
    assert store.rewind_path(1) == os.path.join(store.root, "replicate_1", "rewind.npz")
    store.initialize()
    with open(os.path.join(store.root, "hparams.json")) as handle:
        assert json.load(handle) == {"format": run_store.STORE_FORMAT, "hparams": {"train.lr": 0.01}}
    with open(os.path.join(store.root, "config.json")) as handle:
        assert json.load(handle)["train"]["lr"] == 0.01


def test_a_directory_holding_another_run_is_refused(tmp_path):
    store = run_store.RunStore(str(tmp_path), _config())
    store.initialize()
    with open(os.path.join(store.root, "hparams.json"), "w") as handle:
        json.dump({"format": run_store.STORE_FORMAT, "hparams": {"train.lr": 0.5}}, handle)
    with pytest.raises(ValueError, match=r"holds a run with other options"):
        store.initialize()


def test_state_round_trip_is_exact(tmp_path):
    snapshot = Snapshot(
        model_values=[np.arange(6, dtype=np.float32).reshape(2, 3), np.array([True, False])],
        optimizer_values=[np.array(7, np.int64), np.ones(3, np.float32)],
        step=42,
    )
    path = str(tmp_path / "state.npz")
    run_store.save_state(path, snapshot, {"position": 42, "evals": [{"step": 42, "val_loss": 0.5}]})
    loaded, info = run_store.load_state(path)
    assert loaded.step == 42 and info["evals"] == [{"step": 42, "val_loss": 0.5}]
    for a, b in zip(
        snapshot.model_values + snapshot.optimizer_values, loaded.model_values + loaded.optimizer_values
    ):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert [p for p in os.listdir(tmp_path) if p.endswith(".tmp")] == []


def test_metrics_file_marks_a_level_done(tmp_path):
    directory = str(tmp_path / "round_0")
    os.makedirs(directory)
    assert not run_store.is_done(directory)
    run_store.write_metrics(directory, {"level": 0})
    assert run_store.is_done(directory) and run_store.read_metrics(directory) == {"level": 0}


def test_workdir_is_required():
    with pytest.raises(ValueError, match=r"Invalid value for argument `workdir`: expected a directory"):
        run_store.RunStore("", _config())
