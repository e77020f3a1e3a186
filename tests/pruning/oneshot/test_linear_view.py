"""Dense and EinsumDense kernels as (inputs, outputs) matrices."""

import keras
import numpy as np
import pytest

from tests.testing import TestCase
from tf_lottery.pruning.oneshot.linear_view import linear_view


class TestLinearView(TestCase):
    @pytest.mark.parametrize(
        "equation, output_shape, input_shape, bias",
        [
            ("abc,cde->abde", (5, 2, 3), (4, 5, 6), None),  # attention query/key/value
            ("abcd,cde->abe", (5, 7), (4, 5, 2, 3), None),  # attention output
            ("abc,cd->abd", (5, 7), (4, 5, 6), "d"),
            ("...b,bc->...c", (7,), (4, 5, 6), None),
            ("ab,bc->ac", (7,), (4, 6), None),
        ],
    )
    def test_the_matrix_product_equals_the_layer(self, equation, output_shape, input_shape, bias):
        layer = keras.layers.EinsumDense(equation, output_shape=output_shape, bias_axes=bias)
        x = np.random.default_rng(0).normal(size=input_shape).astype("float32")
        y = keras.ops.convert_to_numpy(layer(x))
        view = linear_view(layer, layer.kernel)
        product = view.input_matrix(x) @ view.to_matrix(layer.kernel.numpy())
        if bias:
            product = product + layer.bias.numpy()
        np.testing.assert_allclose(product.reshape(y.shape), y, atol=1e-5)
        np.testing.assert_array_equal(
            view.from_matrix(view.to_matrix(layer.kernel.numpy())), layer.kernel.numpy()
        )

    def test_a_per_head_kernel_is_refused_by_name(self):
        layer = keras.layers.EinsumDense("abc,bcd->abd", output_shape=(5, 7), name="per_head")
        layer(np.zeros((2, 5, 6), "float32"))
        with pytest.raises(ValueError, match=r"Layer 'per_head' \(EinsumDense, equation 'abc,bcd->abd'\)"):
            linear_view(layer, layer.kernel)

    def test_dense_on_a_sequence(self):
        layer = keras.layers.Dense(3)
        x = np.random.default_rng(1).normal(size=(2, 4, 5)).astype("float32")
        y = keras.ops.convert_to_numpy(layer(x))
        view = linear_view(layer, layer.kernel)
        np.testing.assert_allclose(
            (view.input_matrix(x) @ layer.kernel.numpy() + layer.bias.numpy()).reshape(y.shape), y, atol=1e-5
        )
