"""A Dense or EinsumDense kernel seen as an `(inputs, outputs)` matrix.

Wanda and SparseGPT reason about a linear layer `y = x W` whose rows of `x`
are samples (tokens) and whose kernel is a matrix of `inputs x outputs`; in
the papers' PyTorch notation a *row* of the weight is one output unit, a
column of the Keras kernel here. `LinearView` maps a kernel of any rank to
that matrix and back, and a layer input to its `(samples, inputs)` matrix.

Supported layers:

- `Dense`: kernel `(inputs, units)`, applied on the last axis of the input.
- `EinsumDense` whose equation `"<input>,<kernel>-><output>"` has every
  kernel letter either contracted (in the input, not in the output) or kept
  (in the output, not in the input), and every other input letter kept in the
  output (a batch or sequence axis); a leading `...` in the input and output
  is allowed. keras_hub's attention projections (`"abc,cde->abde"`,
  `"abcd,cde->abe"`) and feed-forward layers are of this kind. The inputs are
  the contracted axes flattened in the kernel's order (heads then head
  dimension for an attention output), so N:M groups run along that order.

Other equations (a kernel letter shared by input and output, as in a
per-head weight `"abc,bcd->abd"`, or one summed out of the kernel alone) are
refused by name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
import numpy as np


@dataclass(frozen=True)
class LinearView:
    """How a kernel and the layer's input map to `(inputs, outputs)` matrices."""

    kernel_shape: tuple
    kernel_order: tuple  # kernel axes: contracted ones first, then kept ones
    input_axes: tuple  # input axes contracted, in the kernel's order; negative (from the end)
    inputs: int
    outputs: int

    def to_matrix(self, kernel: np.ndarray) -> np.ndarray:
        return np.transpose(np.asarray(kernel), self.kernel_order).reshape(self.inputs, self.outputs)

    def from_matrix(self, matrix: np.ndarray) -> np.ndarray:
        permuted = tuple(self.kernel_shape[a] for a in self.kernel_order)
        return np.transpose(np.asarray(matrix).reshape(permuted), np.argsort(self.kernel_order))

    def input_matrix(self, x, dtype=np.float64) -> np.ndarray:
        """The layer input `x` as `(samples, inputs)`, in `dtype` (None: as it is)."""
        x = np.asarray(x, dtype=dtype)
        rank = x.ndim
        contracted = [rank + a for a in self.input_axes]
        rest = [a for a in range(rank) if a not in contracted]
        return np.transpose(x, rest + contracted).reshape(-1, self.inputs)


def _einsum_view(layer: keras.layers.EinsumDense, kernel_shape: tuple) -> LinearView:
    equation = layer.equation.replace(" ", "")
    refused = ValueError(
        f"Layer '{layer.name}' (EinsumDense, equation {layer.equation!r}) cannot be seen as a "
        "linear map from its input features to its outputs: every kernel axis must be either "
        "contracted with the input or kept in the output, and every other input axis kept in "
        "the output (supported: e.g. 'abc,cd->abd', 'abc,cde->abde', 'abcd,cde->abe', "
        "'...b,bc->...c'). Leave it dense: `tfl.prunable(model, exclude=["
        f"{layer.name!r}])`, or use `tfl.oneshot.magnitude`."
    )
    try:
        inputs, rest = equation.split(",")
        kernel, output = rest.split("->")
    except ValueError:
        raise refused from None
    ellipsis = inputs.startswith("...")
    inputs = inputs.removeprefix("...")
    output = output.removeprefix("...")
    if "." in inputs + kernel + output or len(kernel) != len(kernel_shape):
        raise refused
    contracted = [c for c in kernel if c in inputs and c not in output]
    kept = [c for c in kernel if c in output and c not in inputs]
    batch_ok = all(c in output for c in inputs if c not in kernel)
    if len(contracted) + len(kept) != len(kernel) or not contracted or not batch_ok:
        raise refused
    del ellipsis  # input axes are counted from the end, so a leading `...` needs nothing more
    order = tuple(kernel.index(c) for c in contracted + kept)
    input_axes = tuple(inputs.index(c) - len(inputs) for c in contracted)
    n_in = math.prod(kernel_shape[kernel.index(c)] for c in contracted)
    n_out = math.prod(kernel_shape[kernel.index(c)] for c in kept)
    return LinearView(tuple(kernel_shape), order, input_axes, n_in, n_out)


def linear_view(layer: keras.layers.Layer, weight) -> LinearView | None:
    """The view of `weight` if it is the kernel of a supported Dense/EinsumDense `layer`, else None.

    Raises a ValueError naming the layer for an EinsumDense equation that is not supported.
    """
    shape = tuple(int(d) for d in weight.shape)
    if isinstance(layer, keras.layers.Dense) and weight is layer.kernel and len(shape) == 2:
        return LinearView(shape, (0, 1), (-1,), shape[0], shape[1])
    if isinstance(layer, keras.layers.EinsumDense) and weight is layer.kernel:
        return _einsum_view(layer, shape)
    return None
