"""Block sparsity: whole `R x C` blocks of a kernel, alive or zero together.

`"RxC"` is written in TensorFlow Lite's orientation: a TFLite fully
connected weight is `(outputs, inputs)`, so a block spans `R` consecutive
output units and `C` consecutive inputs. TFLite's FULLY_CONNECTED has a
float kernel for `"1x4"` blocks (`FullyConnectedSparseWeight1x4` in
`lite/kernels/fully_connected.cc`): one output unit times 4 consecutive
inputs. On a Keras `Dense` kernel, which is `(inputs, units)`, that is 4
consecutive entries along axis 0 (the inputs) within one column (one
output unit).

How this was checked (TF 2.21, x86 with AVX, 1 thread): two
`Dense(2048 -> 2048)` layers at 90% sparsity in whole blocks, converted with
`tf.lite.Optimize.EXPERIMENTAL_SPARSITY`. With blocks of 4 consecutive
entries along Keras axis 0 the converter stored each weight sparse with
`block_map=[1]` (the TFLite inputs axis blocked, block size 4) and the model
ran in 0.45 ms against 6.8 ms dense; with the same blocks along axis 1 (4
consecutive output units) it stored an unblocked CSR tensor
(`block_map=[]`), which the runtime densifies at load: 7.6 ms.
`tfl.tflite_sparsity_report` reads the same fields from any `.tflite` file.

Which axes a block spans, per layer type (`in` = `C` entries, `out` = `R`):

- `Dense`: kernel `(inputs, units)`: `C` along axis 0, `R` along axis 1.
- `Conv1D/2D/3D`: `(*window, in_channels, filters)`: `C` along the input
  channels (axis -2), `R` along the filters (axis -1), separately at every
  window position, as N:M groups are (`tf_lottery.pruning.structure`).
  TFLite has no block-sparse convolution kernel: such blocks only help a
  runtime that has one.
- `Conv1D/2D/3DTranspose`: `(*window, filters, in_channels)`: `C` along
  axis -1, `R` along axis -2.

Other layers (Embedding, depthwise and separable convolutions, EinsumDense,
MultiHeadAttention, custom layers) are refused by name, as is a kernel whose
input or output dimension is not a multiple of the block; leave them dense
with `tfl.prunable(model, exclude=[...])` or pick a block that divides them.

A block is scored by the sum of the scorer's per-weight scores over its
alive entries: with `scorer="magnitude"` that is the block's L1 norm; with
`tfl.scoring.squared_magnitude` it is the squared L2 norm, which ranks blocks
as the L2 norm does. Counts are exact in blocks (a rate or target sparsity
is a fraction of the blocks, which is the same fraction of the weights, the
blocks being of equal size); a block is alive while any of its entries is;
ties go to the block that comes first (layer order, then the block's
row-major position with the window positions first).

Reference:
    Elsen et al., "Fast Sparse ConvNets", CVPR 2020, arXiv:1911.09723
    (block-sparse kernels of this kind in XNNPACK); TensorFlow Lite's
    `FullyConnectedSparseWeight1x4`.
"""

from __future__ import annotations

import keras
import numpy as np

from tf_lottery.pruning.structure import BlockStructure

_CONV = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
_CONV_TRANSPOSE = (keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose, keras.layers.Conv3DTranspose)
_SEPARATE = (
    keras.layers.DepthwiseConv1D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv1D,
    keras.layers.SeparableConv2D,
)


def block_axes(layer: keras.layers.Layer, weight) -> tuple[int, int]:
    """`(input_axis, output_axis)` of `weight`, a kernel of `layer`: the axes `C` and `R` run along.

    Raises a ValueError naming the layer for layer types without them.
    """
    rank = len(weight.shape)
    if isinstance(layer, _CONV_TRANSPOSE) and rank >= 3:
        return rank - 1, rank - 2
    if isinstance(layer, _CONV) and not isinstance(layer, _SEPARATE) and rank >= 3:
        return rank - 2, rank - 1
    if isinstance(layer, keras.layers.Dense) and rank == 2:
        return 0, 1
    raise ValueError(
        f"Invalid value for argument `structure`: block sparsity ('RxC') is defined for Dense, "
        f"Conv and ConvTranspose kernels. Received layer '{layer.name}' of type "
        f"{type(layer).__name__} (weight '{weight.path}', shape {tuple(weight.shape)}). Leave it "
        f"dense: `tfl.prunable(model, exclude=[{layer.name!r}])`."
    )


def check_layers(wrappers, block: BlockStructure) -> list[tuple[int, int]]:
    """The `(input_axis, output_axis)` of every pruned weight; errors name the first misfit."""
    axes = []
    for wrapper in wrappers:
        for weight in wrapper.pruned_weights:
            in_axis, out_axis = block_axes(wrapper.layer, weight)
            inputs, outputs = int(weight.shape[in_axis]), int(weight.shape[out_axis])
            if inputs % block.cols or outputs % block.rows:
                raise ValueError(
                    f"Invalid value for argument `structure`: '{block}' blocks span {block.rows} "
                    f"output(s) x {block.cols} input(s), so every pruned kernel needs a multiple of "
                    f"{block.rows} outputs and of {block.cols} inputs. Received layer "
                    f"'{wrapper.layer.name}' with {outputs} outputs and {inputs} inputs (weight "
                    f"'{weight.path}', shape {tuple(weight.shape)}). Leave it dense: "
                    f"`tfl.prunable(model, exclude=[{wrapper.layer.name!r}])`, or choose a block "
                    f"whose sizes divide it (e.g. '{_fitting(outputs, inputs, block)}')."
                )
            axes.append((in_axis, out_axis))
    return axes


def _fitting(outputs: int, inputs: int, block: BlockStructure) -> str:
    """The largest block no bigger than `block` that fits, powers of two first (what kernels use)."""

    def largest(size: int, limit: int) -> int:
        powers = [p for p in (1 << i for i in range(limit.bit_length())) if p <= limit and size % p == 0]
        exact = limit if size % limit == 0 else 0
        return exact or max(powers)

    return f"{largest(outputs, block.rows)}x{largest(inputs, block.cols)}"


def to_blocks(array, block: BlockStructure, axes: tuple[int, int]) -> np.ndarray:
    """`array` as `(n_blocks, R * C)`: one row per block, blocks in row-major order."""
    in_axis, out_axis = axes
    moved = np.moveaxis(np.asarray(array), (in_axis, out_axis), (-2, -1))
    *rest, inputs, outputs = moved.shape
    split = moved.reshape(*rest, inputs // block.cols, block.cols, outputs // block.rows, block.rows)
    n = len(rest)
    grouped = split.transpose(*range(n), n, n + 2, n + 1, n + 3)
    return grouped.reshape(-1, block.cols * block.rows)


def from_blocks(per_block, shape: tuple, block: BlockStructure, axes: tuple[int, int]) -> np.ndarray:
    """A boolean array of `shape` with every entry of block `i` set to `per_block[i]`."""
    in_axis, out_axis = axes
    moved = np.moveaxis(np.empty(shape, dtype=bool), (in_axis, out_axis), (-2, -1)).shape
    *rest, inputs, outputs = moved
    grid = np.asarray(per_block, dtype=bool).reshape(*rest, inputs // block.cols, 1, outputs // block.rows, 1)
    full = np.broadcast_to(grid, (*rest, inputs // block.cols, block.cols, outputs // block.rows, block.rows))
    # C order: `pruner.select_lowest` writes through `reshape(-1)` views.
    return np.ascontiguousarray(np.moveaxis(full.reshape(moved), (-2, -1), (in_axis, out_axis)))


def alive_blocks(alive, block: BlockStructure, axes: tuple[int, int]) -> np.ndarray:
    """Which blocks hold at least one alive entry, one boolean per block."""
    return to_blocks(np.asarray(alive, dtype=bool), block, axes).any(axis=1)


def block_scores(score, alive, block: BlockStructure, axes: tuple[int, int]) -> np.ndarray:
    """The sum of `score` over the alive entries of each block (float64)."""
    entries = to_blocks(np.asarray(score, dtype=np.float64), block, axes)
    return np.where(to_blocks(np.asarray(alive, dtype=bool), block, axes), entries, 0.0).sum(axis=1)


def violations(array, structure, axes: tuple[int, int]) -> int:
    """How many blocks of `array` are partly zero: neither all zero nor all non-zero."""
    nonzero = to_blocks(np.asarray(array) != 0, structure, axes).sum(axis=1)
    return int(np.count_nonzero((nonzero > 0) & (nonzero < structure.rows * structure.cols)))
