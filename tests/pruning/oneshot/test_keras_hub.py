"""Wanda and SparseGPT on a keras_hub GPT-2 (tiny random config, no download): the masks then
serve reports, strip and fine-tuning unchanged."""

import keras
import numpy as np
import pytest

import tf_lottery as tfl
from tests.testing import TestCase, pruned_weights_are_zero

keras_hub = pytest.importorskip("keras_hub")

SEQ, VOCAB = 12, 50


def _gpt2_lm():
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=VOCAB,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=SEQ,
    )
    return tfl.prunable(keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None))


def _tokens(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "token_ids": rng.integers(1, VOCAB, (n, SEQ)).astype("int32"),
        "padding_mask": np.ones((n, SEQ), "int32"),
    }


def _assert_two_of_four(model, report):
    """2 of every 4 consecutive inputs alive per output (inputs: the kernel's contracted axes)."""
    for wrapper in tfl.prune_wrappers(model):
        for weight, mask in zip(wrapper.pruned_weights, wrapper.get_masks()):
            if weight.path in report.pruned:
                matrix = (
                    mask.reshape(16, 16) if "attention_output" in weight.path else mask.reshape(len(mask), -1)
                )
                assert (matrix.reshape(-1, 4, matrix.shape[1]).sum(axis=1) == 2).all(), weight.path


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
    return tfl.prunable(keras_hub.models.GemmaCausalLM(backbone=backbone, preprocessor=None))


def _bert_classifier():
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=VOCAB,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=SEQ,
    )
    return tfl.prunable(
        keras_hub.models.BertTextClassifier(backbone=backbone, num_classes=3, preprocessor=None)
    )


class TestOtherTransformers(TestCase):
    @pytest.mark.parametrize(
        "factory, segments, skipped",
        [
            (_gemma_lm, False, ["token_embedding/embeddings"]),
            (_bert_classifier, True, ["token_embedding/embeddings", "segment_embedding/embeddings"]),
        ],
        ids=["gemma_causal_lm", "bert_text_classifier"],
    )
    def test_sparsegpt_prunes_every_projection_at_the_asked_sparsity(self, factory, segments, skipped):
        model = factory()
        x = _tokens(8)
        if segments:
            x["segment_ids"] = np.zeros_like(x["token_ids"])
        report = tfl.oneshot.sparsegpt(model, x, 0.5)
        assert list(report.skipped) == skipped
        assert len(report.pruned) == 14 and all(v == 0.5 for v in report.pruned.values())
        assert tfl.sparsity_report(model).violations == 0


class TestGPT2(TestCase):
    def test_wanda_two_four(self):
        model = _gpt2_lm()
        report = tfl.oneshot.wanda(model, _tokens(8), 0.5, structure="2:4")
        _assert_two_of_four(model, report)
        assert len(report.pruned) == 12 and tfl.sparsity_report(model).violations == 0

    @pytest.mark.slow
    @pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
    def test_two_four_on_every_projection_then_report_strip_and_fit(self, method):
        model = _gpt2_lm()
        x = _tokens()
        report = getattr(tfl.oneshot, method)(model, x, 0.5, structure="2:4", batch_size=8)
        assert len(report.pruned) == 12  # q, k, v, attention output, 2 feed-forward kernels per block
        assert list(report.skipped) == ["token_embedding/embeddings"]
        _assert_two_of_four(model, report)
        summary = tfl.sparsity_report(model)
        assert summary.violations == 0
        before = keras.ops.convert_to_numpy(model(x))
        stripped = tfl.strip(model)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(stripped(x)), before, atol=1e-5)
        model.compile(
            optimizer=keras.optimizers.Adam(1e-2),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        model.fit(x, x["token_ids"], batch_size=8, epochs=1, verbose=0)
        assert pruned_weights_are_zero(model)
        assert tfl.sparsity_report(model).violations == 0
