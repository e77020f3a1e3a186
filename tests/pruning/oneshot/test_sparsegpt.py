"""SparseGPT (Frantar & Alistarh 2023, arXiv:2301.00774) against an independent NumPy implementation."""

import importlib

import keras
import numpy as np
import pytest

import tf_lottery as tfl
from tests.pruning.oneshot import reference
from tests.pruning.oneshot.helpers import correlated_inputs, groups_alive, kernel_and_mask, one_dense
from tests.testing import TestCase
from tf_lottery.pruning import structure as nm_structure

# The module, not the function of the same name that the package exports.
sparsegpt = importlib.import_module("tf_lottery.pruning.oneshot.sparsegpt")


def _error(x, kernel, new):
    return float(np.linalg.norm(x.astype(np.float64) @ (kernel - new)))


class TestSparseGPT(TestCase):
    @pytest.mark.parametrize(
        "structure, nm, blocksize",
        [(None, None, 128), (None, None, 4), ("2:4", (2, 4), 8), ("2:4", (2, 4), 128)],
    )
    def test_float64_masks_and_weights_equal_the_papers_algorithm(self, structure, nm, blocksize):
        x = correlated_inputs().astype("float64")
        model = one_dense(dtype="float64")
        kernel, _ = kernel_and_mask(model)
        tfl.oneshot.sparsegpt(model, x, 0.5, structure=structure, blocksize=blocksize, batch_size=40)
        expected_w, expected_pruned = reference.sparsegpt(kernel.T, x, len(x), 0.5, nm, blocksize)
        new, mask = kernel_and_mask(model)
        np.testing.assert_array_equal(~mask, expected_pruned.T)
        np.testing.assert_allclose(new, expected_w.T, atol=1e-5, rtol=0)
        assert np.abs(new - expected_w.T).max() < 1e-10
        assert (new[~mask] == 0).all()
        if nm is not None:
            assert (groups_alive(mask, 4) == 2).all()

    def test_core_function_masks_only_shrink(self):
        rng = np.random.default_rng(1)
        w, x = rng.normal(size=(16, 6)), rng.normal(size=(40, 16))
        alive = rng.random((16, 6)) > 0.25
        h = sparsegpt.hessian(x.T @ x, len(x))
        new, pruned = sparsegpt.prune_matrix(w, h, alive, 0.5, None, blocksize=8)
        expected_w, expected_pruned = reference.sparsegpt(w.T, x, len(x), 0.5, blocksize=8, alive=alive.T)
        np.testing.assert_array_equal(pruned, expected_pruned.T)
        np.testing.assert_allclose(new, expected_w.T, atol=1e-10)
        assert (pruned | alive).all() and pruned[~alive].all()
        new, pruned = sparsegpt.prune_matrix(w, h, alive, 0.5, nm_structure.parse("2:4"), blocksize=8)
        assert pruned[~alive].all()
        assert (pruned.reshape(4, 4, 6).sum(axis=1) >= 2).all()

    @pytest.mark.parametrize("inputs", ["zeros", "rank_one", "dead_columns"])
    def test_degenerate_calibration_inputs_give_finite_weights(self, inputs):
        rng = np.random.default_rng(2)
        x = correlated_inputs(n=32)
        if inputs == "zeros":
            x = np.zeros_like(x)
        elif inputs == "rank_one":
            x = np.outer(rng.normal(size=32), rng.normal(size=16)).astype("float32")
        else:
            x[:, :5] = 0.0
        model = one_dense()
        kernel, _ = kernel_and_mask(model)
        tfl.oneshot.sparsegpt(model, x, 0.5)
        new, mask = kernel_and_mask(model)
        assert np.isfinite(new).all()
        expected_w, expected_pruned = reference.sparsegpt(kernel.T, x, len(x), 0.5)
        np.testing.assert_allclose(new, expected_w.T, atol=1e-5)
        if inputs == "dead_columns":
            assert (new[:5] == 0).all()  # as the reference: weights of dead inputs are zeroed
        if inputs == "rank_one":
            assert _error(x, kernel, new) < 1e-3 * _error(x, kernel, 0 * kernel)

    def test_reconstruction_sparsegpt_beats_wanda_beats_magnitude_on_a_trained_layer(self):
        x = correlated_inputs(n=256)
        rng = np.random.default_rng(5)
        y = x @ rng.normal(size=(16, 8)).astype("float32")
        keras.utils.set_random_seed(0)
        dense = keras.Sequential([keras.Input((16,)), keras.layers.Dense(8, use_bias=False)])
        dense.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
        dense.fit(x, y, epochs=10, batch_size=64, verbose=0)
        trained = dense.get_weights()
        errors = {}
        for method in ("magnitude", "wanda", "sparsegpt"):
            dense.set_weights(trained)
            model = tfl.prunable(dense)
            args = (model, 0.5) if method == "magnitude" else (model, x, 0.5)
            getattr(tfl.oneshot, method)(*args)
            errors[method] = _error(x, trained[0], kernel_and_mask(model)[0])
        assert errors["sparsegpt"] <= errors["wanda"] <= errors["magnitude"], errors
