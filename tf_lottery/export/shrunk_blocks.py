"""Transformer blocks with their own head count, head size and feed-forward width, in plain Keras.

`shrink` rebuilds each keras_hub `TransformerEncoder` / `TransformerDecoder`
of a pruned model as one of these: keras_hub's blocks derive the head size
from `hidden_dim // num_heads`, so a block with fewer heads of the same size
cannot be described by their config, and a backbone's single `num_heads`
cannot describe blocks that kept different numbers of heads. These layers
compute what keras_hub's blocks compute (the same sub-layers, names, masks
and order of operations; checked against them in the tests), take the same
call arguments, and depend on Keras alone, so a shrunk model reloads with
`import tf_lottery` (and keras_hub for the embeddings around them).

Cached decoding (`generate()`'s `self_attention_cache`) is not supported:
the shrunk model is a plain `keras.Model` for the forward pass.
"""

from __future__ import annotations

import keras
from keras import ops


def _merge_masks(mask, padding_mask, attention_mask):
    """keras_hub's `merge_padding_and_attention_mask`: the padding mask wins over the Keras mask."""
    if padding_mask is not None:
        mask = padding_mask
    if mask is not None:
        mask = ops.cast(ops.expand_dims(mask, axis=1), "int32")
    if attention_mask is not None:
        attention_mask = ops.cast(attention_mask, "int32")
        return attention_mask if mask is None else ops.minimum(mask, attention_mask)
    return mask


def _causal_mask(sequence):
    length = ops.shape(sequence)[1]
    i = ops.expand_dims(ops.arange(length, dtype="float32"), axis=1)
    j = ops.arange(length, dtype="float32")
    mask = ops.expand_dims(i >= j, axis=0)
    return ops.broadcast_to(mask, (ops.shape(sequence)[0], length, length))


class _ShrunkBlock(keras.layers.Layer):
    """What the encoder and the decoder share: config, attention and feed-forward sub-layers."""

    def __init__(
        self,
        num_heads: int,
        key_dim: int,
        intermediate_dim: int,
        dropout: float = 0.0,
        activation="relu",
        layer_norm_epsilon: float = 1e-5,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        normalize_first: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.intermediate_dim = intermediate_dim
        self.dropout = dropout
        self.activation = keras.activations.get(activation)
        self.layer_norm_epsilon = layer_norm_epsilon
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.normalize_first = normalize_first
        self.supports_masking = True

    def _initializers(self) -> dict:
        return {
            "kernel_initializer": keras.initializers.get(
                keras.initializers.serialize(self.kernel_initializer)
            ),
            "bias_initializer": keras.initializers.get(keras.initializers.serialize(self.bias_initializer)),
        }

    def _attention(self, num_heads, name, query_shape, value_shape):
        layer = keras.layers.MultiHeadAttention(
            num_heads=num_heads,
            key_dim=self.key_dim,
            dropout=self.dropout,
            **self._initializers(),
            dtype=self.dtype_policy,
            name=name,
        )
        layer.build(query_shape=query_shape, value_shape=value_shape)
        return layer

    def _norm(self, name, shape):
        layer = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name=name
        )
        layer.build(shape)
        return layer

    def _dropout(self, name):
        return keras.layers.Dropout(rate=self.dropout, dtype=self.dtype_policy, name=name)

    def _build_feedforward(self, shape):
        self._feedforward_layer_norm = self._norm("feedforward_layer_norm", shape)
        self._feedforward_intermediate_dense = keras.layers.Dense(
            self.intermediate_dim,
            activation=self.activation,
            **self._initializers(),
            dtype=self.dtype_policy,
            name="feedforward_intermediate_dense",
        )
        self._feedforward_intermediate_dense.build(shape)
        self._feedforward_output_dense = keras.layers.Dense(
            shape[-1], **self._initializers(), dtype=self.dtype_policy, name="feedforward_output_dense"
        )
        self._feedforward_output_dense.build((*shape[:-1], self.intermediate_dim))
        self._feedforward_dropout = self._dropout("feedforward_dropout")

    def _residual(self, x, norm, dropout, sublayer, training):
        residual = x
        if self.normalize_first:
            x = norm(x)
        x = dropout(sublayer(x), training=training)
        x = x + residual
        return x if self.normalize_first else norm(x)

    def _feedforward(self, x, training):
        def feedforward(h):
            return self._feedforward_output_dense(self._feedforward_intermediate_dense(h))

        return self._residual(
            x, self._feedforward_layer_norm, self._feedforward_dropout, feedforward, training
        )

    def compute_output_shape(self, input_shape, *args, **kwargs):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "key_dim": self.key_dim,
                "intermediate_dim": self.intermediate_dim,
                "dropout": self.dropout,
                "activation": keras.activations.serialize(self.activation),
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "normalize_first": self.normalize_first,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="tf_lottery")
class ShrunkTransformerEncoder(_ShrunkBlock):
    """keras_hub's `TransformerEncoder` with `num_heads` heads of size `key_dim` and `intermediate_dim` units.

    Args:
        num_heads: int. Attention heads.
        key_dim: int. Size of each head (keras_hub's `hidden_dim // num_heads`
            of the block before shrinking).
        intermediate_dim: int. Units of the feed-forward block.
        dropout, activation, layer_norm_epsilon, kernel_initializer,
            bias_initializer, normalize_first: as in keras_hub's
            `TransformerEncoder`.
        **kwargs: Base `keras.layers.Layer` arguments (`name`, `dtype`).
    """

    def build(self, inputs_shape):
        self._self_attention_layer = self._attention(
            self.num_heads, "self_attention_layer", inputs_shape, inputs_shape
        )
        self._self_attention_layer_norm = self._norm("self_attention_layer_norm", inputs_shape)
        self._self_attention_dropout = self._dropout("self_attention_dropout")
        self._build_feedforward(inputs_shape)
        self.built = True

    def call(self, inputs, padding_mask=None, attention_mask=None, training=None, mask=None):
        attention_mask = _merge_masks(mask, padding_mask, attention_mask)

        def attend(h):
            return self._self_attention_layer(
                query=h, value=h, attention_mask=attention_mask, training=training
            )

        x = self._residual(
            inputs, self._self_attention_layer_norm, self._self_attention_dropout, attend, training
        )
        return self._feedforward(x, training)


@keras.saving.register_keras_serializable(package="tf_lottery")
class ShrunkTransformerDecoder(_ShrunkBlock):
    """keras_hub's `TransformerDecoder` with its own head counts, head size and feed-forward width.

    Args:
        num_heads: int. Self-attention heads.
        key_dim: int. Size of each head.
        intermediate_dim: int. Units of the feed-forward block.
        cross_attention_num_heads: int or None. Heads of the cross-attention
            (built when the layer is called with an `encoder_sequence`).
            Defaults to `num_heads`.
        dropout, activation, layer_norm_epsilon, kernel_initializer,
            bias_initializer, normalize_first: as in keras_hub's
            `TransformerDecoder`.
        **kwargs: Base `keras.layers.Layer` arguments (`name`, `dtype`).
    """

    def __init__(self, num_heads, key_dim, intermediate_dim, cross_attention_num_heads=None, **kwargs):
        super().__init__(num_heads, key_dim, intermediate_dim, **kwargs)
        self.cross_attention_num_heads = cross_attention_num_heads

    def build(self, decoder_sequence_shape, encoder_sequence_shape=None):
        self._self_attention_layer = self._attention(
            self.num_heads, "self_attention", decoder_sequence_shape, decoder_sequence_shape
        )
        self._self_attention_layer_norm = self._norm("self_attention_layer_norm", decoder_sequence_shape)
        self._self_attention_dropout = self._dropout("self_attention_dropout")
        self._cross_attention_layer = None
        if encoder_sequence_shape is not None:
            heads = self.cross_attention_num_heads or self.num_heads
            self._cross_attention_layer = self._attention(
                heads, "cross_attention", decoder_sequence_shape, encoder_sequence_shape
            )
            self._cross_attention_layer_norm = self._norm(
                "cross_attention_layer_norm", decoder_sequence_shape
            )
            self._cross_attention_dropout = self._dropout("cross_attention_dropout")
        self._build_feedforward(decoder_sequence_shape)
        self.built = True

    def call(
        self,
        decoder_sequence,
        encoder_sequence=None,
        decoder_padding_mask=None,
        decoder_attention_mask=None,
        encoder_padding_mask=None,
        encoder_attention_mask=None,
        use_causal_mask=True,
        training=None,
        mask=None,
    ):
        if (encoder_sequence is None) != (self._cross_attention_layer is None):
            raise ValueError(
                f"Layer '{self.name}' was built {'with' if self._cross_attention_layer else 'without'} "
                "cross-attention: call it with the same arguments as the block it replaces "
                "(`encoder_sequence` given or not)."
            )
        self_mask = _merge_masks(mask, decoder_padding_mask, decoder_attention_mask)
        if use_causal_mask:
            causal = _causal_mask(decoder_sequence)
            self_mask = causal if self_mask is None else ops.minimum(self_mask, causal)

        def attend(h):
            return self._self_attention_layer(query=h, value=h, attention_mask=self_mask, training=training)

        x = self._residual(
            decoder_sequence, self._self_attention_layer_norm, self._self_attention_dropout, attend, training
        )
        if self._cross_attention_layer is not None:
            cross_mask = _merge_masks(None, encoder_padding_mask, encoder_attention_mask)

            def cross(h):
                return self._cross_attention_layer(
                    query=h, value=encoder_sequence, attention_mask=cross_mask, training=training
                )

            x = self._residual(
                x, self._cross_attention_layer_norm, self._cross_attention_dropout, cross, training
            )
        return self._feedforward(x, training)

    def get_config(self):
        config = super().get_config()
        config["cross_attention_num_heads"] = self.cross_attention_num_heads
        return config
