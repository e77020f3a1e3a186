"""How `shrink` rebuilds attention layers and keras_hub transformer blocks without their dead units.

- A `keras.layers.MultiHeadAttention` (keras_hub's `CachedMultiHeadAttention`
  included) is rebuilt as its own class with `num_heads` = the heads that
  still reach its output, their query/key/value kernel and bias slices and
  their output-projection slices; head size, output size and every other
  setting are kept.
- A keras_hub `TransformerEncoder` / `TransformerDecoder` becomes a
  `ShrunkTransformerEncoder` / `ShrunkTransformerDecoder` (plain Keras, see
  `tf_lottery.export.shrunk_blocks`) with fewer heads and fewer feed-forward
  units, each block with its own counts. keras_hub's blocks cannot hold
  them: their head size is `hidden_dim // num_heads`, and a backbone has one
  `num_heads` for all of its blocks. So a shrunk BERT or GPT-2 is a plain
  `keras.Model`, not a keras_hub `Backbone` (no presets, no `generate()`).

A head is dead when nothing of it reaches the output: its slice of the
output projection is masked, or its value slice is masked and its value bias
is zero. A feed-forward unit is dead when its row of the output `Dense` is
masked, or its column of the intermediate `Dense` is masked and
`activation(bias)` is zero. `tfl.prune(..., structure="heads")` and
`structure="channels"` switch off both sides (`tf_lottery.core.units`).

A layer whose heads (or units) are all dead keeps one, with its output
projection zero: Keras cannot build an attention layer with no heads (nor a
`Dense` with no units), and the zero projection keeps the outputs exact (the
block then adds only the projection's bias). The `ShrinkReport` counts it.
"""

from __future__ import annotations

import keras
import numpy as np

from tf_lottery import _keras_compat
from tf_lottery.core.attention_units import TransformerDecoder, TransformerEncoder
from tf_lottery.core.wrapper import PruneWrapper
from tf_lottery.export.shrink import register_internal_shrinker
from tf_lottery.export.shrunk_blocks import ShrunkTransformerDecoder, ShrunkTransformerEncoder

_QKV = ("query_dense", "key_dense", "value_dense")


def _unwrap(layer):
    return layer.layer if isinstance(layer, PruneWrapper) else layer


def _mask_lookup(layer) -> dict:
    """`{id(variable): bool mask}` of a `PruneWrapper`'s masks; `{}` for a plain layer."""
    if not isinstance(layer, PruneWrapper):
        return {}
    return {id(w): m for w, m in zip(layer.pruned_weights, layer.get_masks())}


def _masked_value(variable, masks: dict) -> np.ndarray:
    value = keras.ops.convert_to_numpy(variable)
    mask = masks.get(id(variable))
    return value if mask is None else value * mask


def _mask(variable, masks: dict) -> np.ndarray:
    mask = masks.get(id(variable))
    return np.ones(tuple(variable.shape), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)


def dead_heads(layer) -> np.ndarray:
    """Boolean `(num_heads,)`: the heads of a (wrapped) `MultiHeadAttention` that reach nothing.

    A head is dead when its slice of the output projection is masked, or when
    its value kernel slice is masked and its value bias slice is zero.
    """
    inner, masks = _unwrap(layer), _mask_lookup(layer)
    heads = inner.num_heads
    output_kernel = inner.output_dense.kernel
    unread = ~_mask(output_kernel, masks).reshape(heads, -1).any(axis=1)
    value = inner.value_dense
    value_mask = np.moveaxis(_mask(value.kernel, masks), -2, 0).reshape(heads, -1)
    silent = ~value_mask.any(axis=1)
    if value.bias is not None:
        bias = keras.ops.convert_to_numpy(value.bias).reshape(heads, -1)
        silent &= ~bias.any(axis=1)
    return unread | silent


def _kept(dead: np.ndarray) -> tuple[np.ndarray, bool]:
    """The indices to keep, and whether a dead one was kept because every one is dead."""
    kept = np.flatnonzero(~dead)
    if kept.size:
        return kept, False
    return np.zeros(1, dtype=int), True


def _fill_attention(new, old, masks: dict, kept: np.ndarray, silence: bool) -> None:
    """Copies `old`'s weights for heads `kept` into `new` (built with `len(kept)` heads)."""
    for name in _QKV:
        source, target = getattr(old, name), getattr(new, name)
        target.kernel.assign(np.take(_masked_value(source.kernel, masks), kept, axis=-2))
        if source.bias is not None:
            target.bias.assign(np.take(keras.ops.convert_to_numpy(source.bias), kept, axis=-2))
    output = _masked_value(old.output_dense.kernel, masks)[kept]
    if silence:
        output = np.zeros_like(output)
    new.output_dense.kernel.assign(output)
    if old.output_dense.bias is not None:
        new.output_dense.bias.assign(keras.ops.convert_to_numpy(old.output_dense.bias))


def _heads_cut(attention) -> tuple[np.ndarray, bool]:
    return _kept(dead_heads(attention))


def shrink_attention(layer) -> keras.layers.Layer:
    """A `MultiHeadAttention` of `layer`'s class with only its live heads (see the module docstring).

    Args:
        layer: A built `keras.layers.MultiHeadAttention` (or subclass), or a
            `PruneWrapper` around one.

    Returns:
        A new, built, unwrapped layer with the same name, input and output
        shapes, computing what the masked `layer` computes.
    """
    inner = _unwrap(layer)
    kept, silence = _heads_cut(layer)
    config = inner.get_config()
    config["num_heads"] = int(kept.size)
    new = type(inner).from_config(config)
    new.build_from_config(inner.get_build_config())
    _fill_attention(new, inner, _mask_lookup(layer), kept, silence)
    return new


def dead_feedforward_units(block) -> np.ndarray:
    """Boolean `(intermediate_dim,)`: the feed-forward units of a keras_hub block that reach nothing."""
    parts = _keras_compat.transformer_block_parts(block)
    intermediate, output = parts["intermediate"], parts["output"]
    unread = ~_mask(_unwrap(output).kernel, _mask_lookup(output)).any(axis=1)
    dense = _unwrap(intermediate)
    silent = ~_mask(dense.kernel, _mask_lookup(intermediate)).any(axis=0)
    bias = (
        keras.ops.convert_to_numpy(dense.bias) if dense.bias is not None else np.zeros(dense.units, "float32")
    )
    silent &= keras.ops.convert_to_numpy(dense.activation(keras.ops.convert_to_tensor(bias))) == 0
    return unread | silent


def _copy(source, target) -> None:
    for s, t in zip(_unwrap(source).weights, target.weights, strict=True):
        t.assign(keras.ops.convert_to_numpy(s))


def _shrink_block(block, block_class, **extra):
    """The shrunk block of class `block_class` for a keras_hub encoder or decoder block."""
    parts = _keras_compat.transformer_block_parts(block)
    attention = _unwrap(parts["self_attention"])
    heads, silence_heads = _heads_cut(parts["self_attention"])
    units, silence_units = _kept(dead_feedforward_units(block))
    cross = parts["cross_attention"]
    if cross is not None:
        cross_heads, silence_cross = _heads_cut(cross)
        extra["cross_attention_num_heads"] = int(cross_heads.size)
    config = block.get_config()
    new = block_class(
        num_heads=int(heads.size),
        key_dim=attention.key_dim,
        intermediate_dim=int(units.size),
        dropout=config["dropout"],
        activation=config["activation"],
        layer_norm_epsilon=config["layer_norm_epsilon"],
        kernel_initializer=config["kernel_initializer"],
        bias_initializer=config["bias_initializer"],
        normalize_first=config["normalize_first"],
        name=block.name,
        dtype=block.dtype_policy,
        **extra,
    )
    new.build_from_config(block.get_build_config())
    new_parts = _keras_compat.transformer_block_parts(new)
    _fill_attention(
        new_parts["self_attention"], attention, _mask_lookup(parts["self_attention"]), heads, silence_heads
    )
    if cross is not None:
        _fill_attention(
            new_parts["cross_attention"], _unwrap(cross), _mask_lookup(cross), cross_heads, silence_cross
        )
        _copy(parts["cross_attention_norm"], new_parts["cross_attention_norm"])
    for norm in ("self_attention_norm", "feedforward_norm"):
        _copy(parts[norm], new_parts[norm])
    intermediate, output = parts["intermediate"], parts["output"]
    source = _unwrap(intermediate)
    target = new_parts["intermediate"]
    target.kernel.assign(_masked_value(source.kernel, _mask_lookup(intermediate))[:, units])
    if source.bias is not None:
        target.bias.assign(keras.ops.convert_to_numpy(source.bias)[units])
    rows = _masked_value(_unwrap(output).kernel, _mask_lookup(output))[units]
    new_parts["output"].kernel.assign(np.zeros_like(rows) if silence_units else rows)
    if _unwrap(output).bias is not None:
        new_parts["output"].bias.assign(keras.ops.convert_to_numpy(_unwrap(output).bias))
    return new


def shrink_transformer_encoder(block) -> ShrunkTransformerEncoder:
    """A `ShrunkTransformerEncoder` for a keras_hub `TransformerEncoder` without its dead heads and units."""
    return _shrink_block(block, ShrunkTransformerEncoder)


def shrink_transformer_decoder(block) -> ShrunkTransformerDecoder:
    """A `ShrunkTransformerDecoder` for a keras_hub `TransformerDecoder` without its dead heads and units."""
    return _shrink_block(block, ShrunkTransformerDecoder)


register_internal_shrinker(keras.layers.MultiHeadAttention, shrink_attention)
register_internal_shrinker(TransformerEncoder, shrink_transformer_encoder)
register_internal_shrinker(TransformerDecoder, shrink_transformer_decoder)
