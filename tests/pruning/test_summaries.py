"""PruningSummaries: a GradualPruning run's sparsity, layer by layer, read back from the event files."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_lottery as tfl
from tests.testing import TestCase, compile_classifier, mlp, toy_data
from tf_lottery.pruning.pruner import exact_count


def read_run(run_dir):
    """{tag: {step: value}} of every scalar in a TensorBoard run directory, read by TensorBoard's own reader."""
    from tensorboard.backend.event_processing import event_accumulator

    accumulator = event_accumulator.EventAccumulator(run_dir, size_guidance={event_accumulator.TENSORS: 0})
    accumulator.Reload()
    values = {
        tag: {event.step: tf.make_ndarray(event.tensor_proto) for event in accumulator.Tensors(tag)}
        for tag in accumulator.Tags()["tensors"]
    }
    return {  # Keras's TensorBoard also writes the model's config as a string: scalars only
        tag: {step: float(v) for step, v in by_step.items()}
        for tag, by_step in values.items()
        if all(v.ndim == 0 and v.dtype.kind == "f" for v in by_step.values())
    }


# Kernel sizes of mlp(input_dim=20, hidden=(32, 16), classes=4), by weight path.
SIZES = {"dense/kernel": 20 * 32, "dense_1/kernel": 32 * 16, "output/kernel": 16 * 4}


def exact_layer_sparsity(target, size):
    return exact_count(target, size) / size


class TestPruningSummaries(TestCase):
    @pytest.mark.parametrize("summaries_first", [True, False])
    def test_each_layer_sparsity_is_written_at_every_pruning_step(self, tmp_path, summaries_first):
        log_dir = str(tmp_path / "logs")
        model = compile_classifier(tfl.prunable(mlp(input_dim=20, hidden=(32, 16), classes=4)))
        x, y = toy_data(n=128, input_dim=20, classes=4)  # 8 steps an epoch at batch_size=16
        schedule = tfl.PolynomialDecay(0.5, 0.8, begin_step=0, end_step=40, frequency=10)
        gradual = tfl.GradualPruning(schedule)
        summaries = tfl.PruningSummaries(gradual, log_dir)
        callbacks = [summaries, gradual] if summaries_first else [gradual, summaries]
        board = keras.callbacks.TensorBoard(log_dir)
        model.fit(x, y, batch_size=16, epochs=6, verbose=0, callbacks=[*callbacks, board])

        assert sorted(os.listdir(log_dir)) == ["pruning", "train"]
        written = read_run(os.path.join(log_dir, "pruning"))
        assert sorted(written) == ["layer_sparsity/" + tag for tag in sorted(SIZES)] + ["sparsity"]
        # The fit starts dense at step 0, then prunes at steps 10, 20, 30 and 40.
        assert [step for step, _ in gradual.events] == [10, 20, 30, 40]
        assert sorted(written["sparsity"]) == [0, 10, 20, 30, 40]
        assert written["sparsity"][0] == 0.0
        for step, sparsity in gradual.events:
            assert written["sparsity"][step] == pytest.approx(sparsity, abs=1e-6)
        # Layer-wise (tfmot's way): each kernel holds exactly round(target * size) zeros.
        for tag, size in SIZES.items():
            layer = written[f"layer_sparsity/{tag}"]
            assert sorted(layer) == [0, 10, 20, 30, 40]
            assert layer[0] == 0.0
            for step in (10, 20, 30, 40):
                expected = exact_layer_sparsity(schedule(step)[1], size)
                assert layer[step] == pytest.approx(expected, abs=1e-6), (tag, step)
        final = tfl.sparsity_report(model)
        for row in final.layers:
            assert written[f"layer_sparsity/{row.name}"][40] == pytest.approx(row.sparsity, abs=1e-6)
        # The overall sparsity of each epoch comes from GradualPruning's logs through Keras's TensorBoard.
        epochs = read_run(os.path.join(log_dir, "train"))["epoch_sparsity"]
        np.testing.assert_allclose(
            [epochs[e] for e in range(6)],
            [0, written["sparsity"][10]] + [written["sparsity"][s] for s in (20, 30, 40, 40)],
            atol=1e-6,
        )

    def test_a_pruning_step_applied_when_training_ends_is_written(self, tmp_path):
        # steps_per_execution=4: blocks start at steps 1, 5, 9; step 10 falls inside the last
        # block, so GradualPruning applies it in on_train_end.
        log_dir = str(tmp_path / "logs")
        model = tfl.prunable(mlp(input_dim=20, hidden=(16,), classes=4))
        compile_classifier(model, steps_per_execution=4)
        x, y = toy_data(n=64, input_dim=20, classes=4)
        gradual = tfl.GradualPruning(tfl.PolynomialDecay(0.2, 0.6, begin_step=0, end_step=10, frequency=5))
        summaries = tfl.PruningSummaries(gradual, log_dir)
        model.fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[gradual, summaries])
        assert [step for step, _ in gradual.events] == [5, 10]
        written = read_run(os.path.join(log_dir, "pruning"))
        assert sorted(written["sparsity"]) == [0, 5, 10]
        assert written["sparsity"][10] == pytest.approx(gradual.sparsity, abs=1e-6)
        assert written["layer_sparsity/output/kernel"][10] == exact_layer_sparsity(0.6, 16 * 4)  # 38 of 64

    def test_a_second_fit_continues_the_steps(self, tmp_path):
        log_dir = str(tmp_path / "logs")
        model = compile_classifier(tfl.prunable(mlp(input_dim=20, hidden=(16,), classes=4)))
        x, y = toy_data(n=64, input_dim=20, classes=4)  # 4 steps an epoch
        gradual = tfl.GradualPruning(tfl.ConstantSparsity(0.5, begin_step=6, end_step=6 + 1, frequency=1))
        summaries = tfl.PruningSummaries(gradual, log_dir)
        with pytest.warns(UserWarning, match="no step of this fit is a pruning step"):
            model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[gradual, summaries])
        model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[gradual, summaries])
        written = read_run(os.path.join(log_dir, "pruning"))
        # First fit: steps 1-4, dense. Second: starts after step 4, prunes at step 6.
        assert written["sparsity"] == {0: 0.0, 4: 0.0, 6: pytest.approx(0.5, abs=1e-6)}
        assert written["layer_sparsity/dense/kernel"][6] == pytest.approx(0.5, abs=1e-6)


class TestPruningSummariesErrors(TestCase):
    def test_arguments_are_checked(self):
        with pytest.raises(
            ValueError, match=r"argument `gradual`: expected the `tfl.GradualPruning`.*type str"
        ):
            tfl.PruningSummaries("gradual", "logs")
        gradual = tfl.GradualPruning(tfl.ConstantSparsity(0.5, 0))
        with pytest.raises(
            ValueError, match=r"argument `run`: expected a subdirectory name.*run='validation'"
        ):
            tfl.PruningSummaries(gradual, "logs", run="validation")
        with pytest.raises(ValueError, match=r"For a `tfl.GradualPruning`, use `tfl.PruningSummaries"):
            tfl.LotterySummaries(gradual, "logs")
