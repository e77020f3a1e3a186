"""`level_record`: a level's checked start, its end ticket and its metrics record."""

import keras
import numpy as np
import pytest

import tf_lottery as tfl
from tests.testing import TestCase
from tf_lottery.experiments import level_record, trainer
from tf_lottery.lottery.ticket import Ticket


def _model():
    return tfl.prunable(keras.Sequential([keras.Input((6,)), keras.layers.Dense(4), keras.layers.Dense(3)]))


class TestStartAndEnd(TestCase):
    def test_the_start_is_written_once_then_checked(self, tmp_path):
        model = _model()
        tfl.prune(model, rate=0.5)
        meta = {"level": 1, "branch": None, "replicate": 0, "what": "start"}
        level_record.check_start(model, str(tmp_path), meta)
        stored = Ticket.load(str(tmp_path / "start.npz"))
        assert all(np.array_equal(a, b) for a, b in zip(stored.masks, tfl.get_masks(model)))
        assert stored.metadata["what"] == "start"
        level_record.check_start(model, str(tmp_path), meta)  # the same start: accepted
        tfl.prune(model, rate=0.5)  # another start than the stored one
        with pytest.raises(ValueError, match="differs from the one this code computes"):
            level_record.check_start(model, str(tmp_path), meta)

    def test_a_damaged_start_names_the_fix(self, tmp_path):
        (tmp_path / "start.npz").write_bytes(b"PK\x03\x04garbage")
        with pytest.raises(ValueError, match="Delete .*start.npz' and run the same command again"):
            level_record.check_start(_model(), str(tmp_path), {"what": "start"})

    def test_the_end_holds_masks_and_weights(self, tmp_path):
        model = _model()
        tfl.prune(model, rate=0.3)
        level_record.write_end(model, str(tmp_path), 12, {"level": 2, "what": "end"})
        end = Ticket.load(str(tmp_path / "end.npz"))
        assert end.metadata["level"] == 2 and end.metadata["what"] == "end"
        assert all(np.array_equal(a, b) for a, b in zip(end.masks, tfl.get_masks(model)))
        weights = tfl.Snapshot.capture(model, 12).model_values
        assert len(end.weights) == len(weights) == 4
        assert all(np.array_equal(a, b) for a, b in zip(end.weights, weights))


def test_metrics_summarise_evaluations_from_the_early_stop_bound():
    report = tfl.sparsity_report(_model())
    plan = trainer.LevelPlan(
        start=5, end=30, steps_per_epoch=10, batch_size=8, seed=0, eval_every=10, checkpoint_every=10
    )
    evals = [
        {"step": s, "val_loss": loss, "val_accuracy": acc}
        for s, loss, acc in [(10, 0.1, 0.9), (20, 0.5, 0.6), (30, 0.4, 0.7)]
    ]
    record = level_record.metrics(
        experiment="lottery",
        branch="ticket",
        replicate=1,
        level=2,
        report=report,
        plan=plan,
        result={"evals": evals, "elapsed_s": 3.0},
        timing={"train": 1.23456, "store": 0.1},
        extra={"kind_metric": 7},
        early_stop_after=15,
    )
    assert (record["start_step"], record["end_step"], record["level"], record["kind_metric"]) == (5, 30, 2, 7)
    assert record["timing"] == {"store": 0.1, "train": 1.2346}
    assert record["total"] == report.total and record["sparsity"] == 0.0
    # The evaluation at step 10 is before the bound: early stopping picks step 30 (lowest val_loss after it).
    assert record["early_stop"]["step"] == 30
