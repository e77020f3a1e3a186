"""Ticket transfer to a task with another number of classes; the `transfer` experiment."""

from __future__ import annotations

import os

import numpy as np
import pytest

import tf_lottery as tfl
from tests.testing import TestCase, compile_classifier, mlp, pruned_weights_are_zero, toy_data
from tf_lottery.data.pipeline import ArrayPipeline
from tf_lottery.experiments import run_store
from tf_lottery.experiments.kinds import transfer


def test_parse_classes():
    assert transfer.parse_classes("0-5") == [0, 1, 2, 3, 4, 5]
    assert transfer.parse_classes("1,3,7-8") == [1, 3, 7, 8]
    with pytest.raises(ValueError, match=r"`config.transfer.target_classes`: expected distinct"):
        transfer.parse_classes("2,2", "transfer.target_classes")
    with pytest.raises(ValueError, match="expected distinct class indices"):
        transfer.parse_classes("a-b")


def test_class_subset_relabels_in_the_given_order():
    x = np.arange(20, dtype="float32").reshape(10, 2)
    y = np.array([0, 1, 2, 3, 4, 0, 1, 2, 3, 4])
    data = ArrayPipeline("toy", x, y, x[:0], y[:0], x, y, num_classes=5)
    subset = transfer.class_subset(data, [4, 2])
    assert subset.num_classes == 2 and subset.num_train == 4
    np.testing.assert_array_equal(subset.y_train, [1, 0, 1, 0])
    np.testing.assert_array_equal(subset.x_train[:, 0], [4, 8, 14, 18])
    with pytest.raises(ValueError, match="Invalid class 7"):
        transfer.class_subset(data, [7])


class TestTicketTransfer(TestCase):
    def test_a_ticket_trains_on_a_task_with_another_number_of_classes(self):
        source = compile_classifier(tfl.prunable(mlp(classes=6)))
        start = tfl.Snapshot.capture(source, 0)
        x, y = toy_data(128, classes=6)
        source.fit(x, y, epochs=2, verbose=0)
        tfl.prune(source, target_sparsity=0.8)
        ticket = tfl.Ticket.from_model(source, weights=start.model_values)

        target = compile_classifier(tfl.prunable(mlp(classes=4)))
        ticket.apply(target, transfer=True)
        masks = [m for wr in tfl.prune_wrappers(target) for m in wr.get_masks()]
        for got, want in zip(masks[:-1], ticket.masks[:-1]):
            np.testing.assert_array_equal(got, want)
        assert masks[-1].shape == (32, 4) and masks[-1].all()
        np.testing.assert_array_equal(
            tfl.prune_wrappers(target)[0].layer.kernel.numpy(), start.model_values[0] * ticket.masks[0]
        )
        x, y = toy_data(128, classes=4, seed=1)
        target.fit(x, y, epochs=2, verbose=0)
        assert pruned_weights_are_zero(target)
        assert [m.sum() for m in masks] == [
            m.sum() for m in (wr.get_masks()[0] for wr in tfl.prune_wrappers(target))
        ]


def _files(root):
    """`{path: mtime}` of every stored file of a run but its summaries (rewritten by each run)."""
    found = {}
    for directory, _, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            if "replicate_" in os.path.relpath(path, root):
                found[path] = os.stat(path).st_mtime_ns
    return found


class TestTransferExperiment(TestCase):
    def test_small_run_compares_transferred_random_and_target_tickets(self, tmp_path):
        config = transfer.defaults()
        config.dataset.train_limit = 1000
        config.train.training_steps = "1ep"
        config.run.levels = 2
        config.run.replicates = 1
        config.run.steps_per_execution = 1
        config.transfer.levels = "2"
        summary = transfer.run_transfer(config, str(tmp_path), log=lambda line: None)
        rows = {(r["level"], r["branch"]): r for r in summary["rows"]}
        assert set(rows) == {(0, "dense"), (2, "transferred"), (2, "random"), (2, "target_ticket")}
        # Same layer-wise sparsity for the transferred and the random ticket (output layer dense).
        assert rows[2, "transferred"]["sparsity"] == pytest.approx(rows[2, "random"]["sparsity"])
        assert 0.3 < rows[2, "transferred"]["sparsity"] < 0.36
        assert all(0.0 <= r["test_accuracy"] <= 1.0 for r in summary["rows"])
        assert "transferred" in summary["table"]

        # The tickets are the masks of the level loop's IMP on each task's classes.
        root = summary["root"]
        source = tfl.Ticket.load(os.path.join(root, "replicate_0", "round_2", "start.npz"))
        own = tfl.Ticket.load(os.path.join(root, "target", "replicate_0", "round_2", "start.npz"))
        assert source.masks[-1].shape[-1] == 6 and own.masks[-1].shape[-1] == 4
        source_metrics = run_store.read_metrics(os.path.join(root, "replicate_0", "round_2"))
        assert rows[2, "transferred"]["source_test_accuracy"] == source_metrics["final"]["test_accuracy"]
        dense = run_store.read_metrics(os.path.join(root, "target", "replicate_0", "round_0"))
        assert rows[0, "dense"]["test_accuracy"] == dense["final"]["test_accuracy"]
        # The target ticket trains exactly as IMP on B trained its level 2 (both rewind to step 0).
        own_metrics = run_store.read_metrics(os.path.join(root, "target", "replicate_0", "round_2"))
        assert rows[2, "target_ticket"]["test_accuracy"] == own_metrics["final"]["test_accuracy"]
        transferred, _ = run_store.load_state(
            os.path.join(
                root, "target", "replicate_0", "transfer", "round_2", "transferred", "checkpoint.npz"
            )
        )
        # The hidden layers' kernels (model values 0 and 2) keep the source ticket's pruned weights at 0.
        for value, mask in zip(transferred.model_values[:4:2], source.masks[:2]):
            assert not value[~mask.astype(bool)].any()

        stored = _files(root)
        again = transfer.run_transfer(config, str(tmp_path), log=lambda line: None)
        assert again["rows"] == summary["rows"]  # every training is read back
        assert _files(root) == stored  # nothing stored is rewritten or added

    def test_levels_outside_the_run_are_refused(self, tmp_path):
        config = transfer.defaults()
        config.dataset.train_limit = 600
        config.train.training_steps = "1ep"
        config.run.levels = 2
        config.transfer.levels = "5"
        with pytest.raises(ValueError, match=r"`config.transfer.levels`: expected levels in 1..2"):
            transfer.run_transfer(config, str(tmp_path), log=lambda line: None)

    def test_without_target_tickets_only_the_dense_network_trains_on_the_target(self, tmp_path):
        config = transfer.defaults()
        config.dataset.train_limit = 600
        config.train.training_steps = "1ep"
        config.run.levels = 1
        config.run.replicates = 1
        config.transfer.levels = "1"
        config.transfer.target_tickets = False
        summary = transfer.run_transfer(config, str(tmp_path), log=lambda line: None)
        assert {(r["level"], r["branch"]) for r in summary["rows"]} == {
            (0, "dense"),
            (1, "transferred"),
            (1, "random"),
        }
        assert not os.path.exists(os.path.join(summary["root"], "target", "replicate_0", "round_1"))
