"""Uniform, Erdos-Renyi and ERK layer sparsities against hand computations."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import tf_lottery as tfl
from tests.testing import TestCase, mlp
from tf_lottery.pruning import distributions as sd

MLP_SHAPES = [(40, 256), (256, 256), (256, 10)]


def test_erk_densities_of_an_mlp_match_the_hand_computation():
    # raw densities (n_in + n_out) / (n_in * n_out): 296/10240, 512/65536, 266/2560;
    # epsilon * (296 + 512 + 266) = 0.1 * 78336 alive weights.
    epsilon = 7833.6 / 1074.0
    expected = [epsilon * 296 / 10240, epsilon * 512 / 65536, epsilon * 266 / 2560]
    np.testing.assert_allclose(sd.densities(MLP_SHAPES, 0.9, "erk"), expected, rtol=1e-12)
    np.testing.assert_allclose(expected, [0.210838, 0.056983, 0.757877], atol=1e-6)


def test_a_layer_that_would_exceed_density_one_is_made_dense_and_the_scale_solved_again():
    # Budget 0.5 * 10200 = 5100. First solve: epsilon = 5100 / (0.02*10000 + 0.51*200) = 16.89,
    # so the output layer would get density 0.51 * 16.89 = 8.6 > 1: dense. Second solve:
    # epsilon = (5100 - 200) / (0.02 * 10000) = 24.5, hidden density 0.02 * 24.5 = 0.49.
    np.testing.assert_allclose(sd.densities([(100, 100), (100, 2)], 0.5, "erk"), [0.49, 1.0], rtol=1e-12)


@pytest.mark.parametrize("sparsity", [0.5, 0.8, 0.9, 0.98])
@pytest.mark.parametrize("distribution", ["uniform", "er", "erk"])
def test_total_alive_matches_the_target(distribution, sparsity):
    shapes = [(3, 3, 3, 16), (3, 3, 16, 32), (512, 64), (64, 10)]
    sizes = np.array([np.prod(s) for s in shapes])
    found = np.array(sd.densities(shapes, sparsity, distribution))
    assert np.all((found > 0) & (found <= 1.0))
    np.testing.assert_allclose(np.sum(found * sizes), (1 - sparsity) * sizes.sum(), rtol=1e-9)


def test_er_ignores_the_kernel_size_and_erk_counts_it():
    conv, dense = (3, 3, 16, 32), (512, 10)
    er = sd.densities([conv, dense], 0.9, "er")
    erk = sd.densities([conv, dense], 0.9, "erk")
    # ER: (16 + 32) / (16 * 32) vs (512 + 10) / 5120; ERK: 54 / 4608 for the conv.
    assert er[0] / er[1] == pytest.approx((48 / 512) / (522 / 5120))
    assert erk[0] / erk[1] == pytest.approx((54 / 4608) / (522 / 5120))


def test_uniform_with_a_dense_layer_makes_the_others_sparser_to_keep_the_total():
    # 0.2 * 78336 = 15667.2 alive: 10240 in the dense first layer, 5427.2 over the other 68096.
    found = sd.densities(MLP_SHAPES, 0.8, "uniform", dense=[True, False, False])
    np.testing.assert_allclose(found, [1.0, 5427.2 / 68096, 5427.2 / 68096], rtol=1e-12)


class TestLayerSparsities(TestCase):
    def test_keys_are_layer_names_and_prune_reaches_each_layer_target(self):
        model = tfl.prunable(mlp(hidden=(256, 256)))
        rates = sd.layer_sparsities(model, 0.9, "erk")
        names = [wr.layer.name for wr in tfl.prune_wrappers(model)]
        assert list(rates) == names
        result = sd.prune_to_distribution(model, 0.9, "erk", seed=3)
        report = tfl.sparsity_report(model)
        for entry in report.layers:
            assert entry.alive == entry.total - int(np.floor(rates[entry.layer] * entry.total + 0.5))
        expected = [d * e.total for d, e in zip(sd.densities(MLP_SHAPES, 0.9, "erk"), report.layers)]
        np.testing.assert_allclose([e.alive for e in report.layers], expected, atol=0.5 + 1e-9)
        assert abs(result["alive"] - 7833.6) <= len(names) / 2

    def test_dense_layers_by_name_stay_dense(self):
        model = tfl.prunable(mlp(hidden=(256, 256)))
        first = tfl.prune_wrappers(model)[0].layer.name
        sd.prune_to_distribution(model, 0.8, "uniform", dense=[first])
        report = tfl.sparsity_report(model)
        assert report.layers[0].alive == report.layers[0].total
        assert report.alive == pytest.approx(15667.2, abs=1)

    def test_magnitude_scorer_keeps_the_largest_weights_per_layer(self):
        model = tfl.prunable(mlp())
        before = [
            np.abs(keras.ops.convert_to_numpy(w))
            for wr in tfl.prune_wrappers(model)
            for w in wr.pruned_weights
        ]
        sd.prune_to_distribution(model, 0.8, "erk", scorer="magnitude")
        for value, wrapper in zip(before, tfl.prune_wrappers(model)):
            mask = wrapper.get_masks()[0]
            assert value[mask].min() >= value[~mask].max()

    def test_errors_name_the_argument(self):
        model = tfl.prunable(mlp())
        with pytest.raises(
            ValueError,
            match=r"Invalid value for argument `distribution`: expected one of \('uniform', 'erdos_renyi', "
            r"'erdos_renyi_kernel', 'er', 'erk'\)\. Received: distribution='gaussian'\.",
        ):
            sd.layer_sparsities(model, 0.9, "gaussian")
        with pytest.raises(ValueError, match="`dense`: 'conv9' matches no pruned layer"):
            sd.layer_sparsities(model, 0.9, dense=["conv9"])
        with pytest.raises(ValueError, match="Invalid value for argument `sparsity`"):
            sd.layer_sparsities(model, 1.0)
        with pytest.raises(ValueError, match="the dense and fixed layers keep"):
            sd.densities(MLP_SHAPES, 0.9, "erk", dense=[False, True, False])

    def test_a_layer_with_two_pruned_weights_gets_their_count_weighted_sparsity(self):
        model = tfl.prunable(
            keras.Sequential(
                [
                    keras.Input((8, 8, 3)),
                    keras.layers.Conv2D(16, 3, name="conv"),
                    keras.layers.SeparableConv2D(32, 3, name="separable"),
                    keras.layers.Flatten(),
                    keras.layers.Dense(10, name="output"),
                ]
            )
        )
        shapes = [tuple(w.shape) for wr in tfl.prune_wrappers(model) for w in wr.pruned_weights]
        assert shapes == [(3, 3, 3, 16), (3, 3, 16, 1), (1, 1, 16, 32), (512, 10)]
        density = sd.densities(shapes, 0.8, "erk")
        sizes = [int(np.prod(s)) for s in shapes]
        rates = sd.layer_sparsities(model, 0.8, "erk")
        kept = density[1] * sizes[1] + density[2] * sizes[2]
        assert rates["separable"] == pytest.approx(1 - kept / (sizes[1] + sizes[2]))
        assert rates["conv"] == pytest.approx(1 - density[0]) and rates["output"] == pytest.approx(
            1 - density[3]
        )
