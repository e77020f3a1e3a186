"""DynamicSparseTraining speaks Keras: its values in `logs`, a config that round-trips or refuses clearly."""

import inspect

import keras
import pytest

import tf_lottery as tfl
from tests.testing import TestCase, compile_classifier, mlp, toy_data
from tf_lottery.pruning import distributions as sd
from tf_lottery.sparse_training.callback import DynamicSparseTraining


class TestDynamicSparseTrainingLogs(TestCase):
    def test_sparsity_and_rewiring_reach_history(self):
        model = tfl.prunable(mlp())
        sd.prune_to_distribution(model, 0.8, "erk", seed=0)
        compile_classifier(model, keras.optimizers.SGD(0.05))
        x, y = toy_data(128, 40, 10)
        callback = DynamicSparseTraining("set", delta_t=2, t_end=12, drop_fraction=0.3)
        history = model.fit(x, y, batch_size=32, epochs=4, callbacks=[callback], verbose=0).history
        assert history["dst_sparsity"] == pytest.approx([tfl.sparsity_report(model).sparsity] * 4)
        per_epoch = [
            sum(r["grown"] for r in callback.history if 4 * e < r["step"] <= 4 * (e + 1)) for e in range(4)
        ]
        assert history["dst_replaced"] == per_epoch and per_epoch[0] > 0 and per_epoch[-1] == 0
        fractions = history["dst_drop_fraction"]
        assert 0.0 < fractions[1] < fractions[0] <= 0.3 and fractions[-1] == 0.0


class TestDynamicSparseTrainingConfig:
    def test_the_config_holds_every_argument_but_data(self):
        callback = DynamicSparseTraining(
            "rigl",
            data=toy_data(32),
            gradient="drawn_batch",
            batch_size=8,
            drop_fraction=0.4,
            delta_t=10,
            t_end=0.5,
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            seed=2,
            verbose=1,
        )
        config = callback.get_config()
        assert set(config) == set(inspect.signature(DynamicSparseTraining.__init__).parameters) - {
            "self",
            "data",
            "initial_values",
        }
        clone = DynamicSparseTraining.from_config({**config, "data": toy_data(32)})
        assert isinstance(clone.loss, keras.losses.SparseCategoricalCrossentropy)
        assert clone.loss.get_config()["from_logits"] is True
        assert clone.get_config() == config

    def test_a_loss_by_name_round_trips(self):
        callback = DynamicSparseTraining("set", loss="mse")
        assert DynamicSparseTraining.from_config(callback.get_config()).loss == "mse"

    def test_a_loss_function_is_refused_by_get_config(self):
        # Was: it came back as None, silently the compiled loss instead.
        callback = DynamicSparseTraining("set", loss=keras.losses.mean_squared_error)
        with pytest.raises(ValueError, match=r"argument `loss` is a function, which a config cannot hold"):
            callback.get_config()

    def test_a_loss_of_another_type_is_refused_early(self):
        with pytest.raises(
            ValueError, match=r"`loss`: expected a loss name, a keras.losses.Loss.*Received: loss=3"
        ):
            DynamicSparseTraining("set", loss=3)
