"""LotteryCallback speaks Keras: `mode` like EarlyStopping, round values in `logs`, a config that round-trips."""

import csv
import inspect
import warnings

import keras
import numpy as np
import pytest

import tf_lottery as tfl
from tests.testing import TestCase, compile_classifier, mlp, pruned_weights_are_zero, toy_data
from tf_lottery.lottery.callback import monitor_direction


class _Scripted(keras.callbacks.Callback):
    """Sets `logs[key]` to the next scripted value at each epoch end (listed before the lottery)."""

    def __init__(self, key, values):
        super().__init__()
        self.key, self.values = key, list(values)

    def on_epoch_end(self, epoch, logs=None):
        logs[self.key] = self.values[epoch]


class _NoValidationLossIsTiny(keras.callbacks.Callback):
    """Sets `loss` to 0 on the epochs that carry no `val_loss` (listed before the lottery)."""

    def on_epoch_end(self, epoch, logs=None):
        if "val_loss" not in logs:
            logs["loss"] = 0.0


def _fit(callbacks, epochs, validation=True, steps=4, **kwargs):
    x, y = toy_data(32 * steps, 40, 10)
    model = compile_classifier(tfl.prunable(mlp()), keras.optimizers.Adam(1e-2))
    return model.fit(
        x,
        y,
        batch_size=32,
        epochs=epochs,
        validation_data=toy_data(64, 40, 10, seed=1) if validation else None,
        callbacks=callbacks,
        verbose=0,
        **kwargs,
    )


@pytest.mark.parametrize(
    "monitor, mode, expected",
    [
        ("val_loss", "auto", "min"),
        ("loss", "auto", "min"),
        ("val_accuracy", "auto", "max"),
        ("acc", "auto", "max"),
        ("val_auc", "auto", "max"),
        ("val_precision", "auto", "max"),
        ("val_mean_absolute_error", "auto", "min"),
        ("val_accuracy", "min", "min"),
        ("val_loss", "max", "max"),
    ],
)
def test_mode_auto_guesses_the_direction_like_early_stopping(monitor, mode, expected):
    assert monitor_direction(monitor, mode) == expected


class TestLotteryCallbackKeras(TestCase):
    @pytest.mark.parametrize("mode, best, best_epoch", [("auto", 0.9, 2), ("max", 0.9, 2), ("min", 0.2, 1)])
    def test_val_accuracy_marks_its_best_epoch(self, mode, best, best_epoch):
        # Was: the minimum of val_accuracy (the worst epoch) marked the early-stopping point.
        values = [0.5, 0.2, 0.9, 0.7] * 2
        lottery = tfl.LotteryCallback(
            rounds=2, pruning_rate=0.5, monitor="val_accuracy", mode=mode, verbose=0
        )
        _fit([_Scripted("val_accuracy", values), lottery], epochs=8)
        for record in lottery.history:
            assert record["best"] == pytest.approx(best)
            assert record["early_stop_step"] == (best_epoch + 1) * 4
            # The metrics at the early-stopping step, beside the last epoch's.
            assert record["best_metrics"]["val_accuracy"] == pytest.approx(best)
            assert record["metrics"]["val_accuracy"] == pytest.approx(0.7)

    def test_validation_freq_compares_only_epochs_with_the_monitored_key(self):
        # Was: epochs without validation entered with their training loss (here 0, the "best").
        lottery = tfl.LotteryCallback(rounds=2, pruning_rate=0.5, verbose=0)
        history = _fit([_NoValidationLossIsTiny(), lottery], epochs=8, validation_freq=2).history
        val_losses = history["val_loss"]  # epochs 2, 4, 6 and 8 only
        assert len(val_losses) == 4
        for record, values in zip(lottery.history, (val_losses[:2], val_losses[2:])):
            assert record["best"] == pytest.approx(min(values)) and record["best"] > 0
            assert record["early_stop_step"] == 4 * (2 + 2 * values.index(min(values)))
            assert record["best_metrics"]["val_loss"] == pytest.approx(min(values))

    def test_early_stopping_acts_per_round_and_a_short_run_warns(self):
        # Was: EarlyStopping (best over the whole fit) stopped at the jump after the first rewind,
        # with 1 of 3 rounds recorded, and restore_best_weights brought back round 0's dense masks.
        values = [1.0, 0.9, 0.8, 2.0, 1.9, 1.8, 1.5, 1.6, 1.7]
        lottery = tfl.LotteryCallback(rounds=3, pruning_rate=0.5, verbose=0)
        stop = keras.callbacks.EarlyStopping(patience=1, restore_best_weights=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            history = _fit([_Scripted("val_loss", values), lottery, stop], epochs=9)
        assert len(history.history["loss"]) == 8  # round 2: 1.5, then 1.6 > 1.5 with patience 1
        assert [r["round"] for r in lottery.history] == [0, 1]
        messages = [str(w.message) for w in caught if "rounds asked for finished" in str(w.message)]
        assert len(messages) == 1 and "only 2 of the 3 rounds" in messages[0], messages
        assert "after 8 of 9 epochs, in round 2" in messages[0] and "EarlyStopping" in messages[0]
        model = history.model
        masks = [m for wr in tfl.prune_wrappers(model) for m in wr.get_masks()]
        for got, want in zip(masks, lottery.round_masks[1], strict=True):
            np.testing.assert_array_equal(got, want)
        assert tfl.sparsity_report(model).sparsity == pytest.approx(0.75, abs=0.01)
        assert pruned_weights_are_zero(model)

    def test_a_missing_monitor_warns_once_and_uses_the_loss(self):
        lottery = tfl.LotteryCallback(rounds=2, pruning_rate=0.5, monitor="val_accuracy", verbose=0)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            losses = _fit([lottery], epochs=4, validation=False).history["loss"]
        messages = [str(w.message) for w in caught if "LotteryCallback" in str(w.message)]
        assert len(messages) == 1, messages
        assert "`monitor`='val_accuracy' is not in the epoch logs" in messages[0]
        assert "'accuracy', 'loss'" in messages[0] and "Pass validation data to fit()" in messages[0]
        assert lottery.history[0]["best"] == pytest.approx(min(losses[:2]))
        assert lottery.history[1]["best"] == pytest.approx(min(losses[2:]))

    def test_round_values_reach_history_and_csv_logger(self, tmp_path):
        lottery = tfl.LotteryCallback(rounds=3, pruning_rate=0.5, verbose=0)
        path = str(tmp_path / "log.csv")
        history = _fit([lottery, keras.callbacks.CSVLogger(path)], epochs=6)
        logged = history.history
        assert logged["lottery_round"] == [0, 0, 1, 1, 2, 2]
        sparsity = logged["lottery_sparsity"]
        assert sparsity[0] == sparsity[1] == 0.0 and 0.45 < sparsity[2] < 0.55 and 0.7 < sparsity[4] < 0.8
        remaining = logged["lottery_weights_remaining"]
        assert remaining[0] > remaining[2] > remaining[4] > 0
        for record, epoch in zip(lottery.history, (1, 3, 5)):
            assert record["sparsity"] == pytest.approx(sparsity[epoch])
        with open(path) as handle:
            rows = list(csv.DictReader(handle))
        assert [int(float(row["lottery_round"])) for row in rows] == [0, 0, 1, 1, 2, 2]

    def test_the_round_lines_are_printed_only_when_verbose(self, capsys):
        _fit([tfl.LotteryCallback(rounds=2, pruning_rate=0.5, verbose=0)], epochs=2)
        assert "[LotteryCallback]" not in capsys.readouterr().out
        lottery = tfl.LotteryCallback(rounds=2, pruning_rate=0.5, verbose=1)
        _fit([lottery], epochs=2)
        lines = [line for line in capsys.readouterr().out.splitlines() if "[LotteryCallback]" in line]
        # Rounds counted from 0 as in `history`, `lottery_round` and the command line.
        assert [line.split(":")[0] for line in lines] == [
            "[LotteryCallback] round 0 of 0..1",
            "[LotteryCallback] round 1 of 0..1",
        ]
        assert [record["round"] for record in lottery.history] == [0, 1]
        assert "100.0% weights remaining" in lines[0] and "50.0% weights remaining" in lines[1]


class TestLotteryCallbackConfig:
    def test_the_config_holds_every_constructor_argument_and_round_trips(self):
        lottery = tfl.LotteryCallback(
            rounds=4,
            target_sparsity=0.9,
            rewind_to="2ep",
            retrain="lr_rewind",
            scope="layer",
            layer_rates={"output": 0.1},
            scorer="random",
            epochs_per_round=3,
            one_round_per_fit=True,
            monitor="val_accuracy",
            mode="max",
            state_dir="/tmp/state",
            seed=3,
            verbose=0,
        )
        config = lottery.get_config()
        arguments = set(inspect.signature(tfl.LotteryCallback.__init__).parameters) - {"self"}
        assert set(config) == arguments
        clone = tfl.LotteryCallback.from_config(config)
        assert clone.get_config() == config
        restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(lottery))
        assert isinstance(restored, tfl.LotteryCallback) and restored.get_config() == config

    def test_a_callable_scorer_is_refused_by_get_config(self):
        # Was: it came back as "magnitude", silently another callback.
        lottery = tfl.LotteryCallback(rounds=2, pruning_rate=0.2, scorer=lambda wrappers: [])
        with pytest.raises(ValueError, match=r"argument `scorer` is a callable, which a config cannot hold"):
            lottery.get_config()

    @pytest.mark.parametrize(
        "kwargs, message",
        [
            (
                {"mode": "maximum"},
                r"`mode`: expected one of \('auto', 'min', 'max'\). Received: mode='maximum'",
            ),
            ({"monitor": ""}, r"`monitor`: expected the name of a key of the epoch logs"),
            (
                {"scorer": "l1"},
                r"`scorer`: expected 'magnitude', 'random' or a callable.*Received: scorer='l1'",
            ),
        ],
    )
    def test_bad_arguments_are_named(self, kwargs, message):
        with pytest.raises(ValueError, match=message):
            tfl.LotteryCallback(rounds=2, pruning_rate=0.2, **kwargs)
