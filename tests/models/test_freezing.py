"""open_lth's `output_frozen` and `batchnorm_frozen` (tf_lottery.models.freezing)."""

import keras
import numpy as np
import pytest

import tf_lottery as tfl
from tf_lottery.models import build_model
from tf_lottery.models.freezing import freeze
from tf_lottery.models.initializers import layers


def _fit(model, x, y, epochs=2):
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x, y, batch_size=16, epochs=epochs, verbose=0)


def _layer(model, name):
    return next(layer for layer in layers(model) if layer.name == name)


def test_a_frozen_pruned_output_layer_is_bit_identical_after_training():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 20)).astype("float32"), rng.integers(0, 4, 64)
    model = tfl.prunable(build_model("mlp", (20,), 4, hidden=(16,)))
    tfl.prune(model, target_sparsity=0.5)
    freeze(model, output=True)
    output = _layer(model, "output")
    before = [np.asarray(v).copy() for v in output.weights]
    hidden = np.asarray(_layer(model, "fc1").kernel).copy()
    _fit(model, x, y)
    for variable, value in zip(output.weights, before):
        np.testing.assert_array_equal(np.asarray(variable), value)
    assert not np.array_equal(np.asarray(_layer(model, "fc1").kernel), hidden)
    kernel = np.asarray(output.kernel)
    assert 0 < np.count_nonzero(kernel) < kernel.size  # still pruned


def test_frozen_batchnorm_keeps_gamma_and_beta_but_normalises_with_batch_statistics():
    rng = np.random.default_rng(0)
    x, y = rng.normal(2.0, 1.0, size=(32, 8, 8, 3)).astype("float32"), rng.integers(0, 10, 32)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(4, 3, name="stem_conv"),
            keras.layers.BatchNormalization(name="bn1"),
            keras.layers.Flatten(),
            keras.layers.Dense(8, name="fc1"),
            keras.layers.BatchNormalization(name="bn2"),
            keras.layers.Dense(10, name="output"),
        ]
    )
    freeze(model, batchnorm=True)
    norms = [layer for layer in layers(model) if isinstance(layer, keras.layers.BatchNormalization)]
    gammas = [np.asarray(layer.gamma).copy() for layer in norms]
    means = [np.asarray(layer.moving_mean).copy() for layer in norms]
    conv = np.asarray(_layer(model, "stem_conv").kernel).copy()
    _fit(model, x, y, epochs=1)
    for layer, gamma in zip(norms, gammas):
        np.testing.assert_array_equal(np.asarray(layer.gamma), gamma)
        np.testing.assert_array_equal(np.asarray(layer.beta), 0.0)
        assert layer.trainable  # training mode: batch statistics, moving averages updated
    assert not np.array_equal(np.asarray(norms[0].moving_mean), means[0])
    assert not np.array_equal(np.asarray(_layer(model, "stem_conv").kernel), conv)


def test_a_model_without_an_output_layer_is_refused():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(inputs))
    with pytest.raises(ValueError, match=r"`config.model.output_frozen`: model .* no layer named 'output'"):
        freeze(model, output=True)
    assert all(v.trainable for v in model.weights)


def test_a_model_without_batchnorm_is_warned_about():
    with pytest.warns(UserWarning, match=r"batchnorm_frozen=True` freezes nothing"):
        freeze(build_model("mlp", (4,), 2), batchnorm=True)
