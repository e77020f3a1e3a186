"""LotterySummaries: rounds, layer sparsity and mask statistics beside Keras's TensorBoard runs."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_lottery as tfl
from tests.testing import TestCase, compile_classifier, mlp, toy_data
from tf_lottery.lottery.summaries import LotterySummaries


def accumulator_for(run_dir):
    """TensorBoard's own reader of a run directory, loaded."""
    # Imported here: without the `tensorboard` package only these tests fail, not the collection.
    from tensorboard.backend.event_processing import event_accumulator

    accumulator = event_accumulator.EventAccumulator(run_dir, size_guidance={event_accumulator.TENSORS: 0})
    accumulator.Reload()
    return accumulator


def read_run(run_dir):
    """{tag: {step: value}} of every summary in a TensorBoard run directory."""
    accumulator = accumulator_for(run_dir)
    return {
        tag: {event.step: tf.make_ndarray(event.tensor_proto) for event in accumulator.Tensors(tag)}
        for tag in accumulator.Tags()["tensors"]
    }


class MaskProbe(keras.callbacks.Callback):
    """The masks each epoch trains with."""

    def on_train_begin(self, logs=None):
        self.masks = []

    def on_epoch_begin(self, epoch, logs=None):
        self.masks.append(
            {
                f"{w.layer.name}/{v.name}": m
                for w in tfl.prune_wrappers(self.model)
                for v, m in zip(w.pruned_weights, w.get_masks())
            }
        )


class TestLotterySummaries(TestCase):
    @pytest.mark.parametrize("summaries_first", [True, False])
    def test_rounds_layers_and_masks_are_written_beside_keras_runs(self, tmp_path, summaries_first):
        log_dir = str(tmp_path / "logs")
        model = compile_classifier(tfl.prunable(mlp(hidden=(32, 16))))
        x, y = toy_data(n=128)
        lottery = tfl.LotteryCallback(rounds=3, pruning_rate=0.5, verbose=0)
        summaries = LotterySummaries(lottery, log_dir)
        probe = MaskProbe()
        board = keras.callbacks.TensorBoard(log_dir)
        callbacks = [summaries, lottery] if summaries_first else [lottery, summaries]
        model.fit(
            x,
            y,
            validation_split=0.25,
            epochs=6,
            batch_size=32,
            verbose=0,
            callbacks=[probe, board, *callbacks],
        )

        assert sorted(os.listdir(log_dir)) == ["pruning", "train", "validation"]
        pruning = read_run(os.path.join(log_dir, "pruning"))
        history = lottery.history
        assert len(history) == 3
        expected = {
            "sparsity": [r["sparsity"] for r in history],
            "percent_remaining": [r["percent_remaining"] for r in history],
            "val_accuracy": [r["metrics"]["val_accuracy"] for r in history],
            "loss": [r["metrics"]["loss"] for r in history],
            "best_val_loss": [r["best"] for r in history],
            "early_stop_step": [r["early_stop_step"] for r in history],
        }
        for name, values in expected.items():
            written = pruning[f"round/{name}"]
            assert sorted(written) == [0, 1, 2]
            np.testing.assert_allclose([written[r] for r in range(3)], values, rtol=1e-6)
        # Against the epoch, like Keras's epoch_loss: the sparsity each epoch trained at.
        epoch_sparsity = pruning["epoch_sparsity"]
        assert sorted(epoch_sparsity) == list(range(6))
        np.testing.assert_allclose(
            [epoch_sparsity[e] for e in range(6)], [history[e // 2]["sparsity"] for e in range(6)], atol=1e-6
        )
        assert "epoch_loss" in read_run(os.path.join(log_dir, "train"))
        # Mask statistics at step r describe the masks round r trained with.
        for r in range(3):
            masks = probe.masks[2 * r]
            assert set(masks) == set(history[r]["layers"])
            for tag, mask in masks.items():
                assert pruning[f"layer_sparsity/{tag}"][r] == pytest.approx(
                    history[r]["layers"][tag], abs=1e-6
                )
                alive_per_unit = mask.sum(axis=0)
                assert pruning[f"dead_units/{tag}"][r] == np.sum(alive_per_unit == 0)
                histogram = pruning[f"alive_per_unit/{tag}"][r]  # rows of (left edge, right edge, count)
                assert histogram[:, 2].sum() == mask.shape[-1]
                assert histogram[:, 0].min() == pytest.approx(alive_per_unit.min())
                assert histogram[:, 1].max() == pytest.approx(alive_per_unit.max())
                assert pruning[f"weights/{tag}"][r][:, 2].sum() == np.count_nonzero(mask)

    def test_one_round_per_fit_writes_each_round_once(self, tmp_path):
        log_dir = str(tmp_path / "logs")
        model = compile_classifier(tfl.prunable(mlp(hidden=(16,))))
        x, y = toy_data(n=64)
        lottery = tfl.LotteryCallback(rounds=3, pruning_rate=0.5, one_round_per_fit=True, verbose=0)
        summaries = LotterySummaries(lottery, log_dir, histograms=False)
        for _ in range(2):
            model.fit(x, y, epochs=1, verbose=0, callbacks=[lottery, summaries])
        accumulator = accumulator_for(os.path.join(log_dir, "pruning"))
        assert [e.step for e in accumulator.Tensors("round/sparsity")] == [0, 1]
        assert [e.step for e in accumulator.Tensors("layer_sparsity/output/kernel")] == [0, 1]
        assert not [t for t in accumulator.Tags()["tensors"] if t.startswith(("weights/", "alive_per_unit/"))]
        assert "round/best_loss" in accumulator.Tags()["tensors"]  # no validation data: the training loss


class TestLotterySummariesErrors(TestCase):
    def test_arguments_are_checked(self):
        with pytest.raises(
            ValueError, match=r"argument `lottery`: expected the `tfl.LotteryCallback`.*type str"
        ):
            LotterySummaries("lottery", "logs")
        lottery = tfl.LotteryCallback(rounds=2, pruning_rate=0.2)
        with pytest.raises(ValueError, match=r"argument `run`: expected a subdirectory name.*run='train'"):
            LotterySummaries(lottery, "logs", run="train")
