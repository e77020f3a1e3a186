"""Pruned weights stay exactly zero through training, in every set-up."""

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

OPTIMIZERS = {
    "sgd_momentum": lambda: keras.optimizers.SGD(0.1, momentum=0.9),
    "adam": lambda: keras.optimizers.Adam(1e-2),
    "adamw": lambda: keras.optimizers.AdamW(1e-2, weight_decay=0.1),
}


def _pruned_model(optimizer, **compile_kwargs):
    model = tfl.prunable(mlp(input_dim=20, hidden=(32,), classes=4))
    tfl.prune(model, target_sparsity=0.6)
    compile_classifier(model, optimizer, **compile_kwargs)
    return model


class TestMaskedTraining(TestCase):
    @pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
    @pytest.mark.parametrize(
        "jit_compile, steps_per_execution", [(False, 1), (True, 1), (False, 4), (True, 4)]
    )
    def test_pruned_weights_stay_zero(self, optimizer, jit_compile, steps_per_execution):
        model = _pruned_model(
            OPTIMIZERS[optimizer](), jit_compile=jit_compile, steps_per_execution=steps_per_execution
        )
        assert model.jit_compile is jit_compile  # Keras falls back silently when XLA is unavailable
        masks_before = [m for wr in tfl.prune_wrappers(model) for m in wr.get_masks()]
        kept_before = [
            w.numpy()[m]
            for wr in tfl.prune_wrappers(model)
            for w, m in zip(wr.pruned_weights, wr.get_masks())
        ]
        x, y = toy_data(128, 20, 4)
        model.fit(x, y, batch_size=16, epochs=2, verbose=0)
        assert pruned_weights_are_zero(model)
        masks_after = [m for wr in tfl.prune_wrappers(model) for m in wr.get_masks()]
        for before, after in zip(masks_before, masks_after):
            np.testing.assert_array_equal(before, after)
        kept_after = [
            w.numpy()[m]
            for wr in tfl.prune_wrappers(model)
            for w, m in zip(wr.pruned_weights, wr.get_masks())
        ]
        # Surviving weights did train.
        assert any(not np.allclose(a, b) for a, b in zip(kept_before, kept_after))

    def test_optimizer_slots_do_not_leak_into_pruned_weights(self):
        # Momentum built up while dense keeps pushing the pruned positions;
        # the mask must still hold them at zero afterwards.
        model = tfl.prunable(mlp(input_dim=20, hidden=(32,), classes=4))
        compile_classifier(model, keras.optimizers.SGD(0.1, momentum=0.99))
        x, y = toy_data(128, 20, 4)
        model.fit(x, y, batch_size=16, epochs=1, verbose=0)
        tfl.prune(model, rate=0.5)
        model.fit(x, y, batch_size=16, epochs=1, verbose=0)
        assert pruned_weights_are_zero(model)

    def test_mixed_precision(self):
        keras.mixed_precision.set_global_policy("mixed_float16")
        try:
            model = _pruned_model(keras.optimizers.Adam(1e-2))
            assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
            x, y = toy_data(64, 20, 4)
            model.fit(x, y, batch_size=16, epochs=1, verbose=0)
            assert pruned_weights_are_zero(model)
            assert tfl.prune_wrappers(model)[0].layer.kernel.dtype == "float32"
        finally:
            keras.mixed_precision.set_global_policy("float32")

    def test_mirrored_strategy_two_replicas_stay_identical(self):
        strategy = two_replica_strategy()
        assert strategy.num_replicas_in_sync == 2
        with strategy.scope():
            model = _pruned_model(keras.optimizers.SGD(0.1, momentum=0.9))
        x, y = toy_data(128, 20, 4)
        model.fit(x, y, batch_size=32, epochs=2, verbose=0)
        assert pruned_weights_are_zero(model)
        for wrapper in tfl.prune_wrappers(model):
            mask = wrapper.get_masks()[0]
            replicas = [np.asarray(v) for v in wrapper.layer.kernel.value.values]
            assert len(replicas) == 2
            np.testing.assert_array_equal(replicas[0], replicas[1])
            np.testing.assert_array_equal(replicas[1][~mask], 0.0)
            mask_replicas = [np.asarray(v) for v in wrapper.masks[0].value.values]
            np.testing.assert_array_equal(mask_replicas[0], mask_replicas[1])

    def test_wrapping_inside_strategy_scope_then_pruning(self):
        strategy = two_replica_strategy()
        with strategy.scope():
            model = tfl.prunable(mlp(input_dim=20, hidden=(16,), classes=4))
            compile_classifier(model, keras.optimizers.Adam(1e-2))
        x, y = toy_data(64, 20, 4)
        model.fit(x, y, batch_size=16, epochs=1, verbose=0)
        tfl.prune(model, rate=0.5)
        model.fit(x, y, batch_size=16, epochs=1, verbose=0)
        assert pruned_weights_are_zero(model)
        report = tfl.sparsity_report(model)
        assert report.alive == report.total - round(0.5 * report.total)


class TestMaskedTrainingLayerTypes(TestCase):
    def test_embedding_and_attention_train_with_masks(self):
        tokens = keras.Input((6,), dtype="int32")
        x = keras.layers.Embedding(50, 16)(tokens)
        x = keras.layers.MultiHeadAttention(num_heads=2, key_dim=8)(x, x)
        x = keras.layers.GlobalAveragePooling1D()(x)
        outputs = keras.layers.Dense(3, name="output")(x)
        model = tfl.prunable(keras.Model(tokens, outputs))
        assert [len(w.masks) for w in tfl.prune_wrappers(model)] == [1, 4, 1]
        tfl.prune(model, target_sparsity=0.7)
        compile_classifier(model, keras.optimizers.Adam(1e-2))
        rng = np.random.default_rng(0)
        x_data = rng.integers(0, 50, size=(96, 6)).astype("int32")
        y_data = (x_data[:, 0] % 3).astype("int64")
        history = model.fit(x_data, y_data, batch_size=16, epochs=3, verbose=0)
        assert history.history["loss"][-1] < history.history["loss"][0]
        assert pruned_weights_are_zero(model)
