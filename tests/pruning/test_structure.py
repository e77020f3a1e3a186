"""N:M structured sparsity: the pattern, its axis per layer type, and that it survives saving and export."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_lottery as tfl
from tests.testing import TestCase, compile_classifier, mlp, toy_data
from tf_lottery.pruning import structure


def _conv_model():
    return keras.Sequential(
        [
            keras.Input((16, 8)),
            keras.layers.Conv1D(12, 3, activation="relu", name="conv"),
            keras.layers.Conv1DTranspose(4, 3, name="deconv"),
            keras.layers.Flatten(),
            keras.layers.Dense(10, name="output"),
        ]
    )


def _alive_per_group(mask, axis, m=4):
    return np.moveaxis(mask, axis, -1).reshape(-1, m).sum(axis=1)


def _kernel_violations(model, pattern="2:4"):
    """Groups breaking the pattern in the kernels of a model without wrappers."""
    found = {}
    for layer in model.layers:
        kernel = getattr(layer, "kernel", None)
        if kernel is not None and isinstance(layer, (keras.layers.Dense, keras.layers.Conv1D)):
            axis = structure.reduction_axis(layer, kernel)
            found[layer.name] = structure.violations(keras.ops.convert_to_numpy(kernel), pattern, axis)
    return found


class TestNMPruning(TestCase):
    def test_every_group_keeps_its_n_best_weights(self):
        model = tfl.prunable(mlp(hidden=(64, 32)))
        model(toy_data(2)[0])
        result = tfl.prune(model, structure="2:4")
        assert result["sparsity"] == 0.5
        for wrapper in tfl.prune_wrappers(model):
            kernel = np.abs(wrapper.layer.kernel.numpy())
            mask = wrapper.get_masks()[0]
            assert np.all(_alive_per_group(mask, 0) == 2)
            # Within each group, every kept |w| >= every pruned |w|.
            scores = np.moveaxis(kernel, 0, -1).reshape(-1, 4)
            kept = np.moveaxis(mask, 0, -1).reshape(-1, 4)
            low_kept = np.where(kept, scores, np.inf).min(axis=1)
            high_pruned = np.where(~kept, scores, -np.inf).max(axis=1)
            assert np.all(low_kept >= high_pruned)

    def test_groups_run_along_input_channels_of_convolutions(self):
        model = tfl.prunable(_conv_model())
        model(np.zeros((1, 16, 8), "float32"))
        tfl.prune(model, structure="1:4")
        axes = {"conv": 1, "deconv": 2, "output": 0}  # (k, in, out), (k, out, in), (in, out)
        for wrapper in tfl.prune_wrappers(model):
            mask = wrapper.get_masks()[0]
            assert np.all(_alive_per_group(mask, axes[wrapper.layer.name]) == 1), wrapper.layer.name

    def test_an_amount_prunes_within_the_pattern_and_reaches_it_exactly(self):
        model = tfl.prunable(mlp(hidden=(64, 32)))
        model(toy_data(2)[0])
        previous = [m for wr in tfl.prune_wrappers(model) for m in wr.get_masks()]
        for target in (0.1, 0.3, 0.5):
            tfl.prune(model, target_sparsity=target, structure="2:4")
            masks = [m for wr in tfl.prune_wrappers(model) for m in wr.get_masks()]
            for old, new in zip(previous, masks):
                assert not np.any(new & ~old)
                assert _alive_per_group(new, 0).min() >= 2
            previous = masks
        assert set(structure.model_violations(model, "2:4").values()) == {0}

    def test_amounts_past_the_pattern_are_refused_and_nothing_changes(self):
        model = tfl.prunable(mlp(hidden=(64, 32)))
        model(toy_data(2)[0])
        tfl.prune(model, target_sparsity=0.2, structure="2:4")
        before = [m for wr in tfl.prune_wrappers(model) for m in wr.get_masks()]
        with pytest.raises(
            ValueError,
            match=r"`target_sparsity`: 0\.6 would prune \d+ more weights, but structure '2:4' spares only \d+ "
            r"\(it allows at most 0\.5 sparsity\)\. Pass a smaller amount",
        ):
            tfl.prune(model, target_sparsity=0.6, structure="2:4")
        after = [m for wr in tfl.prune_wrappers(model) for m in wr.get_masks()]
        for old, new in zip(before, after):
            np.testing.assert_array_equal(old, new)

    @pytest.mark.parametrize("bad", ["4:2", "2:2", "0:4", "2-4", "2:4:8", 24])
    def test_bad_structures_are_refused(self, bad):
        model = tfl.prunable(mlp())
        model(toy_data(2)[0])
        with pytest.raises(ValueError, match=r"`structure`: expected None, 'N:M' with integers 1 <= N < M"):
            tfl.prune(model, structure=bad)

    def test_a_reduction_dimension_not_a_multiple_of_m_names_the_layer_and_the_fix(self):
        model = tfl.prunable(mlp(input_dim=42))
        model(np.zeros((1, 42), "float32"))
        before = [m for wr in tfl.prune_wrappers(model) for m in wr.get_masks()]
        first = tfl.prune_wrappers(model)[0].layer.name
        with pytest.raises(
            ValueError,
            match=rf"'2:4' needs the input dimension of every pruned kernel to be a multiple of 4\. Received "
            rf"layer '{first}' with 42 inputs .* `tfl\.prunable\(model, exclude=\['{first}'\]\)`",
        ):
            tfl.prune(model, structure="2:4")
        for old, wrapper in zip(before, tfl.prune_wrappers(model)):
            np.testing.assert_array_equal(old, wrapper.get_masks()[0])
        dense = mlp(input_dim=42)
        excluded = tfl.prunable(dense, exclude=[dense.layers[0].name])
        excluded(np.zeros((1, 42), "float32"))
        assert tfl.prune(excluded, structure="2:4")["sparsity"] == 0.5

    def test_layers_without_a_reduction_dimension_are_refused(self):
        model = tfl.prunable(
            keras.Sequential([keras.Input((5,), dtype="int32"), keras.layers.Embedding(20, 8, name="embed")])
        )
        model(np.zeros((1, 5), "int32"))
        with pytest.raises(
            ValueError,
            match=r"defined for Dense, Conv and ConvTranspose kernels\. Received layer "
            r"'embed' of type Embedding",
        ):
            tfl.prune(model, structure="2:4")


class TestNMTicketSurvives(TestCase):
    def test_pattern_after_imp_training_saving_and_export(self, tmp_path):
        x, y = toy_data(256)
        model = compile_classifier(tfl.prunable(mlp(hidden=(64, 32))))
        lottery = tfl.LotteryCallback(
            rounds=3, target_sparsity=0.5, structure="2:4", monitor="loss", verbose=0
        )
        model.fit(x, y, batch_size=32, epochs=3, verbose=0, callbacks=[lottery])
        assert lottery.history[-1]["sparsity"] == 0.5
        assert set(structure.model_violations(model, "2:4").values()) == {0}
        expected = keras.ops.convert_to_numpy(model(x[:8]))

        model.save(tmp_path / "m.keras")
        loaded = keras.saving.load_model(tmp_path / "m.keras")
        assert set(structure.model_violations(loaded, "2:4").values()) == {0}

        tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))
        fresh = compile_classifier(tfl.prunable(mlp(hidden=(64, 32))))
        fresh(x[:1])
        tf.train.Checkpoint(model=fresh).read(str(tmp_path / "ckpt")).assert_existing_objects_matched()
        assert set(structure.model_violations(fresh, "2:4").values()) == {0}

        stripped = tfl.strip(model)
        assert set(_kernel_violations(stripped).values()) == {0}

        path = tfl.export_saved_model(model, str(tmp_path / "serving"))
        reader = tf.train.load_checkpoint(f"{path}/variables/variables")
        kernels = [
            reader.get_tensor(k) for k, shape in reader.get_variable_to_shape_map().items() if len(shape) == 2
        ]
        assert len(kernels) == 3
        assert all(structure.violations(k, "2:4", axis=0) == 0 for k in kernels)

        tflite = tfl.export_tflite(model, str(tmp_path / "m.tflite"), sparse=False)
        np.testing.assert_allclose(tfl.tflite_runner(tflite)(inputs=x[:8])["output"], expected, atol=1e-5)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"(?s).*tf\.lite\.Interpreter is deprecated")
            interpreter = tf.lite.Interpreter(model_path=tflite)
        interpreter.allocate_tensors()
        shapes = {(w.shape[1], w.shape[0]) for wr in tfl.prune_wrappers(model) for w in wr.pruned_weights}
        found = 0
        for detail in interpreter.get_tensor_details():
            if tuple(detail["shape"]) in shapes and detail["dtype"] == np.float32:
                weights = interpreter.get_tensor(detail["index"])  # FullyConnected: (units, inputs)
                assert structure.violations(weights, "2:4", axis=1) == 0
                found += 1
        assert found == 3

    def test_lottery_callback_refuses_a_target_past_the_pattern(self):
        with pytest.raises(
            ValueError, match=r"`target_sparsity`: expected at most 0\.5, the most structure '2:4'"
        ):
            tfl.LotteryCallback(rounds=3, target_sparsity=0.8, structure="2:4")
        with pytest.raises(ValueError, match=r"`structure`: expected None, 'N:M'"):
            tfl.LotteryCallback(rounds=3, target_sparsity=0.5, structure="4:2")
