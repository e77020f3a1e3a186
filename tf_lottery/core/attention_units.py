"""Units inside attention layers: the heads of `MultiHeadAttention`, the feed-forward units of keras_hub blocks.

A head `h` of a `keras.layers.MultiHeadAttention` (keras_hub's
`CachedMultiHeadAttention` is a subclass) is produced by slice `h` of the
query, key and value kernels, shaped `(d, heads, head_dim)`, on their heads
axis, and read by slice `h` of the output kernel, shaped
`(heads, head_dim, d)`. One `PruneWrapper` holds the four masks, so one
`UnitGroup` of kind `"heads"` per attention layer covers them all.

The feed-forward block of keras_hub's `TransformerEncoder` and
`TransformerDecoder` (BERT, GPT-2 and most encoder/decoder models built from
them) is `output_dense(intermediate_dense(x))`: unit `u` is column `u` of the
intermediate kernel (producer) and row `u` of the output kernel (consumer).
The model's graph sees the block as one layer, so the block's provider
returns that group, of kind `"channels"`, when both `Dense` layers are
wrapped.

With every slice of a unit switched off, nothing of the unit reaches the
layer's output (a head's softmax over its query and key biases meets a zero
output projection; an intermediate unit's `activation(bias)` meets a zero
output row), so the masked model computes what the model with the unit
removed computes (`tf_lottery.export.shrink`).

keras_hub is optional: its classes are matched only once the user has
imported keras_hub (a model holding its layers has); importing tf_lottery
never imports it.

Reference:
    Michel, Levy & Neubig, "Are Sixteen Heads Really Better than One?",
    NeurIPS 2019, arXiv:1905.10650; Chen et al., "The Lottery Ticket
    Hypothesis for Pre-trained BERT Networks", NeurIPS 2020,
    arXiv:2007.12223.
"""

from __future__ import annotations

import sys

import keras
import numpy as np

from tf_lottery import _keras_compat
from tf_lottery.core.units import CONSUMER, PRODUCER, UnitGroup, UnitSlice, register_internal_units
from tf_lottery.core.wrapper import PruneWrapper


class _LazyClassMeta(type):
    def __instancecheck__(cls, instance) -> bool:
        real = cls.resolve()
        return real is not None and isinstance(instance, real)


class _KerasHubClass(metaclass=_LazyClassMeta):
    """Stands for `keras_hub.layers.<name>` in `isinstance` checks, without importing keras_hub."""

    layer_name = ""

    @classmethod
    def resolve(cls) -> type | None:
        keras_hub = sys.modules.get("keras_hub")
        if keras_hub is None:
            return None
        return getattr(keras_hub.layers, cls.layer_name, None)


def keras_hub_class(name: str) -> type:
    """A class for `isinstance` that matches `keras_hub.layers.<name>`, once keras_hub is imported.

    Registries (`register_internal_units`, shrinkers) take it in place of the
    real class, so that tf_lottery never imports keras_hub itself: an object
    can only be an instance of a keras_hub class when keras_hub is imported.
    """
    return _LazyClassMeta(f"keras_hub.layers.{name}", (_KerasHubClass,), {"layer_name": name})


TransformerEncoder = keras_hub_class("TransformerEncoder")
TransformerDecoder = keras_hub_class("TransformerDecoder")

# The attention projections of a `MultiHeadAttention`: query, key and value
# kernels `(d, heads, head_dim)` (heads on axis -2), output `(heads, head_dim, *out)`.
_PROJECTIONS = ("query_dense", "key_dense", "value_dense", "output_dense")


def _weight_index(wrapper: PruneWrapper, variable) -> int | None:
    for i, weight in enumerate(wrapper.pruned_weights):
        if weight is variable:
            return i
    return None


def attention_head_groups(wrapper) -> list[UnitGroup]:
    """The heads of a wrapped `MultiHeadAttention`, as one `UnitGroup` of kind `"heads"`.

    Returns `[]` when `wrapper` is not a `PruneWrapper` or does not mask all
    four projections (a custom `get_prunable_weights()` that leaves one out:
    a head could not be switched off whole).
    """
    if not isinstance(wrapper, PruneWrapper):
        return []
    layer = wrapper.layer
    heads = layer.num_heads
    slices = []
    for name in _PROJECTIONS:
        kernel = getattr(layer, name).kernel
        index = _weight_index(wrapper, kernel)
        if index is None:
            return []
        is_output = name == "output_dense"
        slices.append(
            UnitSlice(
                wrapper=wrapper,
                index=index,
                axis=0 if is_output else len(kernel.shape) - 2,
                positions=np.arange(heads)[:, None],
                role=CONSUMER if is_output else PRODUCER,
            )
        )
    # The query kernel's path names the layer where it sits ("transformer_layer_0/self_attention").
    name = layer.query_dense.kernel.path.rsplit("/", 2)[0]
    return [UnitGroup(name=name, kind="heads", units=heads, slices=slices, layers=(layer.name,))]


def feedforward_groups(block) -> list[UnitGroup]:
    """The feed-forward units of a keras_hub `TransformerEncoder`/`TransformerDecoder`, kind `"channels"`.

    Returns `[]` unless both feed-forward `Dense` layers of the block are
    wrapped (an excluded one could not be masked with its partner).
    """
    parts = _keras_compat.transformer_block_parts(block)
    intermediate, output = parts["intermediate"], parts["output"]
    if not (isinstance(intermediate, PruneWrapper) and isinstance(output, PruneWrapper)):
        return []
    producer_index = _weight_index(intermediate, intermediate.layer.kernel)
    consumer_index = _weight_index(output, output.layer.kernel)
    if producer_index is None or consumer_index is None:
        return []
    units = intermediate.layer.units
    positions = np.arange(units)[:, None]
    slices = [
        UnitSlice(intermediate, producer_index, axis=1, positions=positions, role=PRODUCER),
        UnitSlice(output, consumer_index, axis=0, positions=positions, role=CONSUMER),
    ]
    names = (intermediate.layer.name, output.layer.name)
    return [
        UnitGroup(
            name=f"{block.name}/{'+'.join(names)}",
            kind="channels",
            units=units,
            slices=slices,
            layers=(block.name, *names),
        )
    ]


register_internal_units(keras.layers.MultiHeadAttention, attention_head_groups)
register_internal_units(TransformerEncoder, feedforward_groups)
register_internal_units(TransformerDecoder, feedforward_groups)
