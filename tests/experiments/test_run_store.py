"""The run store: layout, identity checks, atomic training states, local and on ram:// (gfile)."""

import json
import os
import uuid

import numpy as np
import pytest

from tf_lottery.experiments import plots, results, run_store, schema
from tf_lottery.lottery.rewind import Snapshot
from tf_lottery.lottery.ticket import Ticket
from tf_lottery.utils import atomic_io


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


def test_states_are_the_one_snapshot_format(tmp_path):
    # The run store's rewind points and checkpoints are `Snapshot.save` files, byte for byte.
    snapshot = Snapshot(model_values=[np.ones((2, 2), np.float32)], optimizer_values=[np.array(3)], step=3)
    run_store.save_state(str(tmp_path / "state.npz"), snapshot, {"position": 3})
    snapshot.save(str(tmp_path / "saved.npz"), {"position": 3})
    assert (tmp_path / "state.npz").read_bytes() == (tmp_path / "saved.npz").read_bytes()
    assert Snapshot.load(str(tmp_path / "state.npz"))[1] == {"step": 3, "position": 3}


def test_metrics_file_marks_a_level_done(tmp_path):
    directory = str(tmp_path / "round_0")
    os.makedirs(directory)
    assert not run_store.is_done(directory)
    atomic_io.write_bytes(os.path.join(directory, "end.npz"), b"ticket")  # a level's result, written first
    run_store.write_metrics(directory, {"level": 0})
    assert run_store.is_done(directory) and run_store.read_metrics(directory) == {"level": 0}


def test_a_finished_level_without_its_result_is_noticed(tmp_path):
    directory = str(tmp_path / "round_0")
    os.makedirs(directory)
    run_store.write_metrics(directory, {"level": 0})
    metrics = os.path.join(directory, "metrics.json")
    with pytest.raises(
        FileNotFoundError,
        match=f"^The level '{directory}' is marked finished \\(metrics.json\\) but its 'end.npz' is missing. "
        f"Delete '{metrics}' and run the same command again: this level",
    ):
        run_store.is_done(directory)
    assert run_store.is_done(directory, outputs=("metrics.json",))


def test_workdir_is_required():
    with pytest.raises(ValueError, match=r"Invalid value for argument `workdir`: expected a directory"):
        run_store.RunStore("", _config())


def test_a_level_finished_twice_keeps_the_first_metrics(tmp_path):
    directory = str(tmp_path / "round_1")
    os.makedirs(directory)
    assert run_store.write_metrics(directory, {"level": 1, "by": "first"}) is True
    assert run_store.write_metrics(directory, {"level": 1, "by": "second"}) is False
    assert run_store.read_metrics(directory)["by"] == "first"
    assert os.listdir(directory) == ["metrics.json"]


@pytest.fixture
def ram_workdir():
    return f"ram://run_store_test_{uuid.uuid4().hex}/runs"


def test_the_store_works_on_a_gfile_workdir(ram_workdir):
    store = run_store.RunStore(ram_workdir, _config())
    assert store.root == f"{ram_workdir}/lottery/{store.hash}"
    store.initialize()
    assert atomic_io.isdir(store.results_dir)
    assert atomic_io.read_json(f"{store.root}/hparams.json") == {
        "format": run_store.STORE_FORMAT,
        "hparams": {"train.lr": 0.01},
    }
    assert atomic_io.read_json(f"{store.root}/config.json")["train"]["lr"] == 0.01
    store.initialize()  # resuming the same run is fine

    directory = store.level_dir(0, 1)
    atomic_io.makedirs(directory)
    assert not run_store.is_done(directory)
    atomic_io.write_bytes(f"{directory}/end.npz", b"ticket")
    assert run_store.write_metrics(directory, {"level": 1}) is True
    assert run_store.write_metrics(directory, {"level": 1, "by": "late"}) is False
    assert run_store.is_done(directory) and run_store.read_metrics(directory) == {"level": 1}

    snapshot = Snapshot(
        model_values=[np.arange(4, dtype=np.float32), np.array([True, False])],
        optimizer_values=[np.array(3, np.int64)],
        step=5,
    )
    run_store.save_state(store.rewind_path(0), snapshot, {"position": 5})
    loaded, info = run_store.load_state(store.rewind_path(0))
    assert loaded.step == 5 and info == {"step": 5, "position": 5}
    for a, b in zip(
        snapshot.model_values + snapshot.optimizer_values, loaded.model_values + loaded.optimizer_values
    ):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert not [n for _, _, files in atomic_io.walk(store.root) for n in files if n.endswith(".tmp")]


def test_a_gfile_directory_holding_another_run_is_refused(ram_workdir):
    store = run_store.RunStore(ram_workdir, _config())
    store.initialize()
    other = {"format": run_store.STORE_FORMAT, "hparams": {"train.lr": 0.5}}
    atomic_io.write_json(f"{store.root}/hparams.json", other)
    with pytest.raises(ValueError, match=r"holds a run with other options"):
        store.initialize()


def test_tickets_results_and_plots_are_written_to_a_gfile_workdir(ram_workdir):
    ticket = Ticket(
        masks=[np.array([[True, False], [False, True]])],
        mask_names=["dense/kernel"],
        weights=[np.ones((2, 2), np.float32)],
        weight_names=["dense/kernel"],
        metadata={"level": 1},
    )
    atomic_io.makedirs(ram_workdir)
    ticket.save(f"{ram_workdir}/end.npz")
    loaded = Ticket.load(f"{ram_workdir}/end.npz")
    assert np.array_equal(loaded.masks[0], ticket.masks[0]) and loaded.metadata == {"level": 1}
    with pytest.raises(FileNotFoundError, match="no ticket file at"):
        Ticket.load(f"{ram_workdir}/none.npz")

    rows = [
        {field: None for field in results.FIELDS}
        | {"experiment": "lottery", "branch": "ticket", "replicate": 0, "level": level}
        | {"percent_remaining": 100.0 * 0.8**level, "sparsity": 1 - 0.8**level}
        | {"early_stop_step": 10, "early_stop_test_accuracy": 0.9, "final_test_accuracy": 0.91}
        for level in range(2)
    ]
    directory = f"{ram_workdir}/results"
    files = results.write(directory, rows)
    assert atomic_io.read_json(files["json"])["rows"] == rows
    assert atomic_io.read_text(files["csv"]).startswith("experiment,branch,")
    for path in plots.plot_all(rows, directory):
        assert atomic_io.read_bytes(path).startswith(b"\x89PNG")
