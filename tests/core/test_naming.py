"""Every weight has one unique, path-like name (`tf_lottery.core.naming`), used by the
sparsity report, TensorBoard summaries and tickets. In a transformer the short
`<layer>/<weight>` names repeat: 13 pruned weights of a 2-block GPT-2 had 4."""

import os

import keras
import numpy as np
import pytest

import tf_lottery as tfl
from tests.testing import TestCase
from tf_lottery.core.naming import pruned_weight_names, weight_names
from tf_lottery.lottery.summaries import LotterySummaries

keras_hub = pytest.importorskip("keras_hub")

GPT2_PRUNED = [
    "gpt2_backbone/token_embedding/embeddings",
    *[
        f"gpt2_backbone/transformer_layer_{block}/{weight}/kernel"
        for block in (0, 1)
        for weight in (
            "self_attention/query",
            "self_attention/key",
            "self_attention/value",
            "self_attention/attention_output",
            "feedforward_intermediate_dense",
            "feedforward_output_dense",
        )
    ],
]


def _gpt2_lm():
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=50,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=12,
    )
    return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)


def _tokens():
    rng = np.random.default_rng(0)
    return {
        "token_ids": rng.integers(1, 50, (8, 12)).astype("int32"),
        "padding_mask": np.ones((8, 12), "int32"),
    }


def _summary_tags(run_dir):
    from tensorboard.backend.event_processing import event_accumulator

    accumulator = event_accumulator.EventAccumulator(run_dir, size_guidance={event_accumulator.TENSORS: 0})
    accumulator.Reload()
    return accumulator.Tags()["tensors"]


class Twins(keras.Model):
    """Two sub-layers a subclassed model gave the same name."""

    def __init__(self):
        super().__init__()
        self.first = keras.layers.Dense(4, name="twin")
        self.second = keras.layers.Dense(4, name="twin")

    def call(self, x):
        return self.second(self.first(x))


class TestGpt2Names(TestCase):
    def test_report_rows_have_13_distinct_path_names(self):
        model = tfl.prunable(_gpt2_lm())
        report = tfl.sparsity_report(model)
        assert len(report.layers) == 13
        assert len({(e.layer, e.weight) for e in report.layers}) == 4  # the short names collide
        assert [e.name for e in report.layers] == GPT2_PRUNED
        assert all(e.name in str(report) for e in report.layers)
        # The same names after `strip` (wrappers are transparent) and from the helper.
        assert pruned_weight_names(model) == GPT2_PRUNED
        assert [e.name for e in tfl.sparsity_report(tfl.strip(model)).layers] == GPT2_PRUNED

    def test_ticket_mask_names_are_distinct_and_old_files_still_load(self, tmp_path):
        model = tfl.prunable(_gpt2_lm())
        tfl.prune(model, rate=0.5)
        ticket = tfl.Ticket.from_model(model)
        assert ticket.mask_names == GPT2_PRUNED
        # A ticket written with the old repeating names loads and applies.
        old = tfl.Ticket(
            masks=ticket.masks, mask_names=["token_embedding/embeddings"] + ["self_attention/kernel"] * 12
        )
        path = str(tmp_path / "old.npz")
        old.save(path)
        target = tfl.prunable(_gpt2_lm())
        tfl.Ticket.load(path).apply(target)
        assert tfl.sparsity_report(target).sparsity == pytest.approx(tfl.sparsity_report(model).sparsity)

    def test_summaries_write_one_tag_per_weight(self, tmp_path):
        model = tfl.prunable(_gpt2_lm())
        tfl.prune(model, rate=0.5)
        lottery = tfl.LotteryCallback(rounds=1, pruning_rate=0.5, verbose=0)
        log_dir = str(tmp_path / "logs")
        summaries = LotterySummaries(lottery, log_dir)
        # Driven as `fit` drives it (a GPT-2 fit costs 10 s of tracing here).
        summaries.set_model(model)
        summaries.on_train_begin()
        summaries.on_epoch_begin(0)
        summaries.on_train_end()
        tags = _summary_tags(os.path.join(log_dir, "pruning"))
        for kind in ("layer_sparsity", "dead_units", "alive_per_unit", "weights"):
            assert sorted(t for t in tags if t.startswith(kind + "/")) == sorted(
                f"{kind}/{n}" for n in GPT2_PRUNED
            )


class TestNames(TestCase):
    def test_sequential_names_are_the_short_names(self):
        model = tfl.prunable(
            keras.Sequential(
                [keras.Input((3,)), keras.layers.Dense(4, name="a"), keras.layers.Dense(2, name="b")]
            )
        )
        assert pruned_weight_names(model) == ["a/kernel", "b/kernel"]
        names = sorted(weight_names(model).values())
        assert names == ["a/bias", "a/kernel", "a/kernel_mask", "b/bias", "b/kernel", "b/kernel_mask"]

    def test_names_survive_a_keras_file_round_trip(self, tmp_path):
        inputs = keras.Input((3,))
        inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, name="d")], name="inner")
        outputs = keras.layers.Dense(2, name="d")(inner(keras.layers.Dense(4, name="stem")(inputs)))
        model = tfl.prunable(keras.Model(inputs, outputs))
        names = pruned_weight_names(model)
        assert names == ["stem/kernel", "inner/d/kernel", "d/kernel"]
        path = str(tmp_path / "model.keras")
        model.save(path)
        keras.backend.clear_session()
        assert pruned_weight_names(keras.models.load_model(path)) == names

    def test_layers_with_the_same_name_get_distinct_names(self):
        model = Twins()
        model(np.zeros((1, 3), "float32"))
        tfl.prunable(model)
        assert pruned_weight_names(model) == ["twin/kernel", "twin/kernel_1"]
        assert len(set(weight_names(model).values())) == len(model.weights)

    def test_lottery_history_keeps_every_weight_under_its_unique_name(self):
        model = Twins()
        model(np.zeros((1, 3), "float32"))
        tfl.prunable(model)
        model.compile(optimizer="sgd", loss="mse")
        lottery = tfl.LotteryCallback(rounds=2, pruning_rate=0.5, verbose=0)
        x = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
        model.fit(x, x[:, :1].repeat(4, axis=1), epochs=2, batch_size=4, callbacks=[lottery], verbose=0)
        for record in lottery.history:
            assert sorted(record["layers"]) == ["twin/kernel", "twin/kernel_1"]
        # Global pruning: the two rows' pruned counts (12 and 16 weights) add up to half of 28.
        layers = lottery.history[1]["layers"]
        assert layers["twin/kernel"] * 12 + layers["twin/kernel_1"] * 16 == pytest.approx(14)
