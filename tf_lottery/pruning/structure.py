"""N:M structured sparsity: at most N non-zero weights in every M in a row.

A kernel is split into groups of `M` consecutive weights along its input
(reduction) dimension, one group per output unit and (for convolutions) per
kernel position; `N:M` sparsity keeps at most `N` weights alive in each group.
2:4 is what sparse tensor cores (NVIDIA Ampere and later) and some CPU
kernels run at up to twice the dense speed.

Which dimension is the reduction dimension:

- `Dense`: the kernel is `(inputs, units)`; groups run along `inputs`.
- `Conv1D/2D/3D`: `(*window, in_channels, filters)`; along `in_channels`
  (axis -2), as in NVIDIA's ASP.
- `Conv1D/2D/3DTranspose`: `(*window, filters, in_channels)`; along
  `in_channels` (axis -1).

Other layers (Embedding, depthwise and separable convolutions, EinsumDense,
MultiHeadAttention, custom layers) have no single reduction dimension here and
are refused, as is a kernel whose reduction dimension is not a multiple of
`M` (a first convolution over 1 or 3 input channels, say). The error names
the layer; leave such layers dense with `tfl.prunable(model, exclude=[...])`.

With `structure` and no amount, `tfl.prune` keeps the `N` highest-scored
weights of every group. With an amount (`rate` or `target_sparsity`, as
gradual pruning and IMP use), the lowest-scored weights are pruned subject to
no group losing more than `M - N`: the pattern holds exactly once the
sparsity reaches `1 - N/M`, and a larger amount is refused.

Reference:
    Mishra et al., "Accelerating Sparse Deep Neural Networks",
    arXiv:2104.08378 (2:4 on NVIDIA Ampere); Zhou et al., "Learning N:M
    Fine-grained Structured Sparse Neural Networks From Scratch", ICLR 2021,
    arXiv:2102.04010.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import keras
import numpy as np

from tf_lottery.core.walk import prune_wrappers
from tf_lottery.utils import validation

_CONV = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
_CONV_TRANSPOSE = (keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose, keras.layers.Conv3DTranspose)
_DENSE = (keras.layers.Dense,)


@dataclass(frozen=True)
class NMStructure:
    """At most `n` non-zero weights in every group of `m` consecutive ones."""

    n: int
    m: int

    @property
    def max_sparsity(self) -> float:
        """The sparsity at which every group holds exactly `n` weights."""
        return 1.0 - self.n / self.m

    def __str__(self) -> str:
        return f"{self.n}:{self.m}"


@dataclass(frozen=True)
class BlockStructure:
    """Whole `rows x cols` blocks of a kernel, zero or alive together (e.g. TFLite's 1x4).

    See `tf_lottery.pruning.blocks` for the layout (which kernel axis the
    block's rows and columns run along).
    """

    rows: int
    cols: int

    def __str__(self) -> str:
        return f"{self.rows}x{self.cols}"


@dataclass(frozen=True)
class UnitStructure:
    """Whole units: `"channels"` (output units and filters) or `"heads"` (attention heads).

    See `tf_lottery.core.units` for what a unit and its couplings are.
    """

    kind: str

    def __str__(self) -> str:
        return self.kind


Structure = NMStructure | BlockStructure | UnitStructure

_EXPECTED = (
    "None, 'N:M' with integers 1 <= N < M (at most N non-zero weights in every M "
    "consecutive ones, e.g. '2:4'), 'RxC' with integers R, C >= 1 (whole blocks, e.g. "
    "'1x4' for TFLite's block-sparse kernel), 'channels' (whole output units and "
    "filters) or 'heads' (whole attention heads)"
)


def parse(structure) -> Structure | None:
    """`None`, a structure object, or its string: `"N:M"`, `"RxC"`, `"channels"`, `"heads"`."""
    if structure is None or isinstance(structure, (NMStructure, BlockStructure, UnitStructure)):
        return structure
    if not isinstance(structure, str):
        raise validation.invalid_argument("structure", structure, _EXPECTED)
    text = structure.strip().lower()
    if text in ("channels", "heads"):
        return UnitStructure(text)
    match = re.fullmatch(r"(\d+)\s*:\s*(\d+)", text)
    if match is not None and 1 <= int(match.group(1)) < int(match.group(2)):
        return NMStructure(int(match.group(1)), int(match.group(2)))
    match = re.fullmatch(r"(\d+)\s*x\s*(\d+)", text)
    if match is not None and int(match.group(1)) >= 1 and int(match.group(2)) >= 1:
        if int(match.group(1)) * int(match.group(2)) > 1:
            return BlockStructure(int(match.group(1)), int(match.group(2)))
    raise validation.invalid_argument("structure", structure, _EXPECTED)


def parse_nm(structure) -> NMStructure | None:
    """Like `parse`, for the places that take only `None` or `"N:M"` so far."""
    parsed = parse(structure)
    if parsed is not None and not isinstance(parsed, NMStructure):
        raise validation.invalid_argument("structure", structure, "None or 'N:M' here (e.g. '2:4')")
    return parsed


def reduction_axis(layer: keras.layers.Layer, weight) -> int:
    """The axis of `weight` (a kernel of `layer`) that N:M groups run along.

    Raises a ValueError naming the layer for layer types without one.
    """
    if isinstance(layer, _CONV_TRANSPOSE):
        return len(weight.shape) - 1
    if isinstance(layer, _CONV + _DENSE) and len(weight.shape) >= 2:
        return len(weight.shape) - 2
    raise ValueError(
        f"Invalid value for argument `structure`: N:M sparsity is defined for Dense, "
        f"Conv and ConvTranspose kernels. Received layer '{layer.name}' of type "
        f"{type(layer).__name__} (weight '{weight.path}'). Leave it dense: "
        f"`tfl.prunable(model, exclude=[{layer.name!r}])`."
    )


def check_layers(wrappers, structure: NMStructure) -> list[int]:
    """The reduction axis of every pruned weight; errors name the first misfit."""
    axes = []
    for wrapper in wrappers:
        for weight in wrapper.pruned_weights:
            axis = reduction_axis(wrapper.layer, weight)
            size = int(weight.shape[axis])
            if size % structure.m:
                raise ValueError(
                    f"Invalid value for argument `structure`: '{structure}' needs the "
                    f"input dimension of every pruned kernel to be a multiple of "
                    f"{structure.m}. Received layer '{wrapper.layer.name}' with "
                    f"{size} inputs (weight '{weight.path}', shape {tuple(weight.shape)}). "
                    f"Leave it dense: `tfl.prunable(model, exclude=[{wrapper.layer.name!r}])`, "
                    "or choose an M that divides it."
                )
            axes.append(axis)
    return axes


def _groups(array: np.ndarray, m: int, axis: int) -> np.ndarray:
    """`array` as rows of `m` consecutive entries along `axis`."""
    return np.moveaxis(np.asarray(array), axis, -1).reshape(-1, m)


def _ungroup(groups: np.ndarray, shape: tuple, axis: int) -> np.ndarray:
    moved = np.moveaxis(np.empty(shape, dtype=bool), axis, -1).shape
    # C order: `pruner.select_lowest` writes through `reshape(-1)` views.
    return np.ascontiguousarray(np.moveaxis(groups.reshape(moved), -1, axis))


def prunable_entries(score, alive, structure: NMStructure, axis: int) -> np.ndarray:
    """Alive entries that may go while every group keeps at least `n` alive.

    In each group, the `alive - n` lowest-scored alive entries (ties: the
    first position first); the rest are protected.
    """
    alive = np.asarray(alive, dtype=bool)
    m = structure.m
    alive_rows = _groups(alive, m, axis)
    scores = np.where(alive_rows, _groups(score, m, axis).astype(np.float64), np.inf)
    order = np.argsort(scores, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.broadcast_to(np.arange(m), order.shape), axis=1)
    allowed = alive_rows.sum(axis=1, keepdims=True) - structure.n
    return _ungroup(alive_rows & (ranks < allowed), alive.shape, axis)


def violations(array, structure, axis: int) -> int:
    """How many groups of `array` hold more than `n` non-zero entries."""
    structure = parse(structure)
    nonzero = _groups(np.asarray(array) != 0, structure.m, axis).sum(axis=1)
    return int(np.count_nonzero(nonzero > structure.n))


def model_violations(model, structure) -> dict[str, int]:
    """Groups breaking the pattern in each pruned kernel of `model`, by weight path.

    Reads the weight values (not the masks), so it checks what a saved or
    reloaded model holds. Every pruned weight is listed, with `0` when it
    satisfies the pattern.
    """
    structure = parse(structure)
    result = {}
    for wrapper in prune_wrappers(model):
        for weight in wrapper.pruned_weights:
            axis = reduction_axis(wrapper.layer, weight)
            value = keras.ops.convert_to_numpy(weight.value)
            result[weight.path] = violations(value, structure, axis)
    return result
