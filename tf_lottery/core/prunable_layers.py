"""Which weights of which layers are pruned, and how custom layers opt in.

Built-in Keras layers are prunable through a table that maps a layer class to
the names of the weights that hold its connections: kernels, depthwise and
pointwise kernels, embedding tables and the four projections inside
`MultiHeadAttention`. Biases, normalization parameters and other vectors are
never pruned by default, following Frankle & Carbin (2019, arXiv:1803.03635).

A custom layer opts in by defining a method `get_prunable_weights()` that
returns the list of its variables to mask, the same protocol that
tensorflow-model-optimization uses:

```python
class LowRankDense(keras.layers.Layer):
    def build(self, input_shape):
        self.u = self.add_weight(shape=(input_shape[-1], 8))
        self.v = self.add_weight(shape=(8, 16))

    def call(self, x):
        return x @ self.u @ self.v

    def get_prunable_weights(self):
        return [self.u, self.v]
```
"""

from __future__ import annotations

from collections.abc import Callable

import keras

_CONV_TYPES = (
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
)


def _attention_kernels(layer: keras.layers.MultiHeadAttention) -> list:
    return [
        layer.query_dense.kernel,
        layer.key_dense.kernel,
        layer.value_dense.kernel,
        layer.output_dense.kernel,
    ]


# Checked in order, so subclasses listed first win (DepthwiseConv2D is not a
# Conv2D subclass in Keras 3, but the order keeps that safe if it changes).
_BUILTIN_PRUNABLE: list[tuple[type, Callable[[keras.layers.Layer], list]]] = [
    (keras.layers.MultiHeadAttention, _attention_kernels),
    (keras.layers.SeparableConv1D, lambda layer: [layer.depthwise_kernel, layer.pointwise_kernel]),
    (keras.layers.SeparableConv2D, lambda layer: [layer.depthwise_kernel, layer.pointwise_kernel]),
    (keras.layers.DepthwiseConv1D, lambda layer: [layer.kernel]),
    (keras.layers.DepthwiseConv2D, lambda layer: [layer.kernel]),
    (keras.layers.Dense, lambda layer: [layer.kernel]),
    (keras.layers.EinsumDense, lambda layer: [layer.kernel]),
    (keras.layers.Embedding, lambda layer: [layer.embeddings]),
    (_CONV_TYPES, lambda layer: [layer.kernel]),
]


def is_prunable_layer(layer: keras.layers.Layer) -> bool:
    """Whether tf_lottery knows how to prune `layer` (built in or opted in)."""
    if callable(getattr(layer, "get_prunable_weights", None)):
        return True
    return any(isinstance(layer, types) for types, _ in _BUILTIN_PRUNABLE)


def prunable_weights(layer: keras.layers.Layer) -> list:
    """Returns the variables of a built `layer` that pruning masks.

    Args:
        layer: A built Keras layer for which `is_prunable_layer` is true.

    Returns:
        The list of Keras variables to mask, in a fixed order.

    Raises:
        ValueError: if the layer is not prunable or not built.
    """
    if not layer.built:
        raise ValueError(
            f"Layer '{layer.name}' must be built before its prunable weights "
            "can be listed. Call the layer (or the model) on an input first."
        )
    custom = getattr(layer, "get_prunable_weights", None)
    if callable(custom):
        weights = list(custom())
    else:
        for types, getter in _BUILTIN_PRUNABLE:
            if isinstance(layer, types):
                weights = getter(layer)
                break
        else:
            raise ValueError(
                f"Layer '{layer.name}' of type {type(layer).__name__} is not "
                "prunable. Built-in prunable types are Dense, EinsumDense, "
                "Conv*, Conv*Transpose, DepthwiseConv*, SeparableConv*, "
                "Embedding and MultiHeadAttention; a custom layer opts in by "
                "defining `get_prunable_weights()`."
            )
    for w in weights:
        if not isinstance(w, keras.Variable):
            raise ValueError(
                f"`get_prunable_weights()` of layer '{layer.name}' must return "
                f"Keras variables. Received an element of type {type(w).__name__}."
            )
    return weights
