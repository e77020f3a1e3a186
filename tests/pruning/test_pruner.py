"""Pruning properties: ordering, exact counts, ties, masks only shrink."""

import keras
import numpy as np
import pytest

import tf_lottery as tfl
from tests.testing import TestCase, compile_classifier, mlp, toy_data
from tf_lottery.pruning import pruner as pruner_module
from tf_lottery.pruning.pruner import exact_count, select_lowest


def _model():
    return tfl.prunable(mlp(input_dim=40, hidden=(64, 32), classes=10))


def _weights_and_masks(model):
    pairs = []
    for wrapper in tfl.prune_wrappers(model):
        for weight, mask in zip(wrapper.pruned_weights, wrapper.get_masks()):
            pairs.append((wrapper.layer.name, np.asarray(weight.numpy()), mask))
    return pairs


class TestSelectLowest:
    def test_exact_count_and_ordering(self):
        rng = np.random.default_rng(0)
        scores = [rng.random((30, 20)), rng.random((50,))]
        alive = [np.ones((30, 20), bool), rng.random(50) > 0.3]
        k = 123
        masks = select_lowest(scores, alive, k)
        removed = sum(int(a.sum() - m.sum()) for a, m in zip(alive, masks))
        assert removed == k
        kept = np.concatenate([s[m] for s, m in zip(scores, masks)])
        pruned = np.concatenate([s[a & ~m] for s, a, m in zip(scores, alive, masks)])
        assert kept.min() >= pruned.max()
        for a, m in zip(alive, masks):
            assert not np.any(m & ~a)  # masks only shrink

    def test_ties_are_broken_by_position_deterministically(self):
        scores = [np.ones((4, 4)), np.ones((8,))]
        alive = [np.ones((4, 4), bool), np.ones(8, bool)]
        masks = select_lowest(scores, alive, 10)
        # The first 10 positions in model order go: all 16 of tensor 0 come
        # before tensor 1, so the first 10 of tensor 0 are pruned.
        assert masks[0].reshape(-1)[:10].sum() == 0
        assert masks[0].reshape(-1)[10:].all()
        assert masks[1].all()
        again = select_lowest(scores, alive, 10)
        np.testing.assert_array_equal(again[0], masks[0])

    def test_nan_scores_are_refused(self):
        with pytest.raises(ValueError, match="NaN"):
            select_lowest([np.array([np.nan, 1.0, 2.0])], [np.ones(3, bool)], 1)

    def test_exact_count_rounds_half_up(self):
        assert exact_count(0.2, 10) == 2
        assert exact_count(0.25, 10) == 3  # 2.5 -> 3
        assert exact_count(0.2, 7) == 1  # 1.4 -> 1
        assert exact_count(0.0, 100) == 0

    def test_exact_count_uses_the_rate_as_written(self):
        # In binary floating point 0.7 * 45 = 31.499999999999996 and 0.35 * 10
        # = 3.4999999999999996; the user asked for 31.5 and 3.5 weights.
        assert 0.7 * 45 < 31.5
        assert exact_count(0.7, 45) == 32
        assert exact_count(0.35, 10) == 4
        assert exact_count(np.float32(0.5), 9) == 5  # 4.5 -> 5

    def test_prune_at_a_tie_of_the_rate_removes_the_rounded_count(self):
        model = tfl.prunable(keras.Sequential([keras.Input((5,)), keras.layers.Dense(9, use_bias=False)]))
        result = tfl.prune(model, rate=0.7)
        assert result["pruned"] == 32
        assert tfl.sparsity_report(model).alive == 45 - 32


class TestPrune(TestCase):
    def test_global_magnitude_pruning(self):
        model = _model()
        result = tfl.prune(model, rate=0.3)
        pairs = _weights_and_masks(model)
        total = sum(m.size for _, _, m in pairs)
        assert result["pruned"] == exact_count(0.3, total)
        kept = np.concatenate([np.abs(w[m]) for _, w, m in pairs])
        pruned_original = np.concatenate([np.abs(w[~m]) for _, w, m in pairs])
        assert np.all(pruned_original == 0)  # pruned positions zeroed
        # Compare against the values before pruning: rebuild from a copy.
        model2 = _model()
        before = [np.abs(w) for _, w, _ in _weights_and_masks(model2)]
        tfl.prune(model2, rate=0.3)
        masks = [m for _, _, m in _weights_and_masks(model2)]
        kept = np.concatenate([b[m] for b, m in zip(before, masks)])
        removed = np.concatenate([b[~m] for b, m in zip(before, masks)])
        assert kept.min() >= removed.max()
        # Global: layers lose different fractions.
        fractions = [1 - m.mean() for m in masks]
        assert max(fractions) - min(fractions) > 0.01

    def test_layerwise_pruning_same_fraction_in_each_layer(self):
        model = _model()
        before = [np.abs(w) for _, w, _ in _weights_and_masks(model)]
        tfl.prune(model, rate=0.4, scope="layer")
        for b, (_, _, m) in zip(before, _weights_and_masks(model)):
            assert int((~m).sum()) == exact_count(0.4, m.size)
            assert b[m].min() >= b[~m].max()

    def test_iterative_masks_only_shrink_and_counts_are_exact(self):
        model = _model()
        previous = [m for _, _, m in _weights_and_masks(model)]
        alive = sum(m.sum() for m in previous)
        for _ in range(4):
            tfl.prune(model, rate=0.2)
            current = [m for _, _, m in _weights_and_masks(model)]
            for p, c in zip(previous, current):
                assert not np.any(c & ~p)
            expected = alive - exact_count(0.2, alive)
            assert sum(c.sum() for c in current) == expected
            alive, previous = expected, current

    def test_layer_rate_override_for_output_layer(self):
        model = _model()
        tfl.prune(model, rate=0.2, layer_rates={"output": 0.1})
        masks = {name: m for name, _, m in _weights_and_masks(model)}
        out = masks.pop("output")
        assert int((~out).sum()) == exact_count(0.1, out.size)
        rest = sum(m.size for m in masks.values())
        assert sum(int((~m).sum()) for m in masks.values()) == exact_count(0.2, rest)

    def test_layer_rates_accept_glob_patterns(self):
        inputs = keras.Input((8, 8, 3))
        x = keras.layers.Conv2D(8, 3, name="conv_a")(inputs)
        x = keras.layers.Conv2D(8, 3, name="conv_b")(x)
        x = keras.layers.Flatten()(x)
        x = keras.layers.Dense(16, name="fc")(x)
        model = tfl.prunable(keras.Model(inputs, keras.layers.Dense(10, name="output")(x)))
        # The paper's Conv-6 rates: conv 15%, fc 20%, output 10%.
        tfl.prune(model, rate=0.2, scope="layer", layer_rates={"conv_*": 0.15, "output": 0.1})
        for name, _, m in _weights_and_masks(model):
            rate = {"conv_a": 0.15, "conv_b": 0.15, "fc": 0.2, "output": 0.1}[name]
            assert int((~m).sum()) == exact_count(rate, m.size)

    def test_one_shot_to_target_and_iterative_to_target(self):
        model = _model()
        tfl.prune(model, target_sparsity=0.9)
        assert tfl.sparsity_report(model).sparsity == pytest.approx(0.9, abs=1e-4)
        model = _model()
        rate = tfl.rate_per_round(0.9, 5)
        for _ in range(4):
            tfl.prune(model, rate=rate)
        tfl.prune(model, target_sparsity=0.9)
        report = tfl.sparsity_report(model)
        assert report.total - report.alive == exact_count(0.9, report.total)

    def test_random_scorer_is_seeded_and_respects_layer_scope(self):
        a, b = _model(), _model()
        tfl.prune(a, rate=0.5, scope="layer", scorer=tfl.scoring.RandomScorer(seed=3))
        tfl.prune(b, rate=0.5, scope="layer", scorer=tfl.scoring.RandomScorer(seed=3))
        for (_, _, ma), (_, _, mb) in zip(_weights_and_masks(a), _weights_and_masks(b)):
            np.testing.assert_array_equal(ma, mb)
            assert int((~ma).sum()) == exact_count(0.5, ma.size)
        c = _model()
        before = [np.abs(w) for _, w, _ in _weights_and_masks(c)]
        tfl.prune(c, rate=0.5, scorer="random")
        masks = [m for _, _, m in _weights_and_masks(c)]
        # Random pruning is not magnitude pruning.
        assert any(b[m].min() < b[~m].max() for b, m in zip(before, masks))

    def test_numpy_seeds_and_rounds_are_accepted(self):
        wrappers = tfl.prune_wrappers(_model())
        for a, b in zip(
            tfl.scoring.RandomScorer(np.int64(3))(wrappers), tfl.scoring.RandomScorer(3)(wrappers)
        ):
            np.testing.assert_array_equal(a, b)
        assert tfl.rate_per_round(0.9, np.int64(5)) == tfl.rate_per_round(0.9, 5)
        # From a sparse start (one-shot masks seeding IMP) the rounds share what is left.
        assert tfl.rate_per_round(0.875, 2, start_sparsity=0.5) == 0.5
        assert tfl.rate_per_round(0.9, 5, start_sparsity=0.0) == tfl.rate_per_round(0.9, 5)
        with pytest.raises(ValueError, match=r"`seed`: expected an int >= 0\. Received: seed=-1\."):
            tfl.scoring.RandomScorer(-1)
        with pytest.raises(ValueError, match=r"`rounds`: expected an int >= 1\. Received: rounds=True\."):
            tfl.rate_per_round(0.9, True)

    def test_taylor_scorer_scores_weight_times_gradient(self):
        model = _model()
        compile_classifier(model)
        x, y = toy_data(64, 40, 10)
        scorer = tfl.scoring.TaylorScorer(model, x, y)
        scores = scorer(tfl.prune_wrappers(model))
        assert [s.shape for s in scores] == [(40, 64), (64, 32), (32, 10)]
        assert all(np.all(s >= 0) for s in scores) and any(s.max() > 0 for s in scores)
        tfl.prune(model, rate=0.5, scorer=scorer)
        masks = [m for _, _, m in _weights_and_masks(model)]
        kept = np.concatenate([s[m] for s, m in zip(scores, masks)])
        dropped = np.concatenate([s[~m] for s, m in zip(scores, masks)])
        assert kept.min() >= dropped.max()

    @pytest.mark.parametrize(
        "kwargs, message",
        [
            ({"rate": 1.0}, r"`rate`: expected a float in \[0, 1\). Received: rate=1.0"),
            ({"rate": -0.1}, r"`rate`: expected a float in \[0, 1\)"),
            ({"rate": "0.2"}, r"`rate`: expected a float"),
            ({}, "Pass exactly one of `rate`"),
            ({"rate": 0.2, "target_sparsity": 0.5}, "Pass exactly one of `rate`"),
            ({"rate": 0.2, "scope": "model"}, r"`scope`: expected one of \('global', 'layer'\)"),
            ({"rate": 0.2, "scorer": "l1"}, r"`scorer`: expected 'magnitude', 'random'"),
            ({"rate": 0.2, "layer_rates": {"nope": 0.1}}, "'nope' matches no pruned layer"),
            ({"rate": 0.2, "layer_rates": {"output": 2}}, r"layer_rates\['output'\]"),
        ],
    )
    def test_bad_arguments(self, kwargs, message):
        with pytest.raises(ValueError, match=message):
            tfl.prune(_model(), **kwargs)

    def test_target_below_current_sparsity_is_refused(self):
        model = _model()
        tfl.prune(model, target_sparsity=0.8)
        with pytest.raises(ValueError, match="below the current sparsity.*masks only shrink"):
            tfl.prune(model, target_sparsity=0.5)

    def test_model_without_wrappers_is_refused(self):
        with pytest.raises(ValueError, match=r"has no PruneWrapper layers. Wrap it first"):
            tfl.prune(mlp(), rate=0.2)


def test_ties_are_broken_in_masks_that_are_not_c_contiguous():
    # Fortran-ordered masks (e.g. transposed views) once lost the tie-breaking
    # writes, which went to a copy made by `reshape(-1)`.
    alive = [np.asfortranarray(np.ones((3, 4), bool))]
    scores = [np.asfortranarray(np.ones((3, 4)))]
    (mask,) = select_lowest(scores, alive, 5)
    assert int(np.count_nonzero(~mask)) == 5
    assert list(np.flatnonzero(~mask)) == [0, 1, 2, 3, 4]


def _reference_select(scores, alive, k):
    """Sort-based selection: a stable argsort of the alive scores in model, then row-major, order."""
    alive_scores = np.concatenate([np.asarray(s)[a] for s, a in zip(scores, alive)])
    owner = np.concatenate([np.full(np.count_nonzero(a), i) for i, a in enumerate(alive)])
    position = np.concatenate([np.flatnonzero(a) for a in alive])
    chosen = np.argsort(alive_scores, kind="stable")[:k]
    masks = [np.array(a, copy=True, order="C") for a in alive]
    for i, mask in enumerate(masks):
        mask.reshape(-1)[position[chosen[owner[chosen] == i]]] = False
    return masks


def _reference_prune(model, scorer, amount, scope, layer_rates, by_target):
    wrappers = tfl.prune_wrappers(model)
    scores = scorer(wrappers)
    alive = [m for wr in wrappers for m in wr.get_masks()]
    owner = [wr.layer.name for wr in wrappers for _ in wr.masks]
    groups, shared = [], []
    for name in dict.fromkeys(owner):
        indices = [j for j, n in enumerate(owner) if n == name]
        if name in layer_rates:
            groups.append((indices, layer_rates[name]))
        elif scope == "layer":
            groups.append((indices, amount))
        else:
            shared.extend(indices)
    if shared:
        groups.append((shared, amount))
    masks = list(alive)
    for indices, group_amount in groups:
        n_alive = sum(int(alive[j].sum()) for j in indices)
        n_total = sum(alive[j].size for j in indices)
        if by_target:
            k = exact_count(group_amount, n_total) - (n_total - n_alive)
        else:
            k = exact_count(group_amount, n_alive)
        chosen = _reference_select([scores[j] for j in indices], [alive[j] for j in indices], k)
        for j, mask in zip(indices, chosen):
            masks[j] = mask
    return masks


def _coarse_magnitude(wrappers):
    # float64 scores on a coarse grid: many ties, and a scorer other than magnitude.
    return [np.round(np.abs(w.numpy()).astype("float64"), 1) for wr in wrappers for w in wr.pruned_weights]


class TestSelectionMatchesSortReference(TestCase):
    """The chunked, partition-based selection picks exactly what a full stable sort picks."""

    @pytest.fixture(autouse=True)
    def _small_chunks(self, monkeypatch):
        # Chunks of 7 entries: every tensor spans several chunks, and ties cross chunk borders.
        monkeypatch.setattr(pruner_module, "_CHUNK", 7)

    @pytest.mark.parametrize("seed", [0, 1, 2])
    def test_select_lowest_on_random_arrays_with_ties(self, seed):
        rng = np.random.default_rng(seed)
        shapes = [(9, 13), (50,), (4, 3, 5)]
        scores = [rng.integers(0, 6, s).astype("float32") for s in shapes]
        scores[1] = scores[1].astype("float64")  # mixed dtypes compare in float64
        scores[2] = np.asfortranarray(scores[2])
        alive = [rng.random(s) > 0.3 for s in shapes]
        n_alive = sum(int(a.sum()) for a in alive)
        for k in (0, 1, n_alive // 3, n_alive // 2 + 1, n_alive):
            got = select_lowest(scores, alive, k)
            for g, r in zip(got, _reference_select(scores, alive, k)):
                np.testing.assert_array_equal(g, r)
        weights = [rng.integers(-3, 4, s).astype("float32") for s in shapes]
        got = select_lowest(weights, alive, n_alive // 2, key=np.abs)
        for g, r in zip(got, _reference_select([np.abs(w) for w in weights], alive, n_alive // 2)):
            np.testing.assert_array_equal(g, r)

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"rate": 0.2},
            {"rate": 0.35, "scope": "layer"},
            {"rate": 0.5, "layer_rates": {"output": 0.1}},
            {"rate": 0.25, "scope": "layer", "layer_rates": {"output": 0.45}},
            {"target_sparsity": 0.9},
        ],
    )
    @pytest.mark.parametrize("scorer", ["magnitude", "coarse"])
    def test_prune_matches_the_reference_over_rounds(self, kwargs, scorer):
        rng = np.random.default_rng(len(str(kwargs)))
        model = _model()
        for wrapper in tfl.prune_wrappers(model):
            for weight in wrapper.pruned_weights:
                # Multiples of 0.25: most magnitudes tie with many others.
                weight.assign(rng.integers(-3, 4, tuple(weight.shape)).astype("float32") * 0.25)
        score_fn = tfl.scoring.magnitude if scorer == "magnitude" else _coarse_magnitude
        by_target = "target_sparsity" in kwargs
        amount = kwargs.get("target_sparsity", kwargs.get("rate"))
        for round_ in range(3):
            if by_target:
                amount = [0.5, 0.8, 0.9][round_]
                kwargs = {"target_sparsity": amount}
            expected = _reference_prune(
                model,
                score_fn,
                amount,
                kwargs.get("scope", "global"),
                kwargs.get("layer_rates", {}),
                by_target,
            )
            tfl.prune(model, scorer=score_fn if scorer == "coarse" else "magnitude", **kwargs)
            got = [m for _, _, m in _weights_and_masks(model)]
            for g, e in zip(got, expected):
                np.testing.assert_array_equal(g, e)


def test_magnitude_pruning_zeroes_exactly_the_pruned_weights():
    # The scores are views of the weights; pruning writes the weights afterwards, and
    # the values it wrote are the ones the model reads.
    model = _model()
    before = [np.array(w.numpy()) for wr in tfl.prune_wrappers(model) for w in wr.pruned_weights]
    tfl.prune(model, rate=0.5)
    after = [
        (w.numpy(), m) for wr in tfl.prune_wrappers(model) for w, m in zip(wr.pruned_weights, wr.get_masks())
    ]
    for b, (w, m) in zip(before, after):
        np.testing.assert_array_equal(w, np.where(m, b, 0.0))
