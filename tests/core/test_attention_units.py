"""Heads of `MultiHeadAttention` and feed-forward units of keras_hub blocks as `UnitGroup`s.

A head's group covers its query, key and value slices (producers) and its
output-projection slice (consumer); a feed-forward unit's covers its
intermediate column and its output row. Once switched off, nothing of the
unit reaches the output: changing its surviving parameters (biases) leaves
the model's output unchanged.
"""

import sys

import keras
import numpy as np
import pytest

import tf_lottery as tfl
from tests.testing import TestCase
from tf_lottery.core import attention_units
from tf_lottery.core.coupling import head_groups, internal_groups
from tf_lottery.core.units import CONSUMER, PRODUCER, switch_off, unit_alive


def _attention_model():
    query = keras.Input((5, 16), name="query")
    value = keras.Input((7, 12), name="value")
    attended = keras.layers.MultiHeadAttention(4, 8, value_dim=6, name="mha")(query, value)
    return tfl.prunable(keras.Model([query, value], attended))


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(2, 5, 16)).astype("float32"), rng.normal(size=(2, 7, 12)).astype("float32")]


def _current_masks(groups) -> dict:
    wrappers = {id(s.wrapper): s.wrapper for g in groups for s in g.slices}
    return {(id(w), i): m for w in wrappers.values() for i, m in enumerate(w.get_masks())}


def _switch_off(pairs) -> dict:
    """Switches off `units` of each `(group, units)` and writes the masks back; returns them."""
    masks = _current_masks([g for g, _ in pairs])
    for group, units in pairs:
        switch_off(group, np.asarray(units), masks)
    wrappers = {id(s.wrapper): s.wrapper for g, _ in pairs for s in g.slices}
    for w in wrappers.values():
        w.set_masks([masks[(id(w), i)] for i in range(len(w.masks))])
    return masks


class TestAttentionHeads(TestCase):
    def test_one_group_per_attention_layer_over_query_key_value_and_output(self):
        (group,) = head_groups(_attention_model())
        assert (group.name, group.kind, group.units) == ("mha", "heads", 4)
        layout = [(tuple(s.wrapper.pruned_weights[s.index].shape), s.axis, s.role) for s in group.slices]
        assert layout == [
            ((16, 4, 8), 1, PRODUCER),  # query (d, heads, head_dim)
            ((12, 4, 8), 1, PRODUCER),  # key
            ((12, 4, 6), 1, PRODUCER),  # value (value_dim=6)
            ((4, 6, 16), 0, CONSUMER),  # output (heads, value_dim, d)
        ]

    def test_switched_off_heads_lose_exactly_their_slices_and_reach_nothing(self):
        model = _attention_model()
        (group,) = head_groups(model)
        masks = _switch_off([(group, [1, 3])])
        np.testing.assert_array_equal(unit_alive(group, masks), [True, False, True, False])
        wrapper = group.slices[0].wrapper
        query, key, value, output = wrapper.get_masks()
        for producer in (query, key, value):
            assert not producer[:, [1, 3]].any() and producer[:, [0, 2]].all()
        assert not output[[1, 3]].any() and output[[0, 2]].all()
        x = _inputs()
        before = np.asarray(model(x))
        # What a dead head still computes (softmax of its query/key biases times
        # its value bias) meets a zero output slice.
        attention = wrapper.layer
        for projection in (attention.query_dense, attention.key_dense, attention.value_dense):
            bias = projection.bias.numpy()
            bias[[1, 3]] = 5.0
            projection.bias.assign(bias)
        np.testing.assert_array_equal(np.asarray(model(x)), before)
        bias = attention.value_dense.bias.numpy()
        bias[0] = 5.0  # a live head's bias does reach the output
        attention.value_dense.bias.assign(bias)
        assert np.abs(np.asarray(model(x)) - before).max() > 1e-3

    def test_a_model_without_attention_has_no_heads(self):
        model = tfl.prunable(keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)], name="mlp"))
        assert internal_groups(model, "heads") == []
        with pytest.raises(ValueError, match=r"`structure`: 'heads' found no attention heads in model 'mlp'"):
            head_groups(model)

    def test_an_excluded_attention_layer_has_no_heads(self):
        query = keras.Input((5, 16))
        model = tfl.prunable(
            keras.Model(query, keras.layers.MultiHeadAttention(2, 4, name="mha")(query, query)),
            exclude=["mha"],
        )
        assert internal_groups(model, "heads") == []


keras_hub = pytest.importorskip("keras_hub")
SEQ, VOCAB = 8, 30


def _bert():
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=VOCAB,
        num_layers=2,
        num_heads=4,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=SEQ,
    )
    return backbone


def _tokens(seed=0, segments=True):
    rng = np.random.default_rng(seed)
    x = {
        "token_ids": rng.integers(1, VOCAB, (2, SEQ)).astype("int32"),
        "padding_mask": np.ones((2, SEQ), "int32"),
    }
    x["padding_mask"][1, 6:] = 0
    if segments:
        x["segment_ids"] = np.zeros((2, SEQ), "int32")
    return x


def _sequence_output(model, x):
    return np.asarray(model(x)["sequence_output"])


class TestKerasHubUnits(TestCase):
    def test_bert_blocks_give_their_heads_and_their_feed_forward_units(self):
        model = tfl.prunable(_bert())
        heads = internal_groups(model, "heads")
        assert [(g.name, g.units) for g in heads] == [
            ("transformer_layer_0/self_attention_layer", 4),
            ("transformer_layer_1/self_attention_layer", 4),
        ]
        feedforward = internal_groups(model, "channels")
        assert [(g.kind, g.units) for g in feedforward] == [("channels", 32), ("channels", 32)]
        layout = [
            (tuple(s.wrapper.pruned_weights[s.index].shape), s.axis, s.role) for s in feedforward[0].slices
        ]
        assert layout == [((16, 32), 1, PRODUCER), ((32, 16), 0, CONSUMER)]
        assert feedforward[0].layers == (
            "transformer_layer_0",
            "feedforward_intermediate_dense",
            "feedforward_output_dense",
        )
        # `channel_groups` (what structure="channels" prunes) includes them.
        from tf_lottery.core.coupling import channel_groups

        names = {g.name for g in channel_groups(model)}
        assert {g.name for g in feedforward} <= names

    def test_switched_off_feed_forward_units_reach_nothing(self):
        model = tfl.prunable(_bert())
        group = internal_groups(model, "channels")[0]
        dead = np.arange(0, 32, 2)
        masks = _switch_off([(group, dead)])
        np.testing.assert_array_equal(unit_alive(group, masks), np.arange(32) % 2 == 1)
        intermediate, output = (s.wrapper for s in group.slices)
        (columns,) = intermediate.get_masks()
        (rows,) = output.get_masks()
        assert not columns[:, dead].any() and not rows[dead].any()
        x = _tokens()
        before = _sequence_output(model, x)
        bias = intermediate.layer.bias.numpy()
        bias[dead] = 3.0  # gelu(3) != 0, but the unit's output row is zero
        intermediate.layer.bias.assign(bias)
        np.testing.assert_allclose(_sequence_output(model, x), before, atol=1e-6)

    def test_feed_forward_units_need_both_dense_layers_wrapped(self):
        model = tfl.prunable(_bert(), exclude=lambda layer: layer.name == "feedforward_output_dense")
        assert internal_groups(model, "channels") == []
        assert len(internal_groups(model, "heads")) == 2

    def test_gpt2_cached_attention_heads_and_decoder_feed_forward(self):
        backbone = keras_hub.models.GPT2Backbone(
            vocabulary_size=VOCAB,
            num_layers=1,
            num_heads=2,
            hidden_dim=8,
            intermediate_dim=16,
            max_sequence_length=SEQ,
        )
        model = tfl.prunable(backbone)
        (heads,) = internal_groups(model, "heads")
        assert type(heads.slices[0].wrapper.layer).__name__ == "CachedMultiHeadAttention"
        assert (heads.name, heads.units) == ("transformer_layer_0/self_attention", 2)
        (feedforward,) = internal_groups(model, "channels")
        assert feedforward.units == 16

    def test_keras_hub_classes_match_only_once_keras_hub_is_imported(self, monkeypatch):
        block = keras_hub.layers.TransformerEncoder(8, 2)
        assert isinstance(block, attention_units.TransformerEncoder)
        assert not isinstance(keras.layers.Dense(2), attention_units.TransformerEncoder)
        # Without keras_hub in `sys.modules` nothing is looked up (nothing imported).
        monkeypatch.delitem(sys.modules, "keras_hub")
        assert not isinstance(block, attention_units.TransformerEncoder)
        assert "keras_hub" not in sys.modules
