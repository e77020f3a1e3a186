"""EarlyBird: the drawn mask is prune's, the search stops when masks settle, the ticket retrains."""

import keras
import numpy as np
import pytest

import tf_lottery as tfl
from tests.testing import TestCase, compile_classifier, mlp, pruned_weights_are_zero, toy_data
from tf_lottery.core.walk import model_variables
from tf_lottery.lottery.early_bird import draw_masks, mask_distance
from tf_lottery.pruning.pruner import exact_count


def _masks(model):
    return [m for wr in tfl.prune_wrappers(model) for m in wr.get_masks()]


def _conv_model():
    return keras.Sequential(
        [
            keras.Input((16, 4)),
            keras.layers.Conv1D(8, 3, activation="relu", name="conv1"),
            keras.layers.Conv1D(12, 3, activation="relu", name="conv2"),
            keras.layers.Flatten(),
            keras.layers.Dense(10, name="output"),
        ]
    )


class TestDrawMasks(TestCase):
    @pytest.mark.parametrize("scope", ["global", "layer"])
    def test_unstructured_masks_are_what_prune_gives_and_the_model_is_untouched(self, scope):
        model = tfl.prunable(mlp())
        model(toy_data(2)[0])
        kernels = [w.numpy().copy() for wr in tfl.prune_wrappers(model) for w in wr.pruned_weights]
        drawn = draw_masks(model, 0.7, scope=scope)
        assert all(m.all() for m in _masks(model))
        for kernel, wrapper in zip(kernels, tfl.prune_wrappers(model)):
            np.testing.assert_array_equal(kernel, wrapper.pruned_weights[0].numpy())
        tfl.prune(model, target_sparsity=0.7, scope=scope)
        for a, b in zip(drawn, _masks(model)):
            np.testing.assert_array_equal(a, b)

    def test_channel_masks_drop_whole_conv_channels_by_l1_norm(self):
        model = tfl.prunable(_conv_model())
        model(np.zeros((1, 16, 4), "float32"))
        drawn = draw_masks(model, 0.5, granularity="channel", scope="layer")
        wrappers = tfl.prune_wrappers(model)
        for wrapper, mask in zip(wrappers, drawn):
            if wrapper.layer.name == "output":
                assert mask.size - mask.sum() == exact_count(0.5, mask.size)  # unstructured
                continue
            channels = mask.reshape(-1, mask.shape[-1])
            assert np.all(channels.all(axis=0) | ~channels.any(axis=0))  # whole channels
            kept = channels.all(axis=0)
            assert kept.size - kept.sum() == exact_count(0.5, kept.size)
            norms = np.abs(wrapper.layer.kernel.numpy()).reshape(-1, mask.shape[-1]).sum(axis=0)
            assert norms[kept].min() >= norms[~kept].max()

    @pytest.mark.parametrize("functional", [False, True])
    def test_channels_are_ranked_by_the_following_batchnorm_scale_globally(self, functional):
        layers = [
            keras.layers.Conv1D(8, 3, name="conv1"),
            keras.layers.BatchNormalization(name="bn1"),
            keras.layers.Conv1D(6, 3, name="conv2"),
            keras.layers.Flatten(),
            keras.layers.Dense(4, name="output"),
        ]
        if functional:
            inputs = keras.Input((16, 4))
            outputs = inputs
            for layer in layers:
                outputs = layer(outputs)
            base = keras.Model(inputs, outputs)
        else:
            base = keras.Sequential([keras.Input((16, 4)), *layers])
        model = tfl.prunable(base)
        model(np.zeros((1, 16, 4), "float32"))
        bn = next(layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization))
        gamma = np.array([0.9, -0.05, 0.8, 0.01, -0.7, 0.6, 0.02, 0.5], "float32")
        bn.gamma.assign(gamma)
        conv1, conv2 = tfl.prune_wrappers(model)[:2]
        # L1 norm of each conv2 channel: 24 weights x 0.01 = 0.24.
        conv2.layer.kernel.assign(np.full(conv2.layer.kernel.shape, 0.01, "float32"))
        drawn = draw_masks(model, 0.5, granularity="channel")
        kept1 = drawn[0].reshape(-1, 8).all(axis=0)
        kept2 = drawn[1].reshape(-1, 6).all(axis=0)
        # 14 channels, 7 pruned over both layers: conv1's |gamma| 0.01, 0.02, 0.05 and four of
        # conv2's equal scores 0.24 (ties: the first positions go first).
        np.testing.assert_array_equal(kept1, np.abs(gamma) >= 0.5)
        np.testing.assert_array_equal(kept2, [False, False, False, False, True, True])
        assert drawn[2].size - drawn[2].sum() == exact_count(0.5, drawn[2].size)

    def test_mask_distance(self):
        a = [np.array([True, True, False, False]), np.ones((2, 2), bool)]
        b = [np.array([True, False, True, False]), np.ones((2, 2), bool)]
        assert mask_distance(a, b) == 2 / 8
        assert mask_distance(a, a) == 0.0


class TestEarlyBird(TestCase):
    def test_stops_when_distances_stay_below_epsilon_and_the_ticket_retrains(self):
        x, y = toy_data(256)
        model = compile_classifier(tfl.prunable(mlp()))
        initial = [v.numpy().copy() for v in model_variables(model)]
        early_bird = tfl.EarlyBird(0.8, epsilon=0.5, window=2)
        history = model.fit(x, y, batch_size=32, epochs=10, verbose=0, callbacks=[early_bird])
        # Checks at the end of epochs 1, 2, 3: two distances below 0.5 after epoch 3.
        assert len(history.history["loss"]) == 3
        assert [s for s, _ in early_bird.distances] == [16, 24]
        assert "mask_distance" in history.history
        assert early_bird.found_step == 24
        ticket = early_bird.ticket
        total = sum(m.size for m in ticket.masks)
        assert total - sum(int(m.sum()) for m in ticket.masks) == exact_count(0.8, total)
        assert all(m.all() for m in _masks(model))  # the search never prunes
        for stored, value in zip(ticket.weights, initial):
            np.testing.assert_array_equal(stored, value)  # rewound to initialisation
        fresh = compile_classifier(tfl.prunable(mlp()))
        fresh(x[:1])
        ticket.apply(fresh)
        for variable, value in zip(model_variables(fresh), initial):
            current = variable.numpy()
            assert np.all((current == value) | (current == 0))
        assert pruned_weights_are_zero(fresh)
        fresh.fit(x, y, batch_size=32, epochs=1, verbose=0)
        assert pruned_weights_are_zero(fresh)

    def test_checks_every_k_steps_and_a_tiny_epsilon_never_stops(self):
        x, y = toy_data(256)
        model = compile_classifier(tfl.prunable(mlp()))
        early_bird = tfl.EarlyBird(0.5, epsilon=1e-9, window=3, every=5, rewind_to="2ep")
        history = model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[early_bird])
        assert len(history.history["loss"]) == 2
        assert [s for s, _ in early_bird.distances] == [10, 15]  # first check at step 5
        assert early_bird.ticket is None and early_bird.found_step is None
        assert early_bird.snapshot.step == 16

    def test_checks_at_the_last_step_of_a_fit_that_ends_on_a_check_step(self):
        # 8 steps an epoch, a check every 8: at step 8 (the first mask) and at step 16, the
        # fit's last step, which no batch follows (checked when the epoch ends).
        x, y = toy_data(256)
        model = compile_classifier(tfl.prunable(mlp()))
        early_bird = tfl.EarlyBird(0.5, epsilon=1e-9, window=3, every=8)
        model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[early_bird])
        assert [s for s, _ in early_bird.distances] == [16]

    def test_a_search_split_by_get_state_and_set_state_continues_as_one(self):
        x, y = toy_data(256)

        def fresh():
            keras.utils.set_random_seed(0)
            return compile_classifier(tfl.prunable(mlp()))

        whole = tfl.EarlyBird(0.5, epsilon=1e-9, window=3, every=4)
        fresh().fit(x, y, batch_size=32, epochs=2, verbose=0, shuffle=False, callbacks=[whole])
        model = fresh()
        first = tfl.EarlyBird(0.5, epsilon=1e-9, window=3, every=4)
        model.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False, callbacks=[first])
        state = first.get_state()
        assert state["step"] == 8 and state["last_check"] == 8

        class Resume(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                second.set_state(state)

        second = tfl.EarlyBird(0.5, epsilon=1e-9, window=3, every=4)
        model.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False, callbacks=[second, Resume()])
        assert [s for s, _ in second.distances] == [s for s, _ in whole.distances] == [8, 12, 16]
        np.testing.assert_allclose(
            [d for _, d in second.distances], [d for _, d in whole.distances], rtol=0, atol=0.01
        )

    def test_config_round_trip(self):
        callback = tfl.EarlyBird(
            0.9, epsilon=0.05, window=3, every=50, granularity="channel", rewind_to="1ep"
        )
        clone = tfl.EarlyBird.from_config(callback.get_config())
        assert clone.get_config() == callback.get_config()

    @pytest.mark.parametrize(
        "kwargs, message",
        [
            (
                dict(target_sparsity=1.0),
                r"`target_sparsity`: expected a float in \[0, 1\)\. Received: target_sparsity=1\.0",
            ),
            (dict(target_sparsity=0.9, epsilon=0), r"`epsilon`: expected a float > 0\. Received: epsilon=0"),
            (dict(target_sparsity=0.9, epsilon=-0.1), r"`epsilon`: expected a float > 0"),
            (dict(target_sparsity=0.9, window=0), r"`window`: expected an int >= 1\. Received: window=0"),
            (dict(target_sparsity=0.9, every="batch"), r"`every`: expected 'epoch' or an int >= 1"),
            (
                dict(target_sparsity=0.9, granularity="filter"),
                r"`granularity`: expected one of \('unstructured', 'channel'\)",
            ),
            (dict(target_sparsity=0.9, rewind_to="5x"), r"`rewind_to`: expected '<N>it'"),
        ],
    )
    def test_bad_arguments(self, kwargs, message):
        with pytest.raises(ValueError, match=message):
            tfl.EarlyBird(**kwargs)
