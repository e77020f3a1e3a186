"""Which weights of which layers are pruned, and how custom layers opt in.

Built-in Keras layers are prunable through a table that maps a layer class to
the names of the weights that hold its connections: kernels, depthwise and
pointwise kernels, embedding tables, the four projections inside
`MultiHeadAttention`, and the input and recurrent kernels of the recurrent
layers (`LSTM`, `GRU`, `SimpleRNN`, `ConvLSTM1D/2D/3D`, and `RNN` over their
cells or a `StackedRNNCells` of them). Keras' own wrappers `TimeDistributed`
and `Bidirectional` are prunable when what they wrap is: one `PruneWrapper`
goes around the Keras wrapper and holds the masks of the layers inside it (both
directions of a `Bidirectional`), so their config and saving stay Keras' own. Biases, normalization parameters and other vectors are
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


_RECURRENT_TYPES = (
    keras.layers.LSTM,
    keras.layers.GRU,
    keras.layers.SimpleRNN,
    keras.layers.ConvLSTM1D,
    keras.layers.ConvLSTM2D,
    keras.layers.ConvLSTM3D,
)
_CELL_TYPES = (keras.layers.LSTMCell, keras.layers.GRUCell, keras.layers.SimpleRNNCell)


def _is_known_cell(cell) -> bool:
    if isinstance(cell, keras.layers.StackedRNNCells):
        return bool(cell.cells) and all(_is_known_cell(c) for c in cell.cells)
    if callable(getattr(cell, "get_prunable_weights", None)):
        return True
    # ConvLSTM's cell class has no public name; it is the only cell that
    # ConvLSTM1D/2D/3D build.
    return isinstance(cell, _CELL_TYPES) or type(cell).__name__ == "ConvLSTMCell"


def _cell_kernels(cell) -> list:
    """The input and recurrent kernels of an RNN cell (each cell of a stack)."""
    if isinstance(cell, keras.layers.StackedRNNCells):
        return [w for c in cell.cells for w in _cell_kernels(c)]
    custom = getattr(cell, "get_prunable_weights", None)
    if callable(custom):
        return list(custom())
    return [cell.kernel, cell.recurrent_kernel]


def _is_prunable_rnn(layer) -> bool:
    return isinstance(layer, _RECURRENT_TYPES) or (
        isinstance(layer, keras.layers.RNN) and _is_known_cell(layer.cell)
    )


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


def _inner_layers(layer) -> list | None:
    """The layers a Keras wrapper runs (`TimeDistributed`, `Bidirectional`), else None."""
    if isinstance(layer, keras.layers.Bidirectional):
        return [layer.forward_layer, layer.backward_layer]
    if isinstance(layer, keras.layers.TimeDistributed):
        return [layer.layer]
    return None


def is_prunable_layer(layer: keras.layers.Layer) -> bool:
    """Whether tf_lottery knows how to prune `layer` (built in or opted in)."""
    if callable(getattr(layer, "get_prunable_weights", None)):
        return True
    inner = _inner_layers(layer)
    if inner is not None:
        return all(is_prunable_layer(i) for i in inner)
    if isinstance(layer, keras.layers.RNN):
        return _is_prunable_rnn(layer)
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
    inner = _inner_layers(layer)
    if callable(custom):
        weights = list(custom())
    elif inner is not None and is_prunable_layer(layer):
        weights = [w for i in inner for w in prunable_weights(i)]
    elif isinstance(layer, keras.layers.RNN) and _is_prunable_rnn(layer):
        weights = _cell_kernels(layer.cell)
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
                "Embedding, MultiHeadAttention, LSTM, GRU, SimpleRNN, ConvLSTM* "
                "(and TimeDistributed / Bidirectional around them); a custom layer "
                "opts in by defining `get_prunable_weights()`."
            )
    for w in weights:
        if not isinstance(w, keras.Variable):
            raise ValueError(
                f"`get_prunable_weights()` of layer '{layer.name}' must return "
                f"Keras variables. Received an element of type {type(w).__name__}."
            )
    return weights
