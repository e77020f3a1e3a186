"""RigL / SET: the cosine schedule, exact drop/grow counts, zero-initialised growth, replicas."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

import tf_lottery as tfl
from tests.testing import (
    TestCase,
    compile_classifier,
    mlp,
    pruned_weights_are_zero,
    toy_data,
    two_replica_strategy,
)
from tf_lottery.core import optimizer_slots
from tf_lottery.pruning import distributions as sd
from tf_lottery.pruning.scorers.batch_gradients import BatchGradients
from tf_lottery.sparse_training import drop_grow
from tf_lottery.sparse_training.callback import DynamicSparseTraining


def test_cosine_drop_fraction_at_start_middle_and_end():
    assert drop_grow.cosine_drop_fraction(0, 1000, 0.3) == pytest.approx(0.3)
    assert drop_grow.cosine_drop_fraction(500, 1000, 0.3) == pytest.approx(0.15)
    assert drop_grow.cosine_drop_fraction(250, 1000, 0.3) == pytest.approx(0.15 * (1 + math.cos(math.pi / 4)))
    assert drop_grow.cosine_drop_fraction(1000, 1000, 0.3) == 0.0
    assert drop_grow.cosine_drop_fraction(1500, 1000, 0.3) == 0.0


def test_update_count_is_truncated():
    assert drop_grow.update_count(0.3, 10) == 3
    assert drop_grow.update_count(0.29, 10) == 2
    assert drop_grow.update_count(0.0, 10) == 0


def test_drop_grow_drops_smallest_and_grows_largest_score():
    mask = np.array([True, True, True, False, False, False])
    magnitude = np.array([0.1, 0.5, 0.3, 0.0, 0.0, 0.0])
    score = np.array([0.0, 0.0, 0.0, 0.2, 0.9, 0.1])
    result = drop_grow.drop_grow(mask, magnitude, score, k=2)
    np.testing.assert_array_equal(result.mask, [False, True, False, True, True, False])
    np.testing.assert_array_equal(result.grown, [False, False, False, True, True, False])
    np.testing.assert_array_equal(result.dropped, [True, False, True, False, False, False])


def test_a_dropped_weight_can_be_grown_back_and_is_then_unchanged():
    mask = np.array([True, True, False, False])
    result = drop_grow.drop_grow(mask, np.array([0.1, 0.5, 0, 0]), np.array([5.0, 0, 1.0, 0]), k=1)
    np.testing.assert_array_equal(result.mask, mask)
    assert not result.grown.any() and not result.dropped.any()


@pytest.mark.parametrize("k", [0, 1, 7, 30])
def test_drop_grow_keeps_the_count_exact(k):
    rng = np.random.default_rng(k)
    mask = rng.random((8, 16)) < 0.25
    result = drop_grow.drop_grow(mask, rng.random(mask.shape), rng.random(mask.shape), min(k, mask.sum()))
    assert result.mask.sum() == mask.sum()
    assert result.grown.sum() == result.dropped.sum()
    assert not (result.grown & mask).any() and not (result.dropped & ~mask).any()


def test_drop_grow_rejects_more_than_active():
    with pytest.raises(ValueError, match="Cannot replace 3 weights: the tensor has 2 active"):
        drop_grow.drop_grow(np.array([True, True, False]), np.ones(3), np.ones(3), 3)


def _sparse_model(sparsity=0.8, optimizer=None):
    model = tfl.prunable(mlp())
    sd.prune_to_distribution(model, sparsity, "erk", seed=0)
    return compile_classifier(model, optimizer=optimizer)


def _masks(model):
    return [m for wr in tfl.prune_wrappers(model) for m in wr.get_masks()]


class TestDynamicSparseTraining(TestCase):
    @pytest.mark.parametrize(
        "method, kwargs",
        [("rigl", {}), ("rigl", {"gradient": "drawn_batch", "batch_size": 32}), ("set", {})],
        ids=["rigl_train_batch", "rigl_drawn_batch", "set"],
    )
    def test_updates_every_delta_t_until_t_end_and_counts_never_change(self, method, kwargs):
        x, y = toy_data(256)
        model = _sparse_model()
        counts = [m.sum() for m in _masks(model)]
        data = (x, y) if kwargs else None
        callback = DynamicSparseTraining(method, data=data, delta_t=5, t_end=0.75, **kwargs)
        model.fit(x, y, batch_size=32, epochs=5, verbose=0, callbacks=[callback])
        # 8 steps per epoch, 40 steps, t_end = 30: updates at 5, 10, ..., 25.
        assert [r["step"] for r in callback.history] == [5, 10, 15, 20, 25]
        assert [m.sum() for m in _masks(model)] == counts
        assert all(r["grown"] == r["dropped"] > 0 for r in callback.history[:3])
        assert pruned_weights_are_zero(model)

    def test_grown_weights_start_at_zero_with_reset_adam_slots(self):
        x, y = toy_data(256)
        model = _sparse_model()
        callback = DynamicSparseTraining(
            "rigl", data=(x, y), gradient="drawn_batch", batch_size=64, delta_t=1000, t_end=2000
        )
        model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[callback])
        assert callback.history == []
        before = _masks(model)
        weights = [w for wr in tfl.prune_wrappers(model) for w in wr.pruned_weights]
        slots = [optimizer_slots.slots_for(model.optimizer, w) for w in weights]
        assert all(len(s) == 2 for s in slots)  # Adam: m and v
        # Sparse-equivalent updates: pruned positions get a zero gradient, so
        # their Adam moments are 0; active ones (some about to be dropped) are not.
        assert all(np.abs(s.numpy()[~m]).max() == 0 for ss, m in zip(slots, before) for s in ss)
        assert all(np.abs(s.numpy()[m]).max() > 0 for ss, m in zip(slots, before) for s in ss)
        record = callback.update(100)
        assert record["grown"] > 0
        for weight, old, new, ss in zip(weights, before, _masks(model), slots):
            grown, dropped = new & ~old, old & ~new
            assert grown.sum() == dropped.sum() and new.sum() == old.sum()
            assert np.all(weight.numpy()[grown] == 0.0)
            for slot in ss:
                assert np.all(slot.numpy()[grown | dropped] == 0.0)

    def test_rigl_grows_the_inactive_weights_of_largest_gradient(self):
        x, y = toy_data(128)
        model = _sparse_model()
        callback = DynamicSparseTraining(
            "rigl", data=(x, y), gradient="drawn_batch", batch_size=len(x), delta_t=1000, t_end=2000
        )
        model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[callback])
        weights = [w for wr in tfl.prune_wrappers(model) for w in wr.pruned_weights]
        grads = BatchGradients(model, weights)(x, y)
        before = _masks(model)
        callback.update(50)
        for grad, old, new in zip(grads, before, _masks(model)):
            grown = new & ~old
            not_grown = ~old & ~new
            assert np.abs(grad[grown]).min() >= np.abs(grad[not_grown]).max() - 1e-6

    def test_a_non_finite_gradient_says_to_lower_the_rate_or_check_the_data(self):
        x, y = toy_data(64)
        model = _sparse_model()
        broken = x.copy()
        broken[0, 0] = np.nan  # as a bad input, or labels out of range under XLA, would make it
        callback = DynamicSparseTraining(
            "rigl", data=(broken, y), gradient="drawn_batch", batch_size=len(x), delta_t=1000, t_end=2000
        )
        model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[callback])
        with pytest.raises(
            FloatingPointError,
            match=r"the dense gradient at step 50 is not finite; training diverged. Lower the learning "
            r"rate, or check the labels and inputs \(e.g. labels out of range for the loss\)\.",
        ):
            callback.update(50)

    def test_steps_continue_across_fit_calls(self):
        x, y = toy_data(256)
        model = _sparse_model()
        callback = DynamicSparseTraining("set", delta_t=6, t_end=40)
        model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[callback])
        assert [r["step"] for r in callback.history] == [6, 12]
        model.fit(x, y, batch_size=32, epochs=3, verbose=0, callbacks=[callback])
        assert [r["step"] for r in callback.history] == [18, 24, 30, 36]

    def test_rigl_gradient_function_is_traced_once_across_fit_calls(self):
        x, y = toy_data(128)
        model = _sparse_model()
        callback = DynamicSparseTraining(
            "rigl", data=(x, y), gradient="drawn_batch", batch_size=32, delta_t=2, t_end=100
        )
        model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[callback])
        first = callback._gradients
        model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[callback])
        assert callback._gradients is first and [r["step"] for r in callback.history] == [6, 8]

    def test_sgd_momentum_slots_are_found_and_reset(self):
        model = _sparse_model(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
        model.optimizer.build(model.trainable_variables)
        weight = tfl.prune_wrappers(model)[0].pruned_weights[0]
        (slot,) = optimizer_slots.slots_for(model.optimizer, weight)
        slot.assign(np.ones(slot.shape, "float32"))
        positions = np.zeros(slot.shape, bool)
        positions[0, :3] = True
        assert optimizer_slots.reset_slots(model.optimizer, weight, positions) == 1
        assert slot.numpy()[positions].sum() == 0 and slot.numpy()[~positions].min() == 1

    def test_replicas_hold_identical_masks_and_weights(self):
        strategy = two_replica_strategy()
        x, y = toy_data(256)
        with strategy.scope():
            model = _sparse_model()
        counts = [m.sum() for m in _masks(model)]
        callback = DynamicSparseTraining(
            "rigl", data=(x, y), gradient="drawn_batch", batch_size=32, delta_t=4, t_end=24
        )
        model.fit(x, y, batch_size=32, epochs=3, verbose=0, callbacks=[callback])
        assert len(callback.history) == 5 and callback.history[0]["grown"] > 0
        assert [m.sum() for m in _masks(model)] == counts
        for wrapper in tfl.prune_wrappers(model):
            for mask, weight in zip(wrapper.masks, wrapper.pruned_weights):
                masks = [v.numpy() for v in mask._value.values]
                values = [v.numpy() for v in weight._value.values]
                assert len(masks) == 2
                np.testing.assert_array_equal(masks[0], masks[1])
                np.testing.assert_array_equal(values[0], values[1])
                assert np.all(values[0][~masks[0]] == 0.0)

    def test_config_round_trip(self):
        callback = DynamicSparseTraining(
            "rigl", data=toy_data(32), gradient="drawn_batch", batch_size=16, delta_t=50, t_end=900, seed=3
        )
        config = callback.get_config()
        assert "data" not in config
        again = DynamicSparseTraining.from_config({**config, "data": toy_data(32)})
        assert again.get_config() == config
        set_callback = DynamicSparseTraining("set", drop_fraction=0.5, t_end=0.5)
        assert (
            DynamicSparseTraining.from_config(set_callback.get_config()).get_config()
            == set_callback.get_config()
        )

    def test_argument_errors(self):
        with pytest.raises(ValueError, match="Invalid value for argument `method`"):
            DynamicSparseTraining("prune")
        with pytest.raises(ValueError, match="gradient='drawn_batch' computes RigL's gradient"):
            DynamicSparseTraining("rigl", gradient="drawn_batch")
        with pytest.raises(ValueError, match=r"`t_end`: a float is a fraction of training"):
            DynamicSparseTraining("set", t_end=1.5)
        with pytest.raises(ValueError, match=r"`delta_t`: expected an int >= 1. Received: delta_t=0"):
            DynamicSparseTraining("set", delta_t=0)
        with pytest.raises(ValueError, match=r"`drop_fraction`: expected a float in \(0, 1\]"):
            DynamicSparseTraining("set", drop_fraction=0.0)
        with pytest.raises(ValueError, match=r"`seed`: expected an int >= 0\. Received: seed=-1\."):
            DynamicSparseTraining("set", seed=-1)
        with pytest.raises(ValueError, match=r"`t_end`: expected an int >= 1\. Received: t_end=0\."):
            DynamicSparseTraining("set", t_end=0)
        with pytest.raises(ValueError, match=r"`t_end`: expected an int >= 1\. Received: t_end=0\."):
            drop_grow.cosine_drop_fraction(0, 0)

    def test_numpy_scalars_are_accepted_and_kept_as_python_numbers(self):
        callback = DynamicSparseTraining(
            "set", batch_size=np.int64(16), delta_t=np.int32(5), t_end=np.float32(0.5), seed=np.int64(2)
        )  # batch_size is kept even where unused
        config = callback.get_config()
        assert (config["batch_size"], config["delta_t"], config["t_end"], config["seed"]) == (16, 5, 0.5, 2)
        assert [type(config[k]) for k in ("batch_size", "delta_t", "t_end", "seed")] == [int, int, float, int]

    def test_model_without_wrappers_is_refused(self):
        model = compile_classifier(mlp())
        x, y = toy_data(64)
        with pytest.raises(ValueError, match="has no PruneWrapper layers"):
            model.fit(x, y, epochs=1, verbose=0, callbacks=[DynamicSparseTraining("set")])
