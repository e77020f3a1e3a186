"""shrink on attention: heads and feed-forward units physically removed, outputs equal to the masked model.

keras `MultiHeadAttention` keeps its class with fewer heads; keras_hub BERT
and GPT-2 become plain Keras models whose blocks (`ShrunkTransformerEncoder`
/ `ShrunkTransformerDecoder`) each keep their own head count and width.
"""

import os

import keras
import numpy as np
import pytest

import tf_lottery as tfl
from tests.testing import TestCase
from tf_lottery.core.coupling import internal_groups
from tf_lottery.core.units import switch_off
from tf_lottery.export import shrink_attention
from tf_lottery.export.shrink import shrink
from tf_lottery.export.shrunk_blocks import ShrunkTransformerDecoder, ShrunkTransformerEncoder


def _randomize_biases(model, seed=0):
    """Non-zero biases: a dead unit's bias must reach nothing."""
    rng = np.random.default_rng(seed)
    for v in model.weights:
        if v.dtype != "bool" and v.path.endswith("bias"):
            v.assign((0.5 * rng.normal(size=v.shape)).astype("float32"))


def _switch_off(model, kind, units_of):
    """Switches off `units_of(group)` in every group of `kind`; returns the groups."""
    groups = internal_groups(model, kind)
    wrappers = {id(s.wrapper): s.wrapper for g in groups for s in g.slices}
    masks = {(id(w), i): m for w in wrappers.values() for i, m in enumerate(w.get_masks())}
    for group in groups:
        switch_off(group, np.asarray(units_of(group), dtype=int), masks)
    for w in wrappers.values():
        w.set_masks([masks[(id(w), i)] for i in range(len(w.masks))])
    return groups


def _run(model, x):
    """The model's output in inference mode (eager: cheaper than `predict` on tiny models)."""
    return model(x, training=False)


def _first(outputs):
    return np.asarray(keras.tree.flatten(outputs)[0])


def _max_diff(a, b) -> float:
    return float(np.max(np.abs(_first(a) - _first(b))))


def _roundtrip(model, tmp_path):
    path = os.path.join(tmp_path, "small.keras")
    model.save(path)
    return keras.saving.load_model(path)


def _attention_model():
    query = keras.Input((5, 16))
    value = keras.Input((7, 12))
    attended = keras.layers.MultiHeadAttention(4, 8, value_dim=6, output_shape=(10,), name="mha")(
        query, value
    )
    model = tfl.prunable(keras.Model([query, value], keras.layers.Dense(3, name="head")(attended)))
    _randomize_biases(model)
    return model


def _attention_inputs(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(2, 5, 16)).astype("float32"), rng.normal(size=(2, 7, 12)).astype("float32")]


class TestMultiHeadAttention(TestCase):
    def test_the_live_heads_are_kept_with_their_slices(self, tmp_path):
        model = _attention_model()
        x = _attention_inputs()
        dense = _run(model, x)
        _switch_off(model, "heads", lambda g: [0, 2])
        masked = _run(model, x)
        assert _max_diff(masked, dense) > 1e-3  # the heads took effect
        small, report = shrink(model, return_report=True)
        attention = small.get_layer("mha")
        assert type(attention) is keras.layers.MultiHeadAttention
        assert attention.num_heads == 2 and attention.key_dim == 8 and attention.value_dim == 6
        assert tuple(attention.query_dense.kernel.shape) == (16, 2, 8)
        assert tuple(attention.output_dense.kernel.shape) == (2, 6, 10)
        wrapped = tfl.prune_wrappers(model)[0].layer
        np.testing.assert_array_equal(
            attention.value_dense.kernel.numpy(), wrapped.value_dense.kernel.numpy()[:, [1, 3]]
        )
        assert _max_diff(_run(small, x), masked) <= 1e-5
        (row,) = report.layers
        assert (row.name, row.params_before, row.params_after) == ("mha", 1522, 766)
        reloaded = _roundtrip(small, tmp_path)
        assert _max_diff(_run(reloaded, x), masked) <= 1e-5

    def test_a_layer_whose_heads_are_all_off_keeps_one_silent_head(self):
        # Keras cannot build an attention layer with no heads; the one kept
        # has a zero output projection, so the layer adds only its output bias.
        model = _attention_model()
        x = _attention_inputs()
        _switch_off(model, "heads", lambda g: range(g.units))
        masked = _run(model, x)
        small = shrink(model)
        attention = small.get_layer("mha")
        assert attention.num_heads == 1
        assert not attention.output_dense.kernel.numpy().any()
        assert _max_diff(_run(small, x), masked) <= 1e-5

    def test_a_head_is_dead_when_its_output_slice_or_its_value_reaches_nothing(self):
        model = _attention_model()
        wrapper = tfl.prune_wrappers(model)[0]
        query, key, value, output = wrapper.get_masks()
        attention = wrapper.layer
        query[:, 0] = False  # head 0: only its query is masked, its value still reaches the output
        value[:, 1] = False  # head 1: value masked, value bias not zero: still reaches it
        value[:, 2] = False  # head 2: value masked and value bias zero: reaches nothing
        output[3] = False  # head 3: its output slice is masked
        wrapper.set_masks([query, key, value, output])
        bias = attention.value_dense.bias.numpy()
        bias[2] = 0.0
        attention.value_dense.bias.assign(bias)
        np.testing.assert_array_equal(shrink_attention.dead_heads(wrapper), [False, False, True, True])
        x = _attention_inputs()
        small = shrink(model)
        assert small.get_layer("mha").num_heads == 2
        assert _max_diff(_run(small, x), _run(model, x)) <= 1e-5


keras_hub = pytest.importorskip("keras_hub")
SEQ, VOCAB = 8, 30


def _tokens(seed=0, segments=True):
    rng = np.random.default_rng(seed)
    x = {
        "token_ids": rng.integers(1, VOCAB, (3, SEQ)).astype("int32"),
        "padding_mask": np.ones((3, SEQ), "int32"),
    }
    x["padding_mask"][1, 5:] = 0
    if segments:
        x["segment_ids"] = (np.arange(SEQ)[None, :] >= 4).repeat(3, axis=0).astype("int32")
    return x


def _prune_half(model):
    """Half of the heads of every attention layer and half of the feed-forward units of every block."""
    _randomize_biases(model)
    tfl.prune(model, target_sparsity=0.5, structure="heads", scope="layer")
    tfl.prune(model, target_sparsity=0.5, structure="channels", scope="layer")


class TestKerasHub(TestCase):
    def test_bert_classifier_pruned_by_heads_and_channels_shrinks_to_a_plain_model(self, tmp_path):
        backbone = keras_hub.models.BertBackbone(
            vocabulary_size=VOCAB,
            num_layers=2,
            num_heads=4,
            hidden_dim=16,
            intermediate_dim=32,
            max_sequence_length=SEQ,
        )
        model = tfl.prunable(
            keras_hub.models.BertTextClassifier(backbone=backbone, num_classes=3, preprocessor=None)
        )
        _randomize_biases(model)
        x = _tokens()
        dense = _run(model, x)
        tfl.prune(model, target_sparsity=0.5, structure="heads", scope="layer")
        # Feed-forward units and the pooler's units (read by the task's head).
        tfl.prune(model, target_sparsity=0.5, structure="channels", scope="layer")
        masked = _run(model, x)
        assert _max_diff(masked, dense) > 1e-3
        small, report = tfl.shrink(model, return_report=True)
        # A plain functional model: the backbone's layers run in its graph.
        assert type(small).__name__ == "Functional"
        blocks = [layer for layer in small.layers if "transformer_layer" in layer.name]
        assert [type(b) for b in blocks] == [ShrunkTransformerEncoder] * 2
        assert [(b.num_heads, b.key_dim, b.intermediate_dim) for b in blocks] == [(2, 4, 16)] * 2
        assert small.get_layer("pooled_dense").units == 8
        assert _max_diff(_run(small, x), masked) <= 1e-5
        rows = {row.name: (row.params_before, row.params_after) for row in report.layers}
        # Per block: attention 4 -> 2 heads (1088 -> 552), feed-forward 32 -> 16 units (1072 -> 544).
        assert rows["transformer_layer_0"] == rows["transformer_layer_1"] == (2224, 1160)
        assert rows["pooled_dense"] == (272, 136) and rows["logits"] == (51, 27)
        assert report.params_after == small.count_params() == report.params_before - 2 * 1064 - 136 - 24
        reloaded = _roundtrip(small, tmp_path)
        assert _max_diff(_run(reloaded, x), masked) <= 1e-5

    def test_gpt2_causal_lm_shrinks_and_keeps_its_tied_embedding(self, tmp_path):
        backbone = keras_hub.models.GPT2Backbone(
            vocabulary_size=VOCAB,
            num_layers=2,
            num_heads=4,
            hidden_dim=16,
            intermediate_dim=32,
            max_sequence_length=SEQ,
        )
        model = tfl.prunable(keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None))
        x = _tokens(segments=False)
        _prune_half(model)
        masked = _run(model, x)
        small, report = shrink(model, return_report=True)
        blocks = [layer for layer in small.layers if isinstance(layer, ShrunkTransformerDecoder)]
        assert [(b.num_heads, b.intermediate_dim) for b in blocks] == [(2, 16)] * 2
        # One token embedding, read twice (input and tied output projection).
        embeddings = [layer for layer in small.layers if layer.name == "token_embedding"]
        assert len(embeddings) == 1
        assert small.count_params() == report.params_after == report.params_before - 2 * (2224 - 1160)
        assert _max_diff(_run(small, x), masked) <= 1e-5
        reloaded = _roundtrip(small, tmp_path)
        assert _max_diff(_run(reloaded, x), masked) <= 1e-5

    def test_shrunk_bert_exports_as_a_saved_model_with_its_dict_inputs(self, tmp_path):
        # Was: `export_saved_model` called the model on a list; a backbone takes a dict.
        import tensorflow as tf

        backbone = keras_hub.models.BertBackbone(
            vocabulary_size=VOCAB,
            num_layers=1,
            num_heads=4,
            hidden_dim=16,
            intermediate_dim=32,
            max_sequence_length=SEQ,
        )
        model = tfl.prunable(backbone)
        _prune_half(model)
        x = _tokens()
        masked = model(x)
        small = tfl.shrink(model)
        path = tfl.export_saved_model(small, str(tmp_path / "bert"))
        serve = tf.saved_model.load(path).signatures["serving_default"]
        assert set(serve.structured_input_signature[1]) == {"token_ids", "segment_ids", "padding_mask"}
        served = serve(**{k: tf.constant(v) for k, v in x.items()})
        for key in ("sequence_output", "pooled_output"):
            np.testing.assert_allclose(served[key].numpy(), np.asarray(masked[key]), atol=1e-5)


def _block_inputs(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2, 6, 16)).astype("float32")
    padding = np.ones((2, 6), "int32")
    padding[1, 4:] = 0
    attention = (rng.uniform(size=(2, 6, 6)) > 0.2).astype("int32")
    attention[:, :, 0] = 1
    return x, padding, attention


class TestShrunkBlocks(TestCase):
    """The plain-Keras blocks compute what keras_hub's compute (nothing removed), masks included."""

    @pytest.mark.parametrize("normalize_first", [False, True])
    def test_encoder_equals_keras_hub_encoder(self, normalize_first):
        x, padding, attention = _block_inputs()
        block = keras_hub.layers.TransformerEncoder(32, 4, activation="gelu", normalize_first=normalize_first)
        block(x)
        _randomize_biases(block)
        shrunk = shrink_attention.shrink_transformer_encoder(block)
        assert (shrunk.num_heads, shrunk.key_dim, shrunk.intermediate_dim) == (4, 4, 32)
        for kwargs in ({}, {"padding_mask": padding}, {"padding_mask": padding, "attention_mask": attention}):
            assert _max_diff(shrunk(x, **kwargs), block(x, **kwargs)) <= 1e-5
        config = shrunk.get_config()
        assert type(shrunk).from_config(config).get_config() == config

    def test_decoder_with_cross_attention_shrinks_each_attention_on_its_own(self, tmp_path):
        x, padding, _ = _block_inputs()
        encoded = np.random.default_rng(1).normal(size=(2, 9, 12)).astype("float32")
        inputs = [keras.Input((6, 16)), keras.Input((9, 12)), keras.Input((6,), dtype="int32")]
        block = keras_hub.layers.TransformerDecoder(32, 4, name="decoder")
        outputs = block(inputs[0], inputs[1], decoder_padding_mask=inputs[2])
        model = tfl.prunable(keras.Model(inputs, outputs))
        _randomize_biases(model)
        self_heads, cross_heads = internal_groups(model, "heads")
        assert cross_heads.name == "decoder/cross_attention"
        masks = {}
        for wrapper in tfl.prune_wrappers(model):
            masks.update({(id(wrapper), i): m for i, m in enumerate(wrapper.get_masks())})
        switch_off(self_heads, np.array([0]), masks)
        switch_off(cross_heads, np.array([1, 2, 3]), masks)
        for wrapper in tfl.prune_wrappers(model):
            wrapper.set_masks([masks[(id(wrapper), i)] for i in range(len(wrapper.masks))])
        masked = _run(model, [x, encoded, padding])
        small = shrink(model)
        shrunk = small.get_layer("decoder")
        assert (shrunk.num_heads, shrunk.cross_attention_num_heads) == (3, 1)
        assert _max_diff(_run(small, [x, encoded, padding]), masked) <= 1e-5
        reloaded = _roundtrip(small, tmp_path)  # built again from both sequence shapes
        assert _max_diff(_run(reloaded, [x, encoded, padding]), masked) <= 1e-5
