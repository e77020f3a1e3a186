"""`get_masks` / `set_masks` / `dense_masks`: a model's masks as one flat list, and back."""

import keras
import numpy as np
import pytest

import tf_lottery as tfl
from tests.testing import TestCase
from tf_lottery.core.walk import dense_masks, get_masks, prune_wrappers, set_masks


def _model():
    # A nested model and a layer with two pruned weights (Conv1D kernel only; Dense kernel;
    # MultiHeadAttention's four kernels) so the flat order crosses wrappers of several sizes.
    inner = keras.Sequential([keras.Input((8, 4)), keras.layers.Conv1D(3, 2, name="conv")], name="inner")
    inputs = keras.Input((8, 4))
    x = inner(inputs)
    x = keras.layers.MultiHeadAttention(2, 2, name="mha")(x, x)
    outputs = keras.layers.Dense(5, name="out")(keras.layers.Flatten()(x))
    return tfl.prunable(keras.Model(inputs, outputs))


class TestFlatMasks(TestCase):
    def test_get_is_every_wrappers_masks_in_order(self):
        model = _model()
        tfl.prune(model, rate=0.5, scope="layer")
        flat = get_masks(model)
        per_wrapper = [m for w in prune_wrappers(model) for m in w.get_masks()]
        assert len(flat) == len(per_wrapper) == 1 + 4 + 1
        assert all(a.dtype == bool and np.array_equal(a, b) for a, b in zip(flat, per_wrapper))
        # The same from the wrapper list the caller may already hold.
        assert all(np.array_equal(a, b) for a, b in zip(get_masks(prune_wrappers(model)), flat))

    def test_set_round_trips_and_zeroes_pruned_weights(self):
        source, target = _model(), _model()
        tfl.prune(source, rate=0.7)
        set_masks(target, get_masks(source))
        assert all(np.array_equal(a, b) for a, b in zip(get_masks(target), get_masks(source)))
        for wrapper in prune_wrappers(target):
            for weight, mask in zip(wrapper.pruned_weights, wrapper.get_masks()):
                assert not np.any(keras.ops.convert_to_numpy(weight)[~mask])
        assert tfl.sparsity_report(target).sparsity == pytest.approx(0.7, abs=1e-3)

    def test_dense_masks_undo_pruning(self):
        model = _model()
        tfl.prune(model, rate=0.5)
        dense = dense_masks(model)
        assert [m.shape for m in dense] == [m.shape for m in get_masks(model)]
        set_masks(model, dense)
        assert tfl.sparsity_report(model).sparsity == 0.0

    def test_wrong_count_or_shape_changes_nothing(self):
        model = _model()
        tfl.prune(model, rate=0.5)
        before = get_masks(model)
        kernel = keras.ops.convert_to_numpy(prune_wrappers(model)[0].pruned_weights[0]).copy()
        ones = dense_masks(model)
        with pytest.raises(ValueError, match=r"argument `masks`: expected 6 arrays .* Received 5"):
            set_masks(model, ones[:-1])  # the first wrappers' masks would fit: none may be written
        with pytest.raises(ValueError, match=r"expected 6 arrays .* Received 6 with shapes"):
            set_masks(model, [*ones[:-1], np.ones((3,), bool)])
        assert all(np.array_equal(a, b) for a, b in zip(get_masks(model), before))
        assert np.array_equal(keras.ops.convert_to_numpy(prune_wrappers(model)[0].pruned_weights[0]), kernel)
