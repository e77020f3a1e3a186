"""Block-wise calibration: the same masks and weights as rerunning the whole model for every step,
with each block evaluated a few times instead of once per later step; q/k/v statistics computed once."""

import importlib

import keras
import numpy as np
import pytest

import tf_lottery as tfl
from tests.pruning.oneshot import reference
from tests.pruning.oneshot.helpers import correlated_inputs
from tests.testing import TestCase

blockwise = importlib.import_module("tf_lottery.pruning.oneshot.blockwise")
calibration = importlib.import_module("tf_lottery.pruning.oneshot.calibration")


def _functional(seed=0):
    """Two branches, a residual add, a nested Sequential and a chain: blocks of one Dense each."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((16,))
    a = keras.layers.Dense(16, activation="relu", name="a")(inputs)
    b = keras.layers.Dense(16, activation="tanh", name="b")(inputs)
    h = keras.layers.Add()([a, b, inputs])
    h = keras.Sequential(
        [keras.Input((16,)), keras.layers.Dense(16, activation="relu", name="c")], name="inner"
    )(h)
    outputs = keras.layers.Dense(8, name="d")(keras.layers.Concatenate()([h, a]))
    return tfl.prunable(keras.Model(inputs, outputs))


def _chain(depth=4):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16,))
    h = inputs
    for i in range(depth):
        h = keras.layers.Dense(16, activation="relu", name=f"dense_{i}")(h)
    return tfl.prunable(keras.Model(inputs, h))


def _state(model):
    return [
        (w.numpy().copy(), m.copy())
        for wr in tfl.prune_wrappers(model)
        for w, m in zip(wr.pruned_weights, wr.get_masks())
    ]


def _both_paths(factory, method, x, monkeypatch, **kwargs):
    """(state, report) block by block, then with the block plan refused (the whole model per step)."""
    model = factory()
    blockwise_report = getattr(tfl.oneshot, method)(model, x, **kwargs)
    blockwise_state = _state(model)
    with monkeypatch.context() as patch:
        patch.setattr(blockwise, "plan", lambda model, wrappers: "refused by the test")
        model = factory()
        rerun_report = getattr(tfl.oneshot, method)(model, x, **kwargs)
    return (blockwise_state, blockwise_report), (_state(model), rerun_report)


def _assert_same(blockwise_state, rerun_state, atol):
    assert len(blockwise_state) == len(rerun_state)
    for (w0, m0), (w1, m1) in zip(blockwise_state, rerun_state):
        np.testing.assert_array_equal(m0, m1)
        np.testing.assert_allclose(w0, w1, atol=atol, rtol=0)


class TestBlockwise(TestCase):
    @pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
    def test_functional_model_matches_the_whole_model_rerun(self, method, monkeypatch):
        x = correlated_inputs(n=80)
        (state, report), (rerun_state, rerun_report) = _both_paths(
            _functional, method, x, monkeypatch, sparsity=0.5, batch_size=32
        )
        assert report.calibration == "block by block (4 blocks)"  # a, b, inner/c, d
        assert rerun_report.calibration == "the whole model rerun for every step: refused by the test"
        assert report.pruned == rerun_report.pruned and len(report.pruned) == 4
        _assert_same(state, rerun_state, atol=1e-6)

    def test_each_block_runs_a_bounded_number_of_times(self):
        model = _chain(depth=4)
        first = tfl.prune_wrappers(model)[0].layer
        seen = []
        original = first.call

        def counting(*args, **kwargs):
            seen.append(1)
            return original(*args, **kwargs)

        first.call = counting
        tfl.oneshot.wanda(model, correlated_inputs(n=64), 0.5, batch_size=32)
        del first.call
        # 2 batches: probe (1) + its own step (2) + its pruned outputs (2); the rerun path
        # ran it again for each of the 3 later steps (1 + 4 * 2 = 9 calls).
        assert len(seen) == 5

    def test_subclassed_model_reruns_the_whole_model_and_says_why(self, capsys):
        class Net(keras.Model):
            def __init__(self):
                super().__init__()
                self.first = keras.layers.Dense(16, activation="tanh")
                self.second = keras.layers.Dense(8)

            def call(self, x):
                return self.second(self.first(x))

        model = Net()
        model(np.zeros((1, 16), "float32"))
        model = tfl.prunable(model)
        report = tfl.oneshot.wanda(model, correlated_inputs(), 0.5, verbose=1)
        assert report.calibration.startswith("the whole model rerun for every step: ")
        assert "with its own `call`" in report.calibration
        assert capsys.readouterr().out.startswith(f"wanda: calibration {report.calibration}\n")

    def test_a_layer_called_from_two_places_falls_back(self):
        inputs = keras.Input((16,))
        shared = keras.layers.Dense(16, activation="relu", name="shared")
        outputs = keras.layers.Dense(8, name="head")(shared(shared(inputs)))
        model = tfl.prunable(keras.Model(inputs, outputs))
        report = tfl.oneshot.wanda(model, correlated_inputs(), 0.5)
        assert "'prune_shared'" in report.calibration and "from 2 places" in report.calibration
        assert len(report.pruned) == 2


keras_hub = pytest.importorskip("keras_hub")

SEQ, VOCAB = 16, 64


def _gpt2(seed=0):
    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=VOCAB,
        num_layers=2,
        num_heads=2,
        hidden_dim=64,
        intermediate_dim=128,
        max_sequence_length=SEQ,
    )
    return tfl.prunable(keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None))


def _tokens(n=12, seed=0):
    rng = np.random.default_rng(seed)
    mask = np.ones((n, SEQ), "int32")
    mask[::3, SEQ // 2 :] = 0  # some padded sequences: the blocks must get the padding mask
    return {"token_ids": rng.integers(1, VOCAB, (n, SEQ)).astype("int32"), "padding_mask": mask}


class TestGPT2Blockwise(TestCase):
    @pytest.mark.slow  # 30 s; the block walk on GPT-2 is checked by TestWithinABlock in the default suite
    @pytest.mark.parametrize("method, structure", [("sparsegpt", None), ("wanda", "2:4")])
    def test_tiny_gpt2_matches_the_whole_model_rerun(self, method, structure, monkeypatch):
        (state, report), (rerun_state, _) = _both_paths(
            _gpt2,
            method,
            _tokens(),
            monkeypatch,
            sparsity=0.5,
            structure=structure,
            batch_size=8,
            true_sequential=True,
        )
        assert report.calibration == "block by block (2 blocks)"  # transformer_layer_0 and _1
        assert len(report.pruned) == 12
        _assert_same(state, rerun_state, atol=1e-6)

    def test_query_key_and_value_share_one_gram_matrix(self, monkeypatch):
        computed = []
        original = calibration.statistics

        def counting(view, x, gram):
            computed.append(view.inputs)
            return original(view, x, gram)

        monkeypatch.setattr(calibration, "statistics", counting)
        report = tfl.oneshot.sparsegpt(_gpt2(), _tokens(8), 0.5, batch_size=8)
        assert len(report.pruned) == 12
        # Per block and batch: q/k/v (one input, once), attention output, 2 feed-forward kernels.
        assert computed == [64, 64, 64, 128] * 2


def _ffn_output_inputs(model, block=0):
    """What block `block`'s feed-forward output kernel reads, over `_tokens()`, in `model` as it is."""
    wrapper = [w for w in tfl.prune_wrappers(model) if w.name == "prune_feedforward_output_dense"][block]
    seen = []
    original = wrapper.layer.call

    def hooked(x, *args, **kwargs):
        seen.append(keras.ops.convert_to_numpy(x))
        return original(x, *args, **kwargs)

    wrapper.layer.call = hooked
    try:
        model(_tokens(), training=False)
    finally:
        del wrapper.layer.call
    x = np.concatenate(seen)
    return wrapper, x.reshape(-1, x.shape[-1])


class TestWithinABlock(TestCase):
    """The layers of one block: all calibrated on the unpruned block (the references' loop), or each
    on the block with its earlier layers pruned (`true_sequential`)."""

    def test_feed_forward_output_mask_from_the_block_as_the_option_says(self):
        # Wanda updates no weight, so the dense model's kernel is the one both runs score.
        wrapper, dense_inputs = _ffn_output_inputs(_gpt2())
        kernel = keras.ops.convert_to_numpy(wrapper.pruned_weights[0])
        masks = {}
        for true_sequential in (False, True):
            model = _gpt2()
            tfl.oneshot.wanda(model, _tokens(), 0.5, batch_size=8, true_sequential=true_sequential)
            # The kernel's own mask does not change what it reads: these are the inputs
            # of the block with its attention and first feed-forward kernel pruned.
            wrapper, pruned_inputs = _ffn_output_inputs(model)
            masks[true_sequential] = np.asarray(wrapper.get_masks()[0], bool)
            inputs = pruned_inputs if true_sequential else dense_inputs
            np.testing.assert_array_equal(masks[true_sequential], ~reference.wanda(kernel.T, inputs, 0.5).T)
        # The two ways differ on this model, so the checks above tell them apart.
        assert (masks[False] != masks[True]).sum() > 0

    def test_each_transformer_block_runs_twice_per_batch(self):
        model = _gpt2()
        counts = {}
        blocks = [layer for layer in model.backbone.layers if layer.name.startswith("transformer_layer")]
        for layer in blocks:
            original = layer.call

            def counting(*args, _name=layer.name, _original=original, **kwargs):
                counts[_name] = counts.get(_name, 0) + 1
                return _original(*args, **kwargs)

            layer.call = counting
        try:
            tfl.oneshot.wanda(model, _tokens(), 0.5, batch_size=6)  # 12 sequences: 2 batches
        finally:
            for layer in blocks:
                del layer.call
        # The probe (1 call), the capture pass and the pruned pass (2 batches each); the last
        # block's pruned pass is skipped (nothing after it has steps). true_sequential: 3 + 1 passes.
        assert counts == {"transformer_layer_0": 5, "transformer_layer_1": 3}
