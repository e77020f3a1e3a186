"""`prunable` on the models users write: raw-op graphs, subclassed containers,
recurrent layers, Keras' own wrappers, weight tying, compiled models and
`tf.train.Checkpoint`. Each case failed (several silently) before the masks
issue; every test checks that pruned weights are exactly zero after training.
"""

import collections

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_lottery as tfl
from tests.testing import TestCase
from tf_lottery.core.walk import prune_wrappers

Pair = collections.namedtuple("Pair", ["first", "second"])


def _violations(model) -> int:
    """Positions where a mask says pruned but the weight is not 0.0."""
    count = 0
    for wrapper in prune_wrappers(model):
        for mask, weight in zip(wrapper.get_masks(), wrapper.pruned_weights):
            count += int(np.count_nonzero(np.asarray(weight.numpy())[~mask]))
    return count


def _pruned_count(model) -> int:
    return sum(int(np.count_nonzero(~m)) for w in prune_wrappers(model) for m in w.get_masks())


def _fit(model, x, y, epochs=2, **compile_kwargs):
    compile_kwargs.setdefault("optimizer", keras.optimizers.Adam(1e-2))
    compile_kwargs.setdefault("loss", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.compile(**compile_kwargs)
    model.fit(x, y, batch_size=16, epochs=epochs, verbose=0)


def _classification_data(shape, classes=3, n=64, integer_vocab=None, seed=0):
    rng = np.random.default_rng(seed)
    if integer_vocab:
        x = rng.integers(1, integer_vocab, (n, *shape)).astype("int32")
    else:
        x = rng.normal(size=(n, *shape)).astype("float32")
    return x, rng.integers(0, classes, n)


class TestRawOpGraphs(TestCase):
    def test_residual_with_plus_and_ops_relu(self):
        inputs = keras.Input((8,))
        hidden = keras.layers.Dense(8, name="d1")(inputs)
        hidden = keras.layers.Dense(8, name="d2")(hidden + inputs)
        hidden = keras.ops.relu(hidden) * 2.0
        model = keras.Model(inputs, keras.layers.Dense(3, name="head")(hidden))
        x, y = _classification_data((8,))
        pruned = tfl.prunable(model)
        assert sorted(w.layer.name for w in prune_wrappers(pruned)) == ["d1", "d2", "head"]
        np.testing.assert_allclose(pruned(x), model(x), rtol=1e-6)
        tfl.prune(pruned, rate=0.6)
        _fit(pruned, x, y)
        assert _pruned_count(pruned) > 0 and _violations(pruned) == 0

    def test_embedding_mask_zero_then_pooling(self):
        inputs = keras.Input((6,), dtype="int32")
        embedded = keras.layers.Embedding(20, 4, mask_zero=True, name="emb")(inputs)
        pooled = keras.layers.GlobalAveragePooling1D()(embedded)
        model = keras.Model(inputs, keras.layers.Dense(3)(pooled))
        x, y = _classification_data((6,), integer_vocab=20)
        x[:, 4:] = 0  # padding the mask must hide
        pruned = tfl.prunable(model)
        np.testing.assert_allclose(pruned(x), model(x), rtol=1e-6)
        tfl.prune(pruned, rate=0.5)
        _fit(pruned, x, y)
        assert _violations(pruned) == 0


class ContainersModel(keras.Model):
    def __init__(self):
        super().__init__()
        self.pair = (keras.layers.Dense(6, name="t0"), keras.layers.Dense(6, name="t1"))
        self.named = Pair(keras.layers.Dense(6, name="n0"), keras.layers.Dense(6, name="n1"))
        self.nested = {
            "a": [keras.layers.Dense(6, name="l0")],
            "b": {"c": keras.layers.Dense(3, name="head")},
        }

    def call(self, x):
        for layer in (*self.pair, *self.named, self.nested["a"][0]):
            x = layer(x)
        return self.nested["b"]["c"](x)


class SubModel(keras.Model):
    def __init__(self):
        super().__init__()
        self.d1 = keras.layers.Dense(16, activation="relu", name="d1")
        self.blocks = [keras.layers.Dense(16, activation="relu", name="b0")]
        self.d2 = keras.layers.Dense(3, name="d2")

    def call(self, x):
        return self.d2(self.blocks[0](self.d1(x)))


class TestSubclassedModels(TestCase):
    def test_tuples_named_tuples_and_nested_containers_are_wrapped(self):
        model = ContainersModel()
        x, y = _classification_data((6,))
        expected = model(x)
        tfl.prunable(model)
        assert sorted(w.layer.name for w in prune_wrappers(model)) == ["head", "l0", "n0", "n1", "t0", "t1"]
        assert isinstance(model.named, Pair)
        np.testing.assert_allclose(model(x), expected, rtol=1e-6)
        tfl.prune(model, rate=0.5)
        _fit(model, x, y)
        assert _violations(model) == 0

    def test_a_prunable_layer_it_cannot_reach_is_an_error(self):
        model = SubModel()
        model(np.zeros((1, 8), "float32"))
        hidden = keras.layers.Dense(2, name="hidden_away")
        hidden.build((None, 2))
        # Tracked by Keras (so it holds weights of the model) but held in no
        # attribute or container `prunable` can rewrite.
        model._tracker.unlock()
        model._tracker.add_to_store("layers", hidden)
        model._tracker.lock()
        with pytest.raises(
            ValueError, match=r"could not be wrapped: .*hidden_away.*`exclude`.*Nothing was changed"
        ):
            tfl.prunable(model)
        # Refused before wrapping anything: the model is as it was.
        assert not isinstance(model.d1, tfl.PruneWrapper) and not prune_wrappers(model)
        # Leaving it dense on purpose works.
        tfl.prunable(model, exclude=["hidden_away"])
        assert len(prune_wrappers(model)) == 3

    @pytest.mark.parametrize("factory", [SubModel, ContainersModel], ids=["attributes", "containers"])
    def test_tf_train_checkpoint_keeps_the_masks(self, factory, tmp_path):
        x, y = _classification_data((8,) if factory is SubModel else (6,))
        model = factory()
        model(x)
        tfl.prunable(model)
        tfl.prune(model, rate=0.7)
        pruned = _pruned_count(model)
        path = tf.train.Checkpoint(model=model).save(str(tmp_path / "c"))
        names = [name for name, _ in tf.train.list_variables(path)]
        assert sum("_masks" in name for name in names) == len(prune_wrappers(model))

        fresh = factory()
        fresh(x)
        tfl.prunable(fresh)
        tf.train.Checkpoint(model=fresh).restore(path).assert_existing_objects_matched()
        assert _pruned_count(fresh) == pruned
        for a, b in zip(model.weights, fresh.weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
        _fit(fresh, x, y)
        assert _violations(fresh) == 0

    def test_wrapping_after_fit_retraces_the_train_step(self):
        x, y = _classification_data((8,))
        model = SubModel()
        _fit(model, x, y, epochs=1)
        tfl.prunable(model)
        tfl.prune(model, rate=0.5)
        model.fit(x, y, batch_size=16, epochs=2, verbose=0)  # no recompile
        assert _pruned_count(model) > 0 and _violations(model) == 0

    def test_weight_tying_reads_through_the_wrapper(self):
        class Tied(keras.Model):
            def __init__(self):
                super().__init__()
                self.emb = keras.layers.Embedding(12, 4, name="emb")
                self.proj = keras.layers.Dense(4, name="proj")

            def call(self, x):
                hidden = self.proj(self.emb(x))
                return keras.ops.matmul(hidden, keras.ops.transpose(self.emb.embeddings))

        x = np.random.default_rng(0).integers(0, 12, (32, 5)).astype("int32")
        y = np.random.default_rng(1).integers(0, 12, (32, 5))
        model = Tied()
        expected = model(x)
        tfl.prunable(model)
        assert isinstance(model.emb, tfl.PruneWrapper)
        np.testing.assert_allclose(model(x), expected, rtol=1e-6)
        tfl.prune(model, rate=0.5)
        _fit(model, x, y)
        assert _violations(model) == 0


class TestRecurrentAndKerasWrappers(TestCase):
    @pytest.mark.parametrize(
        "recurrent",
        [
            lambda: keras.layers.LSTM(8, name="rnn"),
            pytest.param(lambda: keras.layers.GRU(8, name="rnn"), marks=pytest.mark.slow),
            pytest.param(lambda: keras.layers.SimpleRNN(8, name="rnn"), marks=pytest.mark.slow),
            pytest.param(
                lambda: keras.layers.RNN(
                    keras.layers.StackedRNNCells([keras.layers.LSTMCell(8), keras.layers.GRUCell(8)]),
                    name="rnn",
                ),
                marks=pytest.mark.slow,
            ),
            lambda: keras.layers.Bidirectional(keras.layers.LSTM(8), name="rnn"),
        ],
        ids=["lstm", "gru", "simple_rnn", "stacked_cells", "bidirectional"],
    )
    def test_language_model_shaped_network_holds_its_zeros(self, recurrent):
        inputs = keras.Input((7,), dtype="int32")
        hidden = keras.layers.Embedding(30, 8, mask_zero=True, name="emb")(inputs)
        hidden = recurrent()(hidden)
        model = keras.Model(inputs, keras.layers.Dense(30, name="head")(hidden))
        x, y = _classification_data((7,), classes=30, integer_vocab=30)
        x[:8, 5:] = 0
        pruned = tfl.prunable(model)
        np.testing.assert_allclose(pruned(x), model(x), rtol=1e-5, atol=1e-6)
        wrapper = next(w for w in prune_wrappers(pruned) if w.layer.name == "rnn")
        kernels = wrapper.pruned_weights
        assert {"kernel", "recurrent_kernel"} <= {w.name for w in kernels}
        layer = wrapper.layer
        two_cells = isinstance(layer, keras.layers.Bidirectional) or isinstance(
            getattr(layer, "cell", None), keras.layers.StackedRNNCells
        )
        assert len(kernels) == (4 if two_cells else 2)
        tfl.prune(pruned, rate=0.6)
        _fit(pruned, x, y)
        assert all(int(np.count_nonzero(~m)) > 0 for m in wrapper.get_masks())
        assert _violations(pruned) == 0

    @pytest.mark.slow
    def test_conv_lstm_kernels(self):
        model = keras.Sequential(
            [
                keras.Input((3, 8, 2)),
                keras.layers.ConvLSTM1D(4, 3, name="rnn"),
                keras.layers.Flatten(),
                keras.layers.Dense(3),
            ]
        )
        x, y = _classification_data((3, 8, 2))
        pruned = tfl.prunable(model)
        wrapper = next(w for w in prune_wrappers(pruned) if w.layer.name == "rnn")
        assert [w.name for w in wrapper.pruned_weights] == ["kernel", "recurrent_kernel"]
        tfl.prune(pruned, rate=0.5)
        _fit(pruned, x, y, epochs=1)
        assert _violations(pruned) == 0

    def test_time_distributed_and_bidirectional_train_and_save(self, tmp_path):
        inputs = keras.Input((5, 4))
        hidden = keras.layers.TimeDistributed(keras.layers.Dense(6), name="td")(inputs)
        hidden = keras.layers.Bidirectional(keras.layers.GRU(5), name="bi")(hidden)
        model = keras.Model(inputs, keras.layers.Dense(3, name="head")(hidden))
        x, y = _classification_data((5, 4))
        pruned = tfl.prunable(model)
        assert sorted(w.layer.name for w in prune_wrappers(pruned)) == ["bi", "head", "td"]
        tfl.prune(pruned, rate=0.5)
        _fit(pruned, x, y)
        assert _violations(pruned) == 0
        path = str(tmp_path / "m.keras")
        pruned.save(path)
        loaded = keras.models.load_model(path)
        np.testing.assert_allclose(loaded(x), pruned(x), rtol=1e-5, atol=1e-6)
        assert _pruned_count(loaded) == _pruned_count(pruned)

    def test_time_distributed_around_a_prune_wrapper(self):
        layer = keras.layers.TimeDistributed(tfl.PruneWrapper(keras.layers.Dense(6)))
        outputs = layer(np.ones((2, 5, 4), "float32"))
        assert tuple(outputs.shape) == (2, 5, 6)
        assert layer.compute_output_shape((None, 5, 4)) == (None, 5, 6)
