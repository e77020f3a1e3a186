"""NaN and Inf weights or scores are refused on every pruning path, masks untouched."""

import numpy as np
import pytest

import tf_lottery as tfl
from tests.testing import TestCase, compile_classifier, mlp, toy_data


def _half_pruned_model():
    """A 2:4-compatible MLP already pruned to 25%, so a mask change would show."""
    model = tfl.prunable(mlp(input_dim=8, hidden=(8,), classes=4))
    tfl.prune(model, target_sparsity=0.25, structure="2:4")
    return model


def _masks(model):
    return [m.copy() for wr in tfl.prune_wrappers(model) for m in wr.get_masks()]


def _poison(model, value):
    """Writes `value` into an alive entry of the first kernel; returns its path."""
    wrapper = tfl.prune_wrappers(model)[0]
    weight = wrapper.pruned_weights[0]
    mask = wrapper.get_masks()[0]
    array = weight.numpy()
    index = tuple(np.argwhere(mask)[-1])
    array[index] = value
    weight.assign(array)
    assert not np.isfinite(weight.numpy()[index])
    return weight.path


NON_FINITE = [np.nan, np.inf, -np.inf]


class TestNonFiniteWeights(TestCase):
    @pytest.mark.parametrize("structure", [None, "2:4"])
    def test_refused_and_masks_unchanged(self, structure):
        # Was: with structure="2:4" (or scorer="random") the NaN weight was kept and the masks changed.
        model = _half_pruned_model()
        before = _masks(model)
        for value in NON_FINITE:
            path = _poison(model, value)
            for scope in ("global", "layer"):
                for scorer in ("magnitude", "random"):
                    with pytest.raises(
                        ValueError, match=rf"weight '{path}' .* non-finite .*Nothing was pruned"
                    ):
                        tfl.prune(model, rate=0.2, scope=scope, scorer=scorer, structure=structure)
                    for a, b in zip(before, _masks(model)):
                        np.testing.assert_array_equal(a, b)

    def test_pattern_only_n_m_refuses_nan(self):
        model = tfl.prunable(mlp(input_dim=8, hidden=(8,), classes=4))
        path = _poison(model, np.nan)
        with pytest.raises(ValueError, match=rf"weight '{path}'"):
            tfl.prune(model, structure="2:4")
        assert all(m.all() for m in _masks(model))

    def test_layer_rates_and_target_sparsity_refuse_inf(self):
        model = _half_pruned_model()
        _poison(model, np.inf)
        before = _masks(model)
        with pytest.raises(ValueError, match="non-finite"):
            tfl.prune(model, target_sparsity=0.4, layer_rates={"*": 0.4})
        for a, b in zip(before, _masks(model)):
            np.testing.assert_array_equal(a, b)

    def test_finite_weights_with_a_huge_sum_are_accepted(self):
        model = tfl.prunable(mlp(input_dim=8, hidden=(8,), classes=4))
        kernel = tfl.prune_wrappers(model)[0].pruned_weights[0]
        kernel.assign(np.full(kernel.shape, np.finfo(np.float32).max, np.float32))
        tfl.prune(model, rate=0.5, structure="2:4")  # the float64 sum is finite; no false alarm


class TestNonFiniteScores(TestCase):
    @pytest.mark.parametrize("structure", [None, "2:4"])
    def test_scorer_returning_non_finite_is_refused(self, structure):
        model = _half_pruned_model()
        before = _masks(model)
        alive_entry = tuple(np.argwhere(before[1])[0])
        for value in NON_FINITE:

            def scorer(wrappers, value=value):
                scores = [
                    np.random.default_rng(0).random(w.shape) for wr in wrappers for w in wr.pruned_weights
                ]
                scores[1][alive_entry] = value
                return scores

            with pytest.raises(
                ValueError, match=r"`scorer`: it returned 1 non-finite score\(s\) .*'.*kernel'"
            ):
                tfl.prune(model, rate=0.2, scorer=scorer, structure=structure)
            for a, b in zip(before, _masks(model)):
                np.testing.assert_array_equal(a, b)

    def test_non_finite_scores_at_pruned_positions_are_ignored(self):
        model = _half_pruned_model()
        before = _masks(model)

        def scorer(wrappers):
            scores = [np.abs(w.numpy()) for wr in wrappers for w in wr.pruned_weights]
            for s, m in zip(scores, before):
                s[~m] = np.nan
            return scores

        result = tfl.prune(model, rate=0.2, scorer=scorer)
        assert result["pruned"] > 0


class TestGradualPruningRefusesNonFinite(TestCase):
    @pytest.mark.parametrize("structure", [None, "2:4"])
    def test_pruning_step_raises_and_masks_stay(self, structure):
        model = _half_pruned_model()
        path = _poison(model, np.nan)
        before = _masks(model)
        compile_classifier(model)
        x, y = toy_data(32, 8, 4)
        schedule = tfl.PolynomialDecay(0.3, 0.5, begin_step=0, end_step=4, frequency=1)
        with pytest.raises(ValueError, match=rf"weight '{path}'"):
            model.fit(
                x,
                y,
                batch_size=8,
                epochs=1,
                verbose=0,
                callbacks=[tfl.GradualPruning(schedule, structure=structure)],
            )
        for a, b in zip(before, _masks(model)):
            np.testing.assert_array_equal(a, b)
