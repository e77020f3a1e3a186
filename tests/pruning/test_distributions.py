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


# -- rigl's knobs: erk_power_scale, custom_sparsity_map, the first-layer conventions ----------


def test_erk_power_scale_raises_the_raw_densities_to_its_power():
    # raw^0.5: sqrt(296/10240), sqrt(512/65536), sqrt(266/2560); epsilon solves the 10% budget.
    raw = [np.sqrt(296 / 10240), np.sqrt(512 / 65536), np.sqrt(266 / 2560)]
    sizes = [10240, 65536, 2560]
    epsilon = 7833.6 / sum(r * n for r, n in zip(raw, sizes))
    found = sd.densities(MLP_SHAPES, 0.9, "erk", erk_power_scale=0.5)
    np.testing.assert_allclose(found, [epsilon * r for r in raw], rtol=1e-12)
    assert sum(d * n for d, n in zip(found, sizes)) == pytest.approx(7833.6)
    # Softer than ERK: the largest layer keeps more, the smallest less.
    erk = sd.densities(MLP_SHAPES, 0.9, "erk")
    assert found[1] > erk[1] and found[2] < erk[2]


def test_a_custom_sparsity_in_budget_is_kept_and_the_rest_pays_for_it():
    # Output layer fixed at 50%: 1280 alive; the other two share 7833.6 - 1280 = 6553.6 by ERK.
    found = sd.densities(MLP_SHAPES, 0.9, "erk", fixed=[None, None, 0.5])
    epsilon = 6553.6 / (296 + 512)
    np.testing.assert_allclose(found, [epsilon * 296 / 10240, epsilon * 512 / 65536, 0.5], rtol=1e-12)


def test_outside_the_budget_the_target_applies_to_the_solved_layers_only():
    # rigl's custom_sparsity_map: the free layers hold 10% of their own 75776 weights.
    found = sd.densities(MLP_SHAPES, 0.9, "erk", fixed=[None, None, 0.5], fixed_layers="outside_budget")
    epsilon = 0.1 * 75776 / (296 + 512)
    np.testing.assert_allclose(found, [epsilon * 296 / 10240, epsilon * 512 / 65536, 0.5], rtol=1e-12)


def test_the_first_layer_conventions_count_differently():
    # Dense first layer (10240 weights) at 80% uniform:
    # in budget: 0.2 * 78336 = 15667.2 alive in total, 5427.2 over the other 68096;
    # outside (rigl): the other layers at 80% on their own: 0.2 * 68096 = 13619.2, plus 10240 = 23859.2.
    inside = sd.densities(MLP_SHAPES, 0.8, "uniform", dense=[True, False, False])
    outside = sd.densities(
        MLP_SHAPES, 0.8, "uniform", dense=[True, False, False], fixed_layers="outside_budget"
    )
    sizes = [10240, 65536, 2560]
    assert sum(d * n for d, n in zip(inside, sizes)) == pytest.approx(15667.2)
    assert sum(d * n for d, n in zip(outside, sizes)) == pytest.approx(23859.2)
    np.testing.assert_allclose(outside, [1.0, 0.2, 0.2])
    # At 90% the dense first layer alone exceeds the in-budget total (7833.6 alive): refused.
    with pytest.raises(ValueError, match=r"keep 10240 weights, more than the 7834 that sparsity=0.9 leaves"):
        sd.densities(MLP_SHAPES, 0.9, "erk", dense=[True, False, False])
    outside_erk = sd.densities(
        MLP_SHAPES, 0.9, "erk", dense=[True, False, False], fixed_layers="outside_budget"
    )
    assert sum(d * n for d, n in zip(outside_erk, sizes)) == pytest.approx(10240 + 0.1 * 68096)


def test_impossible_fixed_sparsities_are_refused():
    with pytest.raises(ValueError, match=r"the other layers would need .* \(density > 1\)"):
        # 99% sparse everywhere fixed but one small layer: the rest cannot hold 10% of the total.
        sd.densities(MLP_SHAPES, 0.1, "erk", fixed=[0.99, 0.99, None])
    with pytest.raises(
        ValueError, match=r"`custom sparsity`: expected a float in \[0, 1\)\. Received: custom sparsity=1\.2"
    ):
        sd.densities(MLP_SHAPES, 0.9, "erk", fixed=[None, None, 1.2])
    with pytest.raises(
        ValueError, match=r"`erk_power_scale`: expected a float > 0\. Received: erk_power_scale=0"
    ):
        sd.densities(MLP_SHAPES, 0.9, "erk", erk_power_scale=0)
    with pytest.raises(ValueError, match=r"`erk_power_scale`: it scales the ERK densities only"):
        sd.densities(MLP_SHAPES, 0.9, "er", erk_power_scale=0.5)
    with pytest.raises(
        ValueError,
        match=r"`fixed_layers`: expected one of \('in_budget', 'outside_budget'\)\. Received: fixed_layers='rigl'",
    ):
        sd.densities(MLP_SHAPES, 0.9, "erk", fixed_layers="rigl")


class TestCustomSparsityOnAModel(TestCase):
    def test_exact_weight_counts_with_a_custom_map_and_a_dense_first_layer(self):
        model = tfl.prunable(mlp(hidden=(256, 256)))
        names = [wr.layer.name for wr in tfl.prune_wrappers(model)]
        sd.prune_to_distribution(
            model,
            0.9,
            "erk",
            dense=[names[0]],
            custom_sparsity={"output": 0.5},
            fixed_layers="outside_budget",
            seed=0,
        )
        alive = [e.alive for e in tfl.sparsity_report(model).layers]
        # First layer dense (10240), output at 50% (1280), the middle layer holds 10% of its 65536.
        assert alive == [10240, 6554, 1280]

    def test_unknown_layers_and_overlaps_are_refused_naming_the_layers(self):
        model = tfl.prunable(mlp())
        with pytest.raises(
            ValueError, match=r"`custom_sparsity`: 'conv9' matches no pruned layer\. Pruned layers are: \["
        ):
            sd.layer_sparsities(model, 0.9, custom_sparsity={"conv9": 0.5})
        with pytest.raises(
            ValueError, match=r"`custom_sparsity`: 'output' names a layer that `dense` names too"
        ):
            sd.layer_sparsities(model, 0.9, dense=["output"], custom_sparsity={"output": 0.5})
        with pytest.raises(ValueError, match=r"`custom_sparsity\['output'\]`: expected a float in \[0, 1\)"):
            sd.layer_sparsities(model, 0.5, custom_sparsity={"output": -0.1})
        with pytest.raises(ValueError, match=r"`custom_sparsity`: expected a dict"):
            sd.layer_sparsities(model, 0.5, custom_sparsity=[("output", 0.5)])
