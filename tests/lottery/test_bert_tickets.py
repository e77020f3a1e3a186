"""BERT tickets (Chen et al. 2020, arXiv:2007.12223): IMP on a keras_hub BERT classifier whose
encoder was pre-trained, rewinding every round to the pre-trained weights (the head to its own
initialisation), and one-shot Wanda / SparseGPT masks seeding it. Tiny configs, no download: the
"pre-trained" encoder is a random-init one trained a few eager steps of masked LM here."""

import warnings

import keras
import numpy as np
import pytest

import tf_lottery as tfl
from tests.testing import RoundStartProbe, TestCase, pruned_weights_are_zero
from tf_lottery.core.walk import model_variables
from tf_lottery.pruning.pruner import exact_count

keras_hub = pytest.importorskip("keras_hub")

VOCAB, SEQ, N = 40, 12, 64
# Chen et al. prune the encoder's linear layers (and, in their code, the pooler): not the
# embeddings, not the classifier.
EXCLUDE = ["token_embedding", "segment_embedding", "logits"]
PRUNED = {
    f"transformer_layer_{i}/{name}/kernel"
    for i in range(2)
    for name in (
        "self_attention_layer/query",
        "self_attention_layer/key",
        "self_attention_layer/value",
        "self_attention_layer/attention_output",
        "feedforward_intermediate_dense",
        "feedforward_output_dense",
    )
} | {"pooled_dense/kernel"}
TOTAL = 2 * (4 * 16 * 16 + 2 * 16 * 32) + 16 * 16  # the pruned weights: 4,352


def _backbone():
    return keras_hub.models.BertBackbone(
        vocabulary_size=VOCAB,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=SEQ,
    )


def _tokens(seed=0):
    tokens = np.random.default_rng(seed).integers(3, VOCAB, (N, SEQ)).astype("int32")
    return {"token_ids": tokens, "padding_mask": np.ones_like(tokens), "segment_ids": np.zeros_like(tokens)}


@pytest.fixture(scope="module")
def pretrained():
    """Pre-trained backbone weights (4 eager steps of masked LM), and the paths they changed."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    backbone = _backbone()
    init = {v.path: v.numpy().copy() for v in backbone.weights}
    rng = np.random.default_rng(1)
    tokens = rng.integers(3, VOCAB, (N, SEQ)).astype("int32")
    positions = np.stack([rng.choice(SEQ, 2, replace=False) for _ in range(N)]).astype("int32")
    masked = tokens.copy()
    np.put_along_axis(masked, positions, 0, axis=1)
    mlm = keras_hub.models.BertMaskedLM(backbone, preprocessor=None)
    mlm.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        run_eagerly=True,  # 4 steps: cheaper than tracing a train step
    )
    x = {
        "token_ids": masked,
        "padding_mask": np.ones_like(masked),
        "segment_ids": np.zeros_like(masked),
        "mask_positions": positions,
    }
    with warnings.catch_warnings():  # "Gradients do not exist" for the pooler: MLM does not use it
        warnings.filterwarnings("ignore", message="Gradients do not exist")
        mlm.fit(x, np.take_along_axis(tokens, positions, axis=1), batch_size=16, epochs=1, verbose=0)
    weights = backbone.get_weights()
    changed = {v.path for v in backbone.weights if not np.array_equal(v.numpy(), init[v.path])}
    keras.backend.clear_session()
    return weights, changed


def _classifier(weights):
    """A prunable BERT classifier: the backbone holds `weights`, the head is freshly initialised."""
    backbone = _backbone()
    backbone.set_weights(weights)
    model = keras_hub.models.BertTextClassifier(backbone, num_classes=2, preprocessor=None)
    model = tfl.prunable(model, exclude=EXCLUDE)
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def _fit(model, lottery, rounds, epochs_per_round=2):
    """The downstream task: is the first token even? (the pooled output reads that position)."""
    x = _tokens()
    y = (x["token_ids"][:, 0] % 2).astype("int32")
    probe = RoundStartProbe(epochs_per_round)
    history = model.fit(
        x, y, batch_size=16, epochs=rounds * epochs_per_round, callbacks=[lottery, probe], verbose=0
    )
    return probe.starts, history.history["loss"]


def _names(model):
    return [v.path for v in model_variables(model)]


def _pruned_paths(model):
    return {w.path for wr in tfl.prune_wrappers(model) for w in wr.pruned_weights}


def _assert_rewound(starts, expected, model):
    """Each round starts from `expected` (every variable) times its mask, bit for bit."""
    index = {id(v): i for i, v in enumerate(model_variables(model))}
    pruned = [index[id(w)] for wr in tfl.prune_wrappers(model) for w in wr.pruned_weights]
    for r, start in enumerate(starts):
        masks = dict(zip(pruned, start["masks"]))
        for i, (value, want) in enumerate(zip(start["values"], expected)):
            want = np.where(masks[i], want, 0.0) if i in masks else want
            np.testing.assert_array_equal(value, want, err_msg=f"round {r}: {_names(model)[i]}")


def _assert_masks_shrink(starts):
    for before, after in zip(starts, starts[1:]):
        assert all(np.all(a <= b) for a, b in zip(after["masks"], before["masks"]))


class TestBertTickets(TestCase):
    def test_imp_rewinds_the_encoder_to_its_pretrained_weights(self, pretrained):
        weights, changed = pretrained
        model = _classifier(weights)
        assert _pruned_paths(model) == PRUNED  # encoder linear layers + pooler; no embedding, no head
        expected = [v.numpy().copy() for v in model_variables(model)]  # pre-trained + the head's init
        head = model.get_layer("logits").kernel.numpy().copy()
        lottery = tfl.LotteryCallback(rounds=3, pruning_rate=0.1, monitor="loss", verbose=0)
        starts, losses = _fit(model, lottery, rounds=3)

        _assert_rewound(starts, expected, model)
        # The rewind target is the pre-trained encoder, not its random init (they differ) ...
        assert PRUNED - {"pooled_dense/kernel"} <= changed  # (masked LM does not train the pooler)
        # ... and the head goes back to its own initialisation each round.
        head_index = next(i for i, n in enumerate(_names(model)) if n == "logits/kernel")
        assert all(np.array_equal(s["values"][head_index], head) for s in starts)
        # Not the fine-tuned values: training moved the surviving weights away from the round starts.
        index = _names(model).index("transformer_layer_0/self_attention_layer/query/kernel")
        trained = model_variables(model)[index].numpy()
        assert not np.array_equal(trained, starts[-1]["values"][index])
        _assert_masks_shrink(starts)
        # 10% of the surviving encoder weights per round, global, exact counts.
        alive = [TOTAL]
        for _ in range(2):
            alive.append(alive[-1] - exact_count(0.1, alive[-1]))
        assert [sum(int(m.sum()) for m in s["masks"]) for s in starts] == alive
        assert [r["percent_remaining"] for r in lottery.history] == pytest.approx(
            [100 * a / TOTAL for a in alive]
        )
        assert pruned_weights_are_zero(model)
        # Every round learns the task: its second epoch's loss is below its first.
        assert all(losses[2 * r + 1] < losses[2 * r] for r in range(3)), losses

    @pytest.mark.slow  # a one-shot pass and a 3-round fit of BERT: ~30 s each on a busy 2-core machine
    @pytest.mark.parametrize("method", ["wanda", "sparsegpt", "sparsegpt_original_weights"])
    def test_oneshot_masks_seed_imp_from_the_pretrained_weights(self, pretrained, method):
        weights, _ = pretrained
        model = _classifier(weights)
        pretrained_values = tfl.Snapshot.capture(model, 0)
        report = getattr(tfl.oneshot, method.removesuffix("_original_weights"))(model, _tokens(seed=5), 0.5)
        assert {p for p in report.pruned} == PRUNED and not report.skipped
        seed = [m for wr in tfl.prune_wrappers(model) for m in wr.get_masks()]
        if method == "sparsegpt_original_weights":
            # SparseGPT's masks with the pre-trained values (not its updated ones) as the rewind target.
            pretrained_values.restore_weights(model)
        at_fit_start = [v.numpy().copy() for v in model_variables(model)]
        lottery = tfl.LotteryCallback(rounds=3, target_sparsity=0.75, monitor="loss", verbose=0)
        starts, losses = _fit(model, lottery, rounds=3)

        # Round 0 trains the seed; every later round keeps within it (masks only shrink).
        assert all(np.array_equal(a, b) for a, b in zip(starts[0]["masks"], seed))
        _assert_masks_shrink(starts)
        # The rounds share what is left from 50% to 75%, exact counts.
        alive = [sum(int(m.sum()) for m in seed)]
        assert alive[0] == TOTAL // 2
        rate = tfl.rate_per_round(0.75, 2, start_sparsity=0.5)
        alive.append(alive[0] - exact_count(rate, alive[0]))
        alive.append(TOTAL - exact_count(0.75, TOTAL))
        assert [sum(int(m.sum()) for m in s["masks"]) for s in starts] == alive
        # Each round rewinds to the weights fit() started from ...
        _assert_rewound(starts, at_fit_start, model)
        # ... which are the pre-trained values (Wanda updates no weight; the original-weights
        # variant restored them), or SparseGPT's reconstruction of them under its mask.
        survivors = _survivors(model, at_fit_start, pretrained_values.model_values, seed)
        assert survivors == (method != "sparsegpt"), method
        assert pruned_weights_are_zero(model)
        assert all(losses[2 * r + 1] < losses[2 * r] for r in range(3)), losses

    @pytest.mark.slow  # another BERT fit: ~30 s on a busy 2-core machine
    def test_imp_through_the_preprocessor_on_raw_strings(self, pretrained):
        # What docs/BERT_TICKETS.md relies on for `BertTextClassifier.from_preset(...)`: the
        # classifier keeps its preprocessor and trains on strings, wrapped and pruned.
        weights, _ = pretrained
        vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(VOCAB - 5)]
        preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
            keras_hub.models.BertTokenizer(vocabulary=vocabulary), sequence_length=SEQ
        )
        backbone = _backbone()
        backbone.set_weights(weights)
        classifier = keras_hub.models.BertTextClassifier(backbone, num_classes=2, preprocessor=preprocessor)
        model = tfl.prunable(classifier, exclude=EXCLUDE)
        assert model.preprocessor is preprocessor and _pruned_paths(model) == PRUNED
        rng = np.random.default_rng(0)
        words = rng.integers(0, VOCAB - 5, (N, SEQ - 2))
        texts = [" ".join(f"w{i}" for i in row) for row in words]
        model.compile(
            optimizer=keras.optimizers.Adam(3e-3),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        expected = [v.numpy().copy() for v in model_variables(model)]
        lottery = tfl.LotteryCallback(rounds=2, pruning_rate=0.1, monitor="loss", verbose=0)
        probe = RoundStartProbe(epochs_per_round=1)
        model.fit(texts, words[:, 0] % 2, batch_size=16, epochs=2, callbacks=[lottery, probe], verbose=0)
        _assert_rewound(probe.starts, expected, model)
        assert sum(int(m.sum()) for m in probe.starts[1]["masks"]) == TOTAL - exact_count(0.1, TOTAL)
        assert model.predict(texts[:3], verbose=0).shape == (3, 2)


def _survivors(model, values, pretrained, masks) -> bool:
    """Whether every alive pruned weight in `values` equals its pre-trained value."""
    index = {id(v): i for i, v in enumerate(model_variables(model))}
    pruned = [index[id(w)] for wr in tfl.prune_wrappers(model) for w in wr.pruned_weights]
    return all(np.array_equal(values[i][m], pretrained[i][m]) for i, m in zip(pruned, masks))


class TestBertControls(TestCase):
    def test_the_reinit_control_draws_every_bert_weight_afresh(self, pretrained):
        # Was: "Cannot reinitialize 'position_embedding/embeddings'": keras_hub's PositionEmbedding
        # keeps its initializer as `initializer`, not `embeddings_initializer`.
        weights, _ = pretrained
        model = _classifier(weights)
        tfl.prune(model, rate=0.5)
        masks = [m for wr in tfl.prune_wrappers(model) for m in wr.get_masks()]
        before = {v.path: v.numpy().copy() for v in model_variables(model)}
        tfl.reinitialize(model, seed=1)
        after = {v.path: v.numpy() for v in model_variables(model)}
        drawn = {p for p in before if not np.array_equal(before[p], after[p])}
        # Every random matrix is new; constants (zero biases, unit gammas) are drawn as they were.
        assert {p for p in before if p.endswith(("kernel", "embeddings"))} <= drawn
        assert "position_embedding/embeddings" in drawn
        assert all(
            np.array_equal(a, b)
            for a, b in zip(masks, [m for wr in tfl.prune_wrappers(model) for m in wr.get_masks()])
        )
        assert pruned_weights_are_zero(model)

    @pytest.mark.slow  # two 3-round fits of BERT: ~1 min on a busy 2-core machine
    def test_the_reinit_control_trains_the_tickets_masks_from_fresh_weights(self, pretrained):
        # Chen et al.'s random-reinitialisation baseline: IMP's masks, the pre-trained weights redrawn.
        weights, _ = pretrained
        ticket_run = tfl.LotteryCallback(rounds=3, pruning_rate=0.1, monitor="loss", verbose=0)
        _fit(_classifier(weights), ticket_run, rounds=3)
        model = _classifier(weights)
        at_fit_start = {v.path: v.numpy().copy() for v in model_variables(model)}
        control = tfl.LotteryCallback(
            rounds=3, pruning_rate=0.1, retrain="reinit", ticket_masks=ticket_run, monitor="loss", verbose=0
        )
        starts, losses = _fit(model, control, rounds=3)
        names = _names(model)
        for r in (1, 2):
            assert all(
                np.array_equal(a, b) for a, b in zip(starts[r]["masks"], ticket_run.round_masks[r - 1])
            )
            for name, value in zip(names, starts[r]["values"]):
                if name in PRUNED or name.endswith("embeddings"):
                    assert not np.array_equal(value, at_fit_start[name]), (r, name)
        assert pruned_weights_are_zero(model)
        assert all(losses[2 * r + 1] < losses[2 * r] for r in range(3)), losses
