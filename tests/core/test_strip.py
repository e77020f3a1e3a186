"""`strip` (and the export paths that strip) on functional graphs with raw ops:
`h + x` residuals, `keras.ops.relu`, the `NotEqual` of `Embedding(mask_zero=True)`,
keras.applications' ConvNeXt. `prunable` reuses such ops; `strip` crashed on them."""

import keras
import numpy as np
import pytest

import tf_lottery as tfl
from tests.testing import TestCase
from tf_lottery.core.walk import iter_layers
from tf_lottery.export.saved_model import export_saved_model, stripped_for_export


def _residual():
    inputs = keras.Input((8,))
    hidden = keras.layers.Dense(8, name="d1")(inputs)
    hidden = keras.layers.Dense(8, name="d2")(hidden + inputs)
    hidden = keras.ops.relu(hidden) * 2.0
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(hidden))
    x = np.random.default_rng(0).normal(size=(16, 8)).astype("float32")
    return model, x


def _masked_embedding():
    inputs = keras.Input((6,), dtype="int32")
    embedded = keras.layers.Embedding(20, 4, mask_zero=True, name="emb")(inputs)
    pooled = keras.layers.GlobalAveragePooling1D()(embedded)
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(pooled))
    x = np.random.default_rng(0).integers(1, 20, (16, 6)).astype("int32")
    x[:, 4:] = 0  # padding the mask hides
    return model, x


def _convnext():
    model = keras.applications.ConvNeXtTiny(weights=None, input_shape=(32, 32, 3), classes=3)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    return model, x


def _wrappers_left(model) -> int:
    return sum(isinstance(layer, tfl.PruneWrapper) for layer in iter_layers(model))


def _check_strip(factory, rate=0.5):
    model, x = factory()
    pruned = tfl.prunable(model)
    tfl.prune(pruned, rate=rate)
    expected = np.asarray(pruned(x))
    plain = tfl.strip(pruned)
    assert _wrappers_left(plain) == 0
    np.testing.assert_allclose(np.asarray(plain(x)), expected, rtol=1e-6, atol=1e-6)
    # The zeros survive: the stripped model's prunable weights are as sparse as the masks say.
    assert tfl.sparsity_report(plain).sparsity == pytest.approx(tfl.sparsity_report(pruned).sparsity)
    return pruned, plain, x, expected


class TestStripRawOpGraphs(TestCase):
    @pytest.mark.parametrize("factory", [_residual, _masked_embedding], ids=["residual_relu", "mask_zero"])
    def test_strip_keeps_the_outputs_and_leaves_no_wrapper(self, factory):
        pruned, _, x, expected = _check_strip(factory)
        plain = stripped_for_export(pruned)  # the path every export takes
        assert _wrappers_left(plain) == 0
        np.testing.assert_allclose(np.asarray(plain(x)), expected, rtol=1e-6, atol=1e-6)

    def test_saved_model_export_of_a_residual_graph(self, tmp_path):
        model, x = _residual()
        pruned = tfl.prunable(model)
        tfl.prune(pruned, rate=0.5)
        path = export_saved_model(pruned, str(tmp_path / "export"))
        import tensorflow as tf

        serve = tf.saved_model.load(path).signatures["serving_default"]
        (output,) = serve(tf.constant(x)).values()
        np.testing.assert_allclose(output.numpy(), np.asarray(pruned(x)), rtol=1e-5, atol=1e-6)

    @pytest.mark.slow  # ~20 s on 2 CPU cores: ConvNeXt is deep even at 32x32
    def test_convnext_tiny(self):
        _check_strip(_convnext)
