"""One-shot magnitude pruning: the baseline of both papers, on any prunable weight."""

import keras
import numpy as np

import tf_lottery as tfl
from tests.testing import TestCase


def _model():
    inputs = keras.Input((6, 6, 4), dtype="float32")
    h = keras.layers.Conv2D(8, 3, name="conv")(inputs)
    h = keras.layers.Flatten()(h)
    return tfl.prunable(keras.Model(inputs, keras.layers.Dense(4, name="head")(h)))


class TestMagnitude(TestCase):
    def test_the_smallest_weights_of_each_tensor_go(self):
        model = _model()
        kernels = [w.pruned_weights[0].numpy() for w in tfl.prune_wrappers(model)]
        report = tfl.oneshot.magnitude(model, 0.6)
        for wrapper, kernel in zip(tfl.prune_wrappers(model), kernels):
            mask = wrapper.get_masks()[0]
            assert (~mask).sum() == int(mask.size * 0.6)
            assert np.abs(kernel[mask]).min() > np.abs(kernel[~mask]).max()
            np.testing.assert_array_equal(wrapper.pruned_weights[0].numpy(), np.where(mask, kernel, 0))
        assert report.skipped == {}

    def test_n_of_m_along_the_inputs_of_conv_and_dense_and_embeddings_skipped(self):
        inputs = keras.Input((5,), dtype="int32")
        h = keras.layers.Embedding(10, 8, name="embed")(inputs)
        outputs = keras.layers.Dense(4, name="dense")(h)
        model = tfl.prunable(keras.Model(inputs, outputs))
        report = tfl.oneshot.magnitude(model, 0.5, structure="2:4")
        assert list(report.skipped) == ["embed/embeddings"]
        dense = tfl.prune_wrappers(model)[1].get_masks()[0]
        assert (dense.reshape(2, 4, 4).sum(axis=1) == 2).all()
        conv_model = _model()
        tfl.oneshot.magnitude(conv_model, 0.5, structure="2:4")
        conv = tfl.prune_wrappers(conv_model)[0].get_masks()[0]  # (3, 3, 4, 8): groups along in_channels
        assert (conv.sum(axis=2) == 2).all()

    def test_masks_only_shrink(self):
        model = _model()
        tfl.prune(model, target_sparsity=0.3)
        before = [m.copy() for w in tfl.prune_wrappers(model) for m in w.get_masks()]
        # Reverse the magnitudes: without the old masks, the old pruned weights would be the largest.
        for wrapper in tfl.prune_wrappers(model):
            kernel = wrapper.pruned_weights[0]
            kernel.assign(np.where(wrapper.get_masks()[0], 1.0 / (1e-3 + np.abs(kernel.numpy())), 0.0))
        tfl.oneshot.magnitude(model, 0.5)
        after = [m for w in tfl.prune_wrappers(model) for m in w.get_masks()]
        for b, a in zip(before, after):
            assert not (a & ~b).any()
            assert (~a).sum() == int(a.size * 0.5)
