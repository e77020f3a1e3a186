"""keras_hub transformers (small random-init configs, no download) are prunable,
keep their class and methods, train with their zeros held, and share one mask
between the two uses of a `ReversibleEmbedding` (input embedding and tied
output projection). Lottery tickets in pre-trained transformers: Chen et al.
2020, arXiv:2007.12223."""

import keras
import numpy as np
import pytest

import tf_lottery as tfl
from tests.testing import TestCase
from tf_lottery.core.walk import prune_wrappers

keras_hub = pytest.importorskip("keras_hub")

SEQ = 12
VOCAB = 50


def _tokens(with_segments=False, seed=0):
    rng = np.random.default_rng(seed)
    x = {
        "token_ids": rng.integers(1, VOCAB, (8, SEQ)).astype("int32"),
        "padding_mask": np.ones((8, SEQ), "int32"),
    }
    x["padding_mask"][:2, 9:] = 0
    if with_segments:
        x["segment_ids"] = np.zeros((8, SEQ), "int32")
    return x


def _violations(model) -> int:
    return tfl.sparsity_report(model).violations


def _train(model, x, y):
    # Eagerly: tracing a BERT's train step costs ~9 s of CPU here against ~2 s for its 4 eager
    # steps; keras_hub models train in graph mode in tests/lottery/test_bert_tickets.py.
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        run_eagerly=True,
    )
    model.fit(x, y, batch_size=4, epochs=2, verbose=0)


def _bert():
    return keras_hub.models.BertBackbone(
        vocabulary_size=VOCAB,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=SEQ,
    )


def _gpt2_lm():
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=VOCAB,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=SEQ,
    )
    return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)


def _gemma_lm():
    backbone = keras_hub.models.GemmaBackbone(
        vocabulary_size=VOCAB,
        num_layers=2,
        num_query_heads=2,
        num_key_value_heads=1,
        hidden_dim=16,
        intermediate_dim=32,
        head_dim=8,
    )
    return keras_hub.models.GemmaCausalLM(backbone=backbone, preprocessor=None)


class TestKerasHub(TestCase):
    def test_bert_text_classifier_keeps_its_class_and_outputs(self):
        model = keras_hub.models.BertTextClassifier(backbone=_bert(), num_classes=3, preprocessor=None)
        x = _tokens(with_segments=True)
        expected = np.asarray(model.predict(x, verbose=0))
        pruned = tfl.prunable(model)
        assert type(pruned) is keras_hub.models.BertTextClassifier
        kinds = {type(w.layer).__name__ for w in prune_wrappers(pruned)}
        assert {"Dense", "MultiHeadAttention", "ReversibleEmbedding", "Embedding"} <= kinds
        np.testing.assert_allclose(pruned.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
        tfl.prune(pruned, rate=0.5)
        _train(pruned, x, np.arange(8) % 3)
        assert _violations(pruned) == 0

    def test_functional_head_over_the_backbones_dict_output(self):
        backbone = _bert()
        pooled = backbone(backbone.input)["pooled_output"]  # a GetItem op in the graph
        model = keras.Model(backbone.input, keras.layers.Dense(3, name="head")(pooled))
        x = _tokens(with_segments=True)
        expected = model.predict(x, verbose=0)
        pruned = tfl.prunable(model)
        np.testing.assert_allclose(pruned.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
        tfl.prune(pruned, rate=0.5)
        _train(pruned, x, np.arange(8) % 3)
        assert _violations(pruned) == 0

    @pytest.mark.slow  # ~8 s each; BERT covers keras_hub in the default suite
    @pytest.mark.parametrize("factory", [_gpt2_lm, _gemma_lm], ids=["gpt2", "gemma"])
    def test_causal_lm_trains_with_one_mask_on_the_tied_embedding(self, factory):
        model = factory()
        cls = type(model)
        x = _tokens()
        expected = np.asarray(model.predict(x, verbose=0))
        pruned = tfl.prunable(model)
        assert type(pruned) is cls and pruned is model  # wrapped in place, methods kept
        np.testing.assert_allclose(pruned.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
        embedding = pruned.backbone.token_embedding
        assert isinstance(embedding, tfl.PruneWrapper)
        assert type(embedding.layer).__name__ == "ReversibleEmbedding"
        assert len(embedding.masks) == 1  # tie_weights: one matrix, one mask
        tfl.prune(pruned, rate=0.5)
        _train(pruned, x, x["token_ids"])
        assert _violations(pruned) == 0
        # The output projection is the masked matrix: logits = hidden @ E^T.
        (mask,) = embedding.get_masks()
        matrix = embedding.layer.embeddings.numpy()
        assert np.all(matrix[~mask] == 0.0) and np.count_nonzero(~mask) > 0
        hidden = pruned.backbone(x)
        logits = keras.ops.convert_to_numpy(embedding(hidden, reverse=True))
        np.testing.assert_allclose(
            logits, keras.ops.convert_to_numpy(hidden) @ matrix.T, rtol=1e-4, atol=1e-5
        )


def _greedy_generate(model, prompt, compile=True):
    if compile:
        # Without XLA: tracing is what failed; XLA would only add compile time.
        model.compile(sampler="greedy", jit_compile=False)
    return np.asarray(model.generate(prompt, stop_token_ids=None)["token_ids"])


class TestGenerate(TestCase):
    """`generate()` runs the wrappers (its cached attention is called with
    `cache_update_index=0` beside tensors) and matches the stripped model."""

    @pytest.mark.parametrize(
        "factory",
        [_gpt2_lm, _gemma_lm],
        ids=["gpt2", "gemma"],
    )
    @pytest.mark.slow  # ~15 s each (three traces of `generate`); the test below covers the cause cheaply
    def test_generate_after_prunable_and_after_prune_equals_the_stripped_model(self, factory):
        prompt = {
            "token_ids": np.array([[5, 6, 7] + [0] * (SEQ - 3), [9, 3, 0] + [0] * (SEQ - 3)], "int32"),
            "padding_mask": np.array([[1, 1, 1] + [0] * (SEQ - 3), [1, 1, 0] + [0] * (SEQ - 3)], bool),
        }
        pruned = tfl.prunable(factory())
        dense = _greedy_generate(pruned, prompt)
        np.testing.assert_array_equal(dense, _greedy_generate(tfl.strip(pruned), prompt))
        tfl.prune(pruned, rate=0.5)
        after_prune = _greedy_generate(pruned, prompt, compile=False)  # the traced function reads the masks
        np.testing.assert_array_equal(after_prune, _greedy_generate(tfl.strip(pruned), prompt))
        assert not np.array_equal(after_prune[:, 3:], dense[:, 3:])  # the masks took effect

    def test_the_wrapper_binds_arguments_as_its_layer_does(self):
        # What `generate()` does inside each decoder block: tensors and a Python
        # int in one call. Bound as one `**kwargs` dict, Keras refused the mix.
        attention = keras_hub.layers.CachedMultiHeadAttention(num_heads=2, key_dim=4)
        wrapper = tfl.PruneWrapper(attention)
        x = np.random.default_rng(0).normal(size=(1, 3, 8)).astype("float32")
        wrapper(query=x, value=x)
        cache = np.zeros((1, 2, 3, 2, 4), "float32")
        output, new_cache = wrapper(query=x, value=x, cache=cache, cache_update_index=0)
        expected, expected_cache = attention(query=x, value=x, cache=cache, cache_update_index=0)
        np.testing.assert_allclose(output, expected, rtol=1e-6)
        np.testing.assert_allclose(new_cache, expected_cache, rtol=1e-6)
