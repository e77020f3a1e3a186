"""The level loop and its controls, checked as properties of a finished run.

One tiny IMP run (MNIST-1D, 2 pruned levels, all five controls) is made once
per module; the tests read its run store the way a researcher would.
"""

import json
import os
import re

import numpy as np
import pytest

import tf_lottery as tfl
from tf_lottery.experiments import results, run_store, schema, trainer
from tf_lottery.experiments.kinds import lottery as experiment

LEVELS = 2
BRANCHES = ("reinit", "random_layerwise", "random_global", "lr_rewind", "finetune")


def tiny_config(**run):
    config = schema.defaults()
    config.dataset.num_samples = 1000
    config.dataset.validation = 100
    config.model.name = "mnist1d_mlp"
    config.model.hidden = (32, 32)
    config.train.lr = 3e-3
    config.train.batch_size = 50
    config.train.training_steps = "4ep"
    config.pruning.scope = "layer"
    config.pruning.layer_rates = "output=0.1"
    config.run.levels = LEVELS
    config.run.branches = ",".join(BRANCHES)
    config.run.deterministic = False  # process-wide; the CLI tests cover it
    config.run.plots = False
    config.run.verbose = 0
    for key, value in run.items():
        config.run[key] = value
    return config


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("runs"))
    return experiment.run_experiment(tiny_config(), workdir)


def _ticket(root, level, branch=None, what="start"):
    parent = os.path.join(root, "replicate_0", f"branch_{branch}" if branch else "")
    return tfl.Ticket.load(os.path.join(parent, f"round_{level}", f"{what}.npz"))


def _rewind(root):
    snapshot, _ = run_store.load_state(os.path.join(root, "replicate_0", "rewind.npz"))
    return snapshot


def test_every_level_and_branch_is_stored_and_reported(finished):
    root = finished["root"]
    for level in range(LEVELS + 1):
        directory = os.path.join(root, "replicate_0", f"round_{level}")
        assert sorted(os.listdir(directory)) == ["checkpoint.npz", "end.npz", "metrics.json", "start.npz"]
    assert len(finished["rows"]) == (LEVELS + 1) + LEVELS * len(BRANCHES)
    with open(finished["files"]["csv"]) as handle:
        assert len(handle.read().strip().splitlines()) == 1 + len(finished["rows"])
    metrics = run_store.read_metrics(os.path.join(root, "replicate_0", "round_1"))
    assert metrics["start_step"] == 0 and metrics["end_step"] == 4 * 14
    assert [e["step"] for e in metrics["evals"]] == [14, 28, 42, 56]
    assert metrics["early_stop"]["monitor"] == "val_loss"
    assert "reinit (es)" in finished["table"] and "finetune (es)" in finished["table"]


def test_the_run_reports_where_its_time_went(finished):
    timing = finished["timing"]
    assert len(timing["levels"]) == len(finished["rows"])
    for entry in timing["levels"]:
        assert entry["train"] > 0 and entry["evaluate"] > 0 and entry["store"] > 0
        assert entry["prune_reset"] >= 0
    total = timing["total_s"]
    assert total["train"] == pytest.approx(sum(e["train"] for e in timing["levels"]))
    assert sum(timing["share"].values()) == pytest.approx(1.0)
    with open(finished["files"]["json"]) as handle:
        assert json.load(handle)["timing"] == timing
    line = results.time_line(timing)
    assert line.startswith("Time: train ") and "not training" in line
    metrics = run_store.read_metrics(os.path.join(finished["root"], "replicate_0", "round_1"))
    assert set(metrics["timing"]) == {"train", "evaluate", "prune_reset", "store"}


def test_masks_only_shrink_by_the_exact_per_layer_count(finished):
    root = finished["root"]
    for level in range(1, LEVELS + 1):
        before, after = _ticket(root, level - 1).masks, _ticket(root, level).masks
        for name, old, new in zip(_ticket(root, level).mask_names, before, after):
            assert not np.any(new & ~old)
            rate = 0.1 if name.startswith("output") else 0.2
            alive = int(old.sum())
            assert alive - int(new.sum()) == int(np.floor(rate * alive + 0.5))


def test_every_kept_weight_outweighs_every_pruned_one(finished):
    root = finished["root"]
    for level in range(1, LEVELS + 1):
        trained = _ticket(root, level - 1, what="end")
        weights = dict(zip(trained.weight_names, trained.weights))
        for name, old, new in zip(trained.mask_names, trained.masks, _ticket(root, level).masks):
            kernel = np.abs(next(v for k, v in weights.items() if k.endswith(name.split("/")[0] + "/kernel")))
            assert kernel[new].min() >= kernel[old & ~new].max()


def test_each_level_starts_from_the_rewind_weights_times_its_mask(finished):
    root = finished["root"]
    rewind = _rewind(root)
    for level in range(LEVELS + 1):
        start = _ticket(root, level)
        masks = iter(start.masks)
        for name, value, original in zip(start.weight_names, start.weights, rewind.model_values):
            expected = original * next(masks) if name.endswith("/kernel") else original
            np.testing.assert_array_equal(value, expected)


def test_pruned_weights_stay_zero_through_training(finished):
    end = _ticket(finished["root"], LEVELS, what="end")
    kernels = [w for n, w in zip(end.weight_names, end.weights) if n.endswith("/kernel")]
    assert all(np.all(k[~m] == 0.0) for k, m in zip(kernels, end.masks))


def test_controls_differ_from_the_ticket_in_one_thing_only(finished):
    root = finished["root"]
    rewind = _rewind(root)
    for level in range(1, LEVELS + 1):
        ticket = _ticket(root, level)
        previous_end = _ticket(root, level - 1, what="end")

        reinit = _ticket(root, level, "reinit")
        assert all(np.array_equal(a, b) for a, b in zip(reinit.masks, ticket.masks))
        assert not np.array_equal(reinit.weights[0], ticket.weights[0])

        layerwise = _ticket(root, level, "random_layerwise")
        assert [m.sum() for m in layerwise.masks] == [m.sum() for m in ticket.masks]
        assert not all(np.array_equal(a, b) for a, b in zip(layerwise.masks, ticket.masks))
        np.testing.assert_array_equal(layerwise.weights[0], rewind.model_values[0] * layerwise.masks[0])

        global_random = _ticket(root, level, "random_global")
        assert sum(m.sum() for m in global_random.masks) == sum(m.sum() for m in ticket.masks)

        for branch in ("lr_rewind", "finetune"):
            start = _ticket(root, level, branch)
            assert all(np.array_equal(a, b) for a, b in zip(start.masks, ticket.masks))
            np.testing.assert_array_equal(start.weights[0], previous_end.weights[0] * ticket.masks[0])


def test_finetune_keeps_the_final_learning_rate_state(finished):
    root = finished["root"]
    lr_rewind, _ = run_store.load_state(
        os.path.join(root, "replicate_0", "branch_lr_rewind", "round_1", trainer.CHECKPOINT)
    )
    finetune, _ = run_store.load_state(
        os.path.join(root, "replicate_0", "branch_finetune", "round_1", trainer.CHECKPOINT)
    )
    # The optimizer's first variable is its iteration counter.
    assert int(lr_rewind.optimizer_values[0]) == 56
    assert int(finetune.optimizer_values[0]) == 112


def test_a_finished_run_is_read_back_not_retrained(finished, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("retrained a finished level")

    monkeypatch.setattr(trainer, "train_level", fail)
    again = experiment.run_experiment(tiny_config(), os.path.dirname(os.path.dirname(finished["root"])))
    assert again["rows"] == finished["rows"]


def test_more_levels_extend_a_run_in_place(tmp_path):
    first = experiment.run_experiment(tiny_config(levels=1, branches=""), str(tmp_path))
    second = experiment.run_experiment(tiny_config(levels=2, branches="reinit"), str(tmp_path))
    assert first["root"] == second["root"]
    assert {(r["branch"], r["level"]) for r in first["rows"]} < {
        (r["branch"], r["level"]) for r in second["rows"]
    }


def test_a_rerun_announces_what_it_reuses_and_labels_the_stored_times(tmp_path):
    config = tiny_config(levels=1, branches="")
    config.run.verbose = 1
    first, second = [], []
    experiment.run_experiment(config, str(tmp_path), log=first.append)
    experiment.run_experiment(config, str(tmp_path), log=second.append)
    assert not [line for line in first if line.startswith("Reused:")]
    assert [line for line in first if line.startswith("Time: ")]
    (reuse,) = [line for line in second if line.startswith("Reused:")]
    root = os.path.join(str(tmp_path), "lottery")
    assert re.fullmatch(
        rf"Reused: level\(s\) 0-1 of replicate 0 from {re.escape(root)}\S+, finished "
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\. Delete that directory .*",
        reuse,
    )
    (timing,) = [line for line in second if line.startswith("Time")]
    assert timing.startswith("Time (as stored when they ran; every level was reused, none ran now): train ")


def test_an_interrupted_level_resumes_from_its_checkpoint_with_the_same_result(
    finished, tmp_path, monkeypatch
):
    save_state = run_store.save_state
    calls = []

    def save_then_die(path, snapshot, info=None):
        save_state(path, snapshot, info)
        if f"round_1{os.sep}" in path and "branch_" not in path:
            calls.append(path)
            if len(calls) == 2:
                raise KeyboardInterrupt("killed mid-round")

    monkeypatch.setattr(run_store, "save_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        experiment.run_experiment(tiny_config(branches="reinit"), str(tmp_path))
    monkeypatch.setattr(run_store, "save_state", save_state)
    level_dir = os.path.join(tmp_path, "lottery", finished["hash"], "replicate_0", "round_1")
    assert not run_store.is_done(level_dir)
    round_0 = os.path.join(tmp_path, "lottery", finished["hash"], "replicate_0", "round_0", "metrics.json")
    finished_at = os.stat(round_0).st_mtime_ns

    stream = trainer.train_stream
    starts = []
    monkeypatch.setattr(
        trainer,
        "train_stream",
        lambda data, plan, start, stop: starts.append(start) or stream(data, plan, start, stop),
    )
    resumed = experiment.run_experiment(tiny_config(branches="reinit"), str(tmp_path))
    assert starts[0] == 28  # continued after the second checkpoint, not from step 0
    assert os.stat(round_0).st_mtime_ns == finished_at
    for level in range(LEVELS + 1):
        for branch in (None, "reinit") if level else (None,):
            a = _ticket(finished["root"], level, branch, what="end")
            b = _ticket(resumed["root"], level, branch, what="end")
            assert all(np.array_equal(x, y) for x, y in zip(a.masks, b.masks))
            assert all(np.array_equal(x, y) for x, y in zip(a.weights, b.weights))


def test_oneshot_prunes_the_dense_network_to_each_levels_sparsity(tmp_path):
    config = tiny_config(branches="")
    config.experiment = "oneshot"
    result = experiment.run_experiment(config, str(tmp_path))
    root = result["root"]
    dense_end = _ticket(root, 0, what="end")
    weights = dict(zip(dense_end.weight_names, dense_end.weights))
    for level in (1, 2):
        start = _ticket(root, level)
        for name, mask in zip(start.mask_names, start.masks):
            rate = 0.1 if name.startswith("output") else 0.2
            assert mask.size - mask.sum() == int(np.floor((1 - (1 - rate) ** level) * mask.size + 0.5))
            kernel = np.abs(next(v for k, v in weights.items() if k.endswith(name.split("/")[0] + "/kernel")))
            assert kernel[mask].min() >= kernel[~mask].max()


@pytest.mark.parametrize("retrain", ["lr_rewind", "finetune", "reinit"])
def test_main_run_retrain_modes_start_where_they_should(tmp_path, retrain):
    config = tiny_config(levels=1, branches="")
    config.pruning.retrain = retrain
    root = experiment.run_experiment(config, str(tmp_path))["root"]
    start, previous = _ticket(root, 1), _ticket(root, 0, what="end")
    if retrain == "reinit":
        assert not np.array_equal(start.weights[0], _rewind(root).model_values[0] * start.masks[0])
    else:
        np.testing.assert_array_equal(start.weights[0], previous.weights[0] * start.masks[0])
    state, _ = run_store.load_state(os.path.join(root, "replicate_0", "round_1", trainer.CHECKPOINT))
    assert int(state.optimizer_values[0]) == (112 if retrain == "finetune" else 56)


def test_late_rewinding_restarts_every_level_at_the_rewind_step(tmp_path):
    config = tiny_config(levels=1, branches="reinit")
    config.pruning.rewind_to = "1ep"
    root = experiment.run_experiment(config, str(tmp_path))["root"]
    rewind = _rewind(root)
    assert rewind.step == 14 and int(rewind.optimizer_values[0]) == 14
    start = _ticket(root, 1)
    np.testing.assert_array_equal(start.weights[0], rewind.model_values[0] * start.masks[0])
    for branch in (None, "reinit"):
        metrics = run_store.read_metrics(
            os.path.join(root, "replicate_0", f"branch_{branch}" if branch else "", "round_1")
        )
        assert (metrics["start_step"], metrics["end_step"]) == (14, 56)
        assert [e["step"] for e in metrics["evals"]] == [28, 42, 56]


def test_rewind_point_after_training_is_refused(tmp_path):
    config = tiny_config(levels=1, branches="")
    config.pruning.rewind_to = "4ep"
    with pytest.raises(ValueError, match=r"`config.pruning.rewind_to`: '4ep' is step 56, not before the end"):
        experiment.run_experiment(config, str(tmp_path))
