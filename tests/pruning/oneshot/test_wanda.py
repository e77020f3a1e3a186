"""Wanda (Sun et al. 2023, arXiv:2306.11695) against an independent NumPy implementation."""

import keras
import numpy as np
import pytest

import tf_lottery as tfl
from tests.pruning.oneshot import reference
from tests.pruning.oneshot.helpers import correlated_inputs, groups_alive, kernel_and_mask, one_dense
from tests.testing import TestCase


class TestWanda(TestCase):
    @pytest.mark.parametrize("structure, nm", [(None, None), ("2:4", (2, 4)), ("1:4", (1, 4))])
    def test_masks_equal_the_papers_rule(self, structure, nm):
        x = correlated_inputs()
        model = one_dense()
        kernel, _ = kernel_and_mask(model)
        sparsity = 0.5 if nm is None else 1 - nm[0] / nm[1]
        tfl.oneshot.wanda(model, x, sparsity, structure=structure, batch_size=40)
        expected = reference.wanda(kernel.T, x, sparsity, nm).T
        _, mask = kernel_and_mask(model)
        np.testing.assert_array_equal(~mask, expected)
        if nm is not None:
            assert (groups_alive(mask, nm[1]) == nm[0]).all()
        else:
            # int(16 * 0.5) of every output unit's inputs.
            np.testing.assert_array_equal((~mask).sum(axis=0), 8)

    def test_second_layer_is_calibrated_on_the_pruned_first(self):
        x = correlated_inputs()
        keras.utils.set_random_seed(3)
        model = tfl.prunable(
            keras.Sequential(
                [keras.Input((16,)), keras.layers.Dense(12, activation="relu"), keras.layers.Dense(8)]
            )
        )
        w2 = tfl.prune_wrappers(model)[1].pruned_weights[0].numpy()
        tfl.oneshot.wanda(model, x, 0.5)
        first = tfl.prune_wrappers(model)[0].layer
        hidden = np.maximum(x @ first.kernel.numpy() + first.bias.numpy(), 0)  # pruned layer 1
        _, mask2 = kernel_and_mask(model, 1)
        np.testing.assert_array_equal(~mask2, reference.wanda(w2.T, hidden, 0.5).T)

    def test_ties_go_to_the_lower_input(self):
        model = one_dense(features=8, units=3)
        tfl.prune_wrappers(model)[0].pruned_weights[0].assign(np.ones((8, 3)))
        tfl.oneshot.wanda(model, np.ones((4, 8), "float32"), 0.25)
        _, mask = kernel_and_mask(model)
        np.testing.assert_array_equal(~mask, np.repeat([[True], [True]] + [[False]] * 6, 3, axis=1))

    def test_masks_only_shrink(self):
        x = correlated_inputs()
        model = one_dense()
        old = np.random.default_rng(0).random((16, 8)) > 0.3
        old[:10, 0] = False  # one unit already past the target: it stays as it is
        tfl.prune_wrappers(model)[0].set_masks([old])
        _, before = kernel_and_mask(model)
        tfl.oneshot.wanda(model, x, 0.5)
        _, after = kernel_and_mask(model)
        assert not (after & ~before).any()
        # Already-pruned inputs count toward each unit's share where they fit in it.
        assert ((~after).sum(axis=0) >= 8).all()
        np.testing.assert_array_equal((~after).sum(axis=0), np.maximum(8, (~before).sum(axis=0)))
