"""Structured units: whole output units, filters and attention heads, with their couplings.

A *unit* is something a serving runtime can drop as a whole: an output unit
of a `Dense`, a filter of a convolution, a head of an attention layer. A unit
is spread over several weights: the weights that compute it (its
*producers*: the unit's output column of a kernel, its depthwise channel, a
head's query/key/value slices) and the weights that read it (its
*consumers*: the next layer's input rows, an attention layer's output
projection for that head). Pruning a unit switches off the masks of all of
them, producers and consumers alike. Whatever the unit still computes
(a bias, a BatchNorm shift, an activation of zero) then reaches nothing, so
the masked model computes exactly what the model with the unit physically
removed computes (`tf_lottery.export.shrink`).

Units that must stay together form one `UnitGroup`: every branch that feeds a
residual `Add` and every layer that reads its sum share the channels of the
sum; the channels of a `Concatenate` map onto consecutive input rows of its
readers; a depthwise convolution passes its input channels through.

Two sources of groups:

- the model's graph (Sequential and functional models, traced layer by
  layer), and
- layers whose couplings live inside them (`MultiHeadAttention` heads, the
  feed-forward units of keras_hub transformer blocks), through providers
  registered with `register_internal_units`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

PRODUCER = "producer"
CONSUMER = "consumer"
KINDS = ("channels", "heads")


@dataclass(frozen=True)
class UnitSlice:
    """The entries of one pruned weight that belong to each unit of a group.

    Attributes:
        wrapper: The `PruneWrapper` holding the weight.
        index: Position of the weight in `wrapper.pruned_weights` (and of its
            mask in `wrapper.masks`).
        axis: The axis of the weight that the units index.
        positions: int array of shape `(units, per_unit)`: the indices along
            `axis` that belong to unit `u` are `positions[u]`. A plain slice
            is `np.arange(units)[:, None]`; the readers of a `Concatenate`'s
            second input are offset by the first input's width; a `Dense`
            after `Flatten` of `(h, w, c)` reads unit `u` at `u + c * k`.
        role: `PRODUCER` (the unit's own weights; they are scored) or
            `CONSUMER` (weights that read the unit; masked with it, not
            scored).
    """

    wrapper: object
    index: int
    axis: int
    positions: np.ndarray
    role: str


@dataclass
class UnitGroup:
    """Units pruned together: unit `u` of the group is entry `u` of every slice.

    Attributes:
        name: A readable name for errors and reports (e.g. the producer
            layers' names joined with `+`).
        kind: `"channels"` or `"heads"`.
        units: The number of units.
        slices: The `UnitSlice`s, producers first.
        gamma: The `BatchNormalization` scale that follows the producers
            (network slimming scores units by `|gamma|`), or `None`.
        layers: Names of every layer the group touches, wrapped or not
            (BatchNorm, depthwise, pooling), for errors and `shrink` reports.
        gammas: Every `BatchNormalization` scale right after the group's
            producers (one per branch of a residual add), as
            `(gamma variable, positions)` pairs with `positions` of shape
            `(units, per_unit)` as in `UnitSlice`; `gamma` is the first one's
            variable. Empty when none.
    """

    name: str
    kind: str
    units: int
    slices: list[UnitSlice]
    gamma: object = None
    layers: tuple[str, ...] = field(default_factory=tuple)
    gammas: tuple = ()

    def producers(self) -> list[UnitSlice]:
        return [s for s in self.slices if s.role == PRODUCER]

    def consumers(self) -> list[UnitSlice]:
        return [s for s in self.slices if s.role == CONSUMER]


# Layer class -> function(wrapper) -> list[UnitGroup] for the units that live inside it.
_INTERNAL_PROVIDERS: list[tuple[type, Callable]] = []


def register_internal_units(layer_class: type, provider: Callable) -> None:
    """Registers `provider(wrapper_or_layer) -> list[UnitGroup]` for instances of `layer_class`.

    For layers whose units are coupled inside the layer (a head's query, key,
    value and output slices; a transformer block's feed-forward units), which
    the model graph cannot see. Later registrations take precedence.
    """
    _INTERNAL_PROVIDERS.insert(0, (layer_class, provider))


def internal_provider(layer) -> Callable | None:
    """The registered provider for `layer` (a wrapped layer's inner layer is looked up), or `None`."""
    inner = getattr(layer, "layer", layer)
    for layer_class, provider in _INTERNAL_PROVIDERS:
        if isinstance(inner, layer_class) or isinstance(layer, layer_class):
            return provider
    return None


def unit_alive(group: UnitGroup, masks: dict) -> np.ndarray:
    """Boolean `(units,)`: a unit is alive while any producer entry of it is alive.

    Args:
        group: The `UnitGroup`.
        masks: `{(id(wrapper), index): bool array}` of the current masks.
    """
    alive = np.zeros(group.units, dtype=bool)
    for s in group.producers():
        mask = np.moveaxis(np.asarray(masks[(id(s.wrapper), s.index)], dtype=bool), s.axis, 0)
        per_position = mask.reshape(mask.shape[0], -1).any(axis=1)
        alive |= per_position[s.positions].any(axis=1)
    return alive


def switch_off(group: UnitGroup, units: np.ndarray, masks: dict) -> None:
    """Sets to False, in place, every entry of `masks` that belongs to `units` (int indices)."""
    units = np.asarray(units, dtype=int)
    if units.size == 0:
        return
    for s in group.slices:
        mask = masks[(id(s.wrapper), s.index)]
        index = [slice(None)] * mask.ndim
        index[s.axis] = np.ravel(s.positions[units])
        mask[tuple(index)] = False
