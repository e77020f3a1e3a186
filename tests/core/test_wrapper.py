"""PruneWrapper: masks, saving, loading, the layer types it covers."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_lottery as tfl
from tests.testing import TestCase, pruned_weights_are_zero


def _random_masks(wrapper, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.random(tuple(m.shape)) > 0.5 for m in wrapper.masks]


class TestPruneWrapper(TestCase):
    def test_masks_start_dense_and_follow_the_weights(self):
        wrapper = tfl.PruneWrapper(keras.layers.Dense(4))
        model = keras.Sequential([keras.Input((8,)), wrapper])
        assert [tuple(m.shape) for m in wrapper.masks] == [(8, 4)]
        assert wrapper.get_masks()[0].all()
        assert wrapper.masks[0].dtype == "bool"
        assert not wrapper.masks[0].trainable
        assert wrapper.pruned_weights[0] is wrapper.layer.kernel
        assert len(model.trainable_weights) == 2  # kernel and bias only

    def test_set_masks_zeroes_pruned_weights_exactly(self):
        wrapper = tfl.PruneWrapper(keras.layers.Dense(6))
        model = keras.Sequential([keras.Input((5,)), wrapper])
        mask = _random_masks(wrapper)[0]
        kept = wrapper.layer.kernel.numpy()[mask]
        wrapper.set_masks([mask])
        kernel = wrapper.layer.kernel.numpy()
        np.testing.assert_array_equal(kernel[~mask], 0.0)
        assert not np.signbit(kernel[~mask]).any()  # +0.0, not -0.0
        np.testing.assert_array_equal(kernel[mask], kept)
        assert pruned_weights_are_zero(model)

    @pytest.mark.parametrize("path", ["set_weights", "load_weights", "assign"])
    def test_every_write_path_keeps_pruned_weights_zero(self, path, tmp_path):
        wrapper = tfl.PruneWrapper(keras.layers.Dense(6))
        model = keras.Sequential([keras.Input((5,)), wrapper])
        mask = _random_masks(wrapper)[0]
        wrapper.set_masks([mask])
        dense = [np.ones(w.shape, w.dtype) if w.dtype != bool else np.asarray(w) for w in model.get_weights()]
        if path == "set_weights":
            model.set_weights(dense)
        elif path == "assign":
            wrapper.layer.kernel.assign(np.ones((5, 6), "float32"))
        else:
            other = keras.Sequential([keras.Input((5,)), tfl.PruneWrapper(keras.layers.Dense(6))])
            other.set_weights(
                [np.ones((5, 6), bool), np.full((5, 6), 3.0, "float32"), np.zeros(6, "float32")]
            )
            file = str(tmp_path / "dense.weights.h5")
            other.save_weights(file)
            # The file's masks are all ones: loading them replaces ours, so
            # re-apply ours to check the kernel path through load_weights.
            model.load_weights(file)
            assert wrapper.get_masks()[0].all()
            wrapper.set_masks([mask])
        kernel = wrapper.layer.kernel.numpy()
        np.testing.assert_array_equal(kernel[~mask], 0.0)
        assert np.all(kernel[mask] != 0.0)

    def test_load_weights_restores_masks_and_zeros(self, tmp_path):
        wrapper = tfl.PruneWrapper(keras.layers.Dense(6))
        model = keras.Sequential([keras.Input((5,)), wrapper])
        mask = _random_masks(wrapper)[0]
        wrapper.set_masks([mask])
        file = str(tmp_path / "m.weights.h5")
        model.save_weights(file)
        fresh_wrapper = tfl.PruneWrapper(keras.layers.Dense(6))
        fresh = keras.Sequential([keras.Input((5,)), fresh_wrapper])
        fresh.load_weights(file)
        np.testing.assert_array_equal(fresh_wrapper.get_masks()[0], mask)
        np.testing.assert_array_equal(fresh_wrapper.layer.kernel.numpy(), wrapper.layer.kernel.numpy())

    def test_keras_file_round_trip_keeps_masks_and_outputs(self, tmp_path):
        model = tfl.prunable(
            keras.Sequential(
                [keras.Input((5,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3)]
            )
        )
        for i, wrapper in enumerate(tfl.prune_wrappers(model)):
            wrapper.set_masks(_random_masks(wrapper, seed=i))
        path = str(tmp_path / "model.keras")
        model.save(path)
        loaded = keras.models.load_model(path)  # safe_mode=True by default
        x = np.random.default_rng(0).normal(size=(4, 5)).astype("float32")
        np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)
        for a, b in zip(tfl.prune_wrappers(model), tfl.prune_wrappers(loaded)):
            np.testing.assert_array_equal(a.get_masks()[0], b.get_masks()[0])
        assert pruned_weights_are_zero(loaded)
        # The loaded masks are bound: a later write still honours them.
        first = tfl.prune_wrappers(loaded)[0]
        first.layer.kernel.assign(np.ones((5, 8), "float32"))
        assert pruned_weights_are_zero(loaded)

    def test_tf_checkpoint_round_trip(self, tmp_path):
        wrapper = tfl.PruneWrapper(keras.layers.Dense(6))
        model = keras.Sequential([keras.Input((5,)), wrapper])
        mask = _random_masks(wrapper)[0]
        wrapper.set_masks([mask])
        prefix = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))
        wrapper.set_masks([np.ones((5, 6), bool)])
        tf.train.Checkpoint(model=model).read(prefix).assert_consumed()
        np.testing.assert_array_equal(wrapper.get_masks()[0], mask)
        np.testing.assert_array_equal(wrapper.layer.kernel.numpy()[~mask], 0.0)

    def test_config_round_trip(self):
        wrapper = tfl.PruneWrapper(keras.layers.Dense(4, name="fc"), name="prune_fc")
        config = keras.saving.serialize_keras_object(wrapper)
        restored = keras.saving.deserialize_keras_object(config)
        assert isinstance(restored, tfl.PruneWrapper)
        assert restored.name == "prune_fc"
        assert restored.layer.get_config()["units"] == 4

    @pytest.mark.parametrize(
        "make_layer, call_input, expected_shapes",
        [
            (lambda: keras.layers.Dense(3), (2, 4), [(4, 3)]),
            (lambda: keras.layers.EinsumDense("ab,bc->ac", output_shape=3), (2, 4), [(4, 3)]),
            (lambda: keras.layers.Conv1D(3, 2), (2, 5, 4), [(2, 4, 3)]),
            (lambda: keras.layers.Conv2D(3, 2), (2, 5, 5, 4), [(2, 2, 4, 3)]),
            (lambda: keras.layers.Conv3D(3, 2), (2, 4, 4, 4, 2), [(2, 2, 2, 2, 3)]),
            (lambda: keras.layers.Conv1DTranspose(3, 2), (2, 5, 4), [(2, 3, 4)]),
            (lambda: keras.layers.Conv2DTranspose(3, 2), (2, 5, 5, 4), [(2, 2, 3, 4)]),
            (lambda: keras.layers.Conv3DTranspose(3, 2), (2, 4, 4, 4, 2), [(2, 2, 2, 3, 2)]),
            (lambda: keras.layers.DepthwiseConv2D(2), (2, 5, 5, 4), [(2, 2, 4, 1)]),
            (lambda: keras.layers.SeparableConv1D(3, 2), (2, 5, 4), [(2, 4, 1), (1, 4, 3)]),
            (lambda: keras.layers.SeparableConv2D(3, 2), (2, 5, 5, 4), [(2, 2, 4, 1), (1, 1, 4, 3)]),
        ],
    )
    def test_builtin_prunable_kernels(self, make_layer, call_input, expected_shapes):
        wrapper = tfl.PruneWrapper(make_layer())
        x = np.random.default_rng(0).normal(size=call_input).astype("float32")
        dense_out = wrapper(x)
        assert [tuple(w.shape) for w in wrapper.pruned_weights] == expected_shapes
        wrapper.set_masks([np.zeros(s, bool) for s in expected_shapes])
        for weight in wrapper.pruned_weights:
            assert not np.any(weight.numpy())
        assert dense_out.shape == wrapper(x).shape

    def test_embedding_and_attention_kernels(self):
        embedding = tfl.PruneWrapper(keras.layers.Embedding(20, 6))
        embedding(np.array([[1, 2, 3]]))
        assert [tuple(w.shape) for w in embedding.pruned_weights] == [(20, 6)]
        attention = tfl.PruneWrapper(keras.layers.MultiHeadAttention(num_heads=2, key_dim=4))
        q = np.zeros((1, 3, 8), "float32")
        attention(q, q)
        names = [w.path.split("/")[-2] for w in attention.pruned_weights]
        assert names == ["query", "key", "value", "attention_output"]
        assert len(attention.masks) == 4

    def test_biases_and_normalization_are_never_pruned(self):
        model = tfl.prunable(
            keras.Sequential(
                [
                    keras.Input((4,)),
                    keras.layers.Dense(5),
                    keras.layers.BatchNormalization(),
                    keras.layers.Dense(2),
                ]
            )
        )
        pruned = {id(w) for wr in tfl.prune_wrappers(model) for w in wr.pruned_weights}
        names = sorted(w.name for w in model.weights if id(w) in pruned)
        assert names == ["kernel", "kernel"]

    def test_custom_layer_opts_in_with_get_prunable_weights(self):
        class LowRank(keras.layers.Layer):
            def build(self, input_shape):
                self.u = self.add_weight(shape=(input_shape[-1], 3), name="u")
                self.v = self.add_weight(shape=(3, 5), name="v")
                self.scale = self.add_weight(shape=(5,), initializer="ones", name="scale")

            def call(self, x):
                return x @ self.u @ self.v * self.scale

            def get_prunable_weights(self):
                return [self.u, self.v]

        wrapper = tfl.PruneWrapper(LowRank())
        wrapper(np.ones((2, 4), "float32"))
        assert [w.name for w in wrapper.pruned_weights] == ["u", "v"]

    def test_rejects_unprunable_layer_with_a_clear_message(self):
        with pytest.raises(ValueError, match=r"Invalid value for argument `layer`: BatchNormalization"):
            tfl.PruneWrapper(keras.layers.BatchNormalization())
        with pytest.raises(ValueError, match="expected a Keras layer"):
            tfl.PruneWrapper("dense")
        with pytest.raises(ValueError, match="already a PruneWrapper"):
            tfl.PruneWrapper(tfl.PruneWrapper(keras.layers.Dense(2)))

    def test_set_masks_checks_count_and_shape(self):
        wrapper = tfl.PruneWrapper(keras.layers.Dense(3))
        wrapper(np.ones((1, 4), "float32"))
        with pytest.raises(ValueError, match=r"expected 1 arrays .* Received 2"):
            wrapper.set_masks([np.ones((4, 3), bool)] * 2)
        with pytest.raises(ValueError, match=r"needs shape \(4, 3\). Received shape \(3, 4\)"):
            wrapper.set_masks([np.ones((3, 4), bool)])
