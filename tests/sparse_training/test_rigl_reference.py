"""DynamicSparseTraining against the RigL paper and google-research/rigl, update by update.

Counts per update (`floor(f(t) * active)`, rigl's truncating cast), the
anneals' values, begin/end steps, the training batch's own dense gradient as
the growth score, each `grow_init`, zeroed slots, steps_per_execution and
replicas.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_lottery as tfl
from tests.testing import TestCase, compile_classifier, mlp, toy_data, two_replica_strategy
from tf_lottery.core import optimizer_slots
from tf_lottery.pruning import distributions as sd
from tf_lottery.sparse_training import grow_init
from tf_lottery.sparse_training.callback import DynamicSparseTraining

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _model(optimizer=None, hidden=(32,), **compile_kwargs):
    model = tfl.prunable(mlp(hidden=hidden))
    sd.prune_to_distribution(model, 0.8, "erk", seed=0)
    return compile_classifier(model, optimizer=optimizer, **compile_kwargs)


def _masks(model):
    return [m for wr in tfl.prune_wrappers(model) for m in wr.get_masks()]


def _weights(model):
    return [w for wr in tfl.prune_wrappers(model) for w in wr.pruned_weights]


def _paper_fraction(anneal, step, alpha, begin, end):
    p = (step - begin) / (end - begin)
    return {
        "cosine": alpha / 2 * (1 + math.cos(math.pi * p)),
        "constant": alpha,
        "linear": alpha * (1 - p),
        "exponential_2": alpha * (1 - p) ** 2,
    }[anneal]


class _MaskRecorder(keras.callbacks.Callback):
    """Masks and weight values after every step (listed before the DST callback: before its update)."""

    def __init__(self):
        super().__init__()
        self.masks, self.values, self.biases = {}, {}, {}

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        self.masks[step] = _masks(self.model)
        self.values[step] = [keras.ops.convert_to_numpy(w.value) for w in _weights(self.model)]
        self.biases[step] = [
            keras.ops.convert_to_numpy(wr.layer.bias) for wr in tfl.prune_wrappers(self.model)
        ]

    def plain_copy(self, step):
        """An unmasked Keras MLP holding the network's values after `step`."""
        plain = mlp(hidden=(32,))
        plain.set_weights([v for pair in zip(self.values[step], self.biases[step]) for v in pair])
        return plain


class TestCountsAndSchedules(TestCase):
    @pytest.mark.parametrize("anneal", ["cosine", "constant", "linear", "exponential_2"])
    def test_each_update_replaces_floor_of_fraction_times_active(self, anneal):
        x, y = toy_data(256)
        model = _model()
        active = [int(m.sum()) for m in _masks(model)]
        callback = DynamicSparseTraining(
            "set", drop_fraction=0.4, drop_fraction_anneal=anneal, delta_t=3, begin_step=2, t_end=29
        )
        model.fit(x, y, batch_size=32, epochs=4, verbose=0, callbacks=[callback])  # 32 steps
        assert [r["step"] for r in callback.history] == [2, 5, 8, 11, 14, 17, 20, 23, 26]
        names = [f"{wr.layer.name}/{w.name}" for wr in tfl.prune_wrappers(model) for w in wr.pruned_weights]
        for record in callback.history:
            fraction = _paper_fraction(anneal, record["step"], 0.4, 2, 29)
            assert record["drop_fraction"] == pytest.approx(fraction, abs=1e-12)
            expected = [math.floor(fraction * n + 1e-9) for n in active]
            assert [record["replaced"][name] for name in names] == expected
            assert record["grown"] == record["dropped"] <= sum(expected)
        assert [int(m.sum()) for m in _masks(model)] == active

    def test_no_update_before_begin_step_nor_from_t_end(self):
        x, y = toy_data(256)
        model = _model()
        recorder = _MaskRecorder()
        callback = DynamicSparseTraining("set", delta_t=4, begin_step=9, t_end=21)
        model.fit(x, y, batch_size=32, epochs=4, verbose=0, callbacks=[recorder, callback])
        assert [r["step"] for r in callback.history] == [9, 13, 17]
        final = _masks(model)
        # Before step 9 the masks never moved; from step 17 on they are frozen.
        assert all(np.array_equal(a, b) for a, b in zip(recorder.masks[8], recorder.masks[1]))
        assert all(np.array_equal(a, b) for a, b in zip(recorder.masks[32], final))


class TestTrainBatchGradient(TestCase):
    @pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "jit"])
    def test_growth_follows_the_dense_gradient_of_the_update_steps_own_batch(self, jit_compile):
        x, y = toy_data(128)
        model = _model(optimizer=keras.optimizers.SGD(0.05), jit_compile=jit_compile)
        recorder = _MaskRecorder()
        callback = DynamicSparseTraining("rigl", delta_t=4, t_end=100)
        model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False, callbacks=[recorder, callback])
        assert [r["step"] for r in callback.history] == [4, 8]
        step, captured = callback._captured
        assert step == 8
        # Hand computation: an unmasked copy of the network as it was after step 7, on step 8's batch.
        plain = recorder.plain_copy(7)
        with tf.GradientTape() as tape:
            loss = LOSS(y[112:128], plain(x[112:128]))
        expected = [g.numpy() for g in tape.gradient(loss, [layer.kernel for layer in plain.layers])]
        for got, want in zip(captured, expected):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-7)
        # The grown positions carry the largest |g| among the positions inactive after the drop.
        for grad, old, new in zip(expected, recorder.masks[8], _masks(model)):
            grown, still_off = new & ~old, ~old & ~new
            assert grown.any()
            assert np.abs(grad[grown]).min() >= np.abs(grad[still_off]).max() - 1e-6

    def test_the_bias_is_unchanged_when_biases_are_unmasked(self):
        # Only pruned weights are hooked: the bias of a Dense layer trains as usual.
        model = _model()
        callback = DynamicSparseTraining("rigl", delta_t=2, t_end=100)
        x, y = toy_data(64)
        model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[callback])
        assert len(callback.history) == 2 and callback.history[0]["grown"] > 0

    def test_grown_weights_and_their_adam_slots_are_exactly_zero_after_the_update(self):
        x, y = toy_data(128)
        model = _model()
        recorder = _MaskRecorder()
        callback = DynamicSparseTraining("rigl", delta_t=8, t_end=100)
        # Step 8 is the last one: nothing trains after the update.
        model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[recorder, callback])
        assert [r["step"] for r in callback.history] == [8]
        for weight, old, new in zip(_weights(model), recorder.masks[8], _masks(model)):
            grown, dropped = new & ~old, old & ~new
            assert grown.sum() == dropped.sum() > 0
            assert np.all(weight.numpy()[grown | dropped] == 0.0)
            slots = optimizer_slots.slots_for(model.optimizer, weight)
            assert len(slots) == 2
            for slot in slots:
                assert np.all(slot.numpy()[grown | dropped] == 0.0)
                assert np.any(slot.numpy()[new & old] != 0.0)

    def test_with_steps_per_execution_the_update_steps_are_hit(self):
        x, y = toy_data(128)
        model = _model(jit_compile=True, steps_per_execution=2)
        callback = DynamicSparseTraining("rigl", delta_t=4, begin_step=2, t_end=100)
        model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[callback])
        assert [r["step"] for r in callback.history] == [2, 6, 10, 14]
        assert all(r["grown"] > 0 for r in callback.history)

    @pytest.mark.parametrize("delta_t, begin_step", [(3, 0), (4, 1)])
    def test_update_steps_that_steps_per_execution_skips_are_refused(self, delta_t, begin_step):
        x, y = toy_data(64)
        model = _model(steps_per_execution=2)
        masks = _masks(model)
        callback = DynamicSparseTraining("rigl", delta_t=delta_t, begin_step=begin_step, t_end=100)
        with pytest.raises(
            ValueError,
            match=r"steps_per_execution=2 steps per call.*Make `delta_t` and `begin_step` multiples of 2",
        ):
            model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[callback])
        assert all(np.array_equal(a, b) for a, b in zip(masks, _masks(model)))

    def test_replicas_capture_the_summed_gradient_and_keep_identical_masks(self):
        x, y = toy_data(128)
        with two_replica_strategy().scope():
            model = _model(optimizer=keras.optimizers.SGD(0.05))
        counts = [m.sum() for m in _masks(model)]
        recorder = _MaskRecorder()
        callback = DynamicSparseTraining("rigl", delta_t=2, t_end=100)
        model.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False, callbacks=[recorder, callback])
        assert [r["step"] for r in callback.history] == [2, 4] and callback.history[0]["grown"] > 0
        plain = recorder.plain_copy(3)
        with tf.GradientTape() as tape:
            loss = LOSS(y[96:], plain(x[96:]))
        expected = tape.gradient(loss, [layer.kernel for layer in plain.layers])
        for got, want in zip(callback._captured[1], expected):
            np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-7)
        assert [m.sum() for m in _masks(model)] == counts
        for wrapper in tfl.prune_wrappers(model):
            for mask, weight in zip(wrapper.masks, wrapper.pruned_weights):
                masks = [v.numpy() for v in mask._value.values]
                values = [v.numpy() for v in weight._value.values]
                np.testing.assert_array_equal(masks[0], masks[1])
                np.testing.assert_array_equal(values[0], values[1])


class TestGrowInit(TestCase):
    def _run(self, **kwargs):
        x, y = toy_data(128)
        model = kwargs.pop("model", None) or _model()
        recorder = _MaskRecorder()
        callback = DynamicSparseTraining("set", delta_t=8, t_end=100, seed=5, **kwargs)
        model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[recorder, callback])
        grown = [new & ~old for old, new in zip(recorder.masks[8], _masks(model))]
        return model, recorder, grown

    def test_zeros(self):
        model, _, grown = self._run(grow_init="zeros")
        assert all(g.any() and np.all(w.numpy()[g] == 0.0) for w, g in zip(_weights(model), grown))

    def test_random_normal_draws_with_the_tensors_standard_deviation(self):
        model, recorder, grown = self._run(grow_init="random_normal")
        for index, (weight, g, before) in enumerate(zip(_weights(model), grown, recorder.values[8])):
            expected = np.random.default_rng([5, 8, 3, index]).normal(0.0, np.std(before), before.shape)
            np.testing.assert_allclose(weight.numpy()[g], expected[g].astype("float32"), rtol=1e-6)

    def test_initial_value_restores_the_values_before_pruning(self):
        model = tfl.prunable(mlp(hidden=(32,)))
        initial = grow_init.snapshot_initial_values(model)
        sd.prune_to_distribution(model, 0.8, "erk", seed=0)
        compile_classifier(model)
        model, _, grown = self._run(model=model, grow_init="initial_value", initial_values=initial)
        for weight, g, start in zip(_weights(model), grown, initial):
            assert g.any()
            np.testing.assert_array_equal(weight.numpy()[g], start[g])


class TestBadInput(TestCase):
    @pytest.mark.parametrize(
        "kwargs, message",
        [
            (
                {"gradient": "batch"},
                r"`gradient`: expected one of \('train_batch', 'drawn_batch'\)\. Received: gradient='batch'",
            ),
            (
                {"data": (np.zeros((2, 1)), np.zeros(2))},
                r"`data`: RigL with gradient='train_batch'.*pass gradient='drawn_batch'",
            ),
            ({"loss": "mse"}, r"`loss`: RigL with gradient='train_batch'.*Received: loss='mse'"),
            (
                {"drop_fraction_anneal": "cos"},
                r"`drop_fraction_anneal`: expected one of 'cosine'.*Received: drop_fraction_anneal='cos'",
            ),
            (
                {"drop_fraction": 1.5},
                r"`drop_fraction`: expected a float in \(0, 1\]\. Received: drop_fraction=1\.5",
            ),
            (
                {"grow_init": "ones"},
                r"`grow_init`: expected one of \('zeros', 'random_normal', 'initial_value'\)\. Received: grow_init='ones'",
            ),
            (
                {"grow_init": "initial_value"},
                r"`initial_values`: grow_init='initial_value' needs.*snapshot_initial_values",
            ),
            (
                {"initial_values": [np.zeros(2)]},
                r"`initial_values`: it is used only with grow_init='initial_value'",
            ),
            ({"begin_step": -1}, r"`begin_step`: expected an int >= 0\. Received: begin_step=-1"),
            ({"begin_step": 50, "t_end": 50}, r"`t_end`: expected an int >= 51\. Received: t_end=50"),
            ({"reset_slots": "yes"}, r"`reset_slots`: expected a bool\. Received: reset_slots='yes'"),
            ({"batch_size": 0}, r"`batch_size`: expected an int >= 1\. Received: batch_size=0"),
        ],
    )
    def test_each_knob_is_checked_in_the_constructor(self, kwargs, message):
        with pytest.raises(ValueError, match=message):
            DynamicSparseTraining("rigl", **kwargs)

    def test_initial_values_of_the_wrong_shapes_are_refused_before_training(self):
        model = _model()
        before = [w.numpy().copy() for w in _weights(model)]
        callback = DynamicSparseTraining(
            "set", grow_init="initial_value", initial_values=[np.zeros((3, 3))], delta_t=1, t_end=10
        )
        x, y = toy_data(32)
        with pytest.raises(ValueError, match=r"`initial_values`: expected one array per pruned weight"):
            model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[callback])
        assert all(np.array_equal(a, w.numpy()) for a, w in zip(before, _weights(model)))

    def test_update_without_a_captured_gradient_says_what_to_do(self):
        model = _model()
        callback = DynamicSparseTraining("rigl", delta_t=1000, t_end=2000)
        x, y = toy_data(32)
        model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[callback])
        with pytest.raises(ValueError, match=r"no training-batch gradient was captured for step 7"):
            callback.update(7)


class TestRecurrentModels(TestCase):
    def _rnn(self):
        model = keras.Sequential([keras.Input((5, 3)), keras.layers.SimpleRNN(8), keras.layers.Dense(2)])
        model = tfl.prunable(model)
        sd.prune_to_distribution(model, 0.5, "uniform", seed=0)
        return compile_classifier(model)

    def test_a_kernel_read_inside_a_loop_is_refused_with_the_alternative(self):
        model = self._rnn()
        masks = _masks(model)
        x = np.random.default_rng(0).normal(size=(32, 5, 3)).astype("float32")
        y = np.arange(32) % 2
        callback = DynamicSparseTraining("rigl", delta_t=1, t_end=100)
        with pytest.raises(
            ValueError,
            match=r"'simple_rnn/simple_rnn_cell/kernel' cannot be captured.*gradient='drawn_batch'",
        ):
            model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[callback])
        assert all(np.array_equal(a, b) for a, b in zip(masks, _masks(model)))
        # The hooks came off: the same model trains, here with the drawn-batch gradient.
        drawn = DynamicSparseTraining("rigl", data=(x, y), gradient="drawn_batch", delta_t=1, t_end=100)
        model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[drawn])
        assert [r["step"] for r in drawn.history] == [1, 2] and drawn.history[0]["grown"] > 0


class TestConfig:
    def test_every_new_knob_round_trips(self):
        callback = DynamicSparseTraining(
            "rigl",
            drop_fraction=0.5,
            drop_fraction_anneal="exponential_3",
            delta_t=20,
            begin_step=40,
            t_end=400,
            grow_init="random_normal",
            reset_slots=False,
            seed=4,
        )
        config = callback.get_config()
        assert config["gradient"] == "train_batch" and config["begin_step"] == 40
        assert config["drop_fraction_anneal"] == "exponential_3" and config["grow_init"] == "random_normal"
        assert config["reset_slots"] is False and config["batch_size"] is None
        assert DynamicSparseTraining.from_config(config).get_config() == config
