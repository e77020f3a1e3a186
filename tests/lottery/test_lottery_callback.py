"""LotteryCallback: IMP inside fit(), rewinding modes, resumption, errors."""

import keras
import numpy as np
import pytest

import tf_lottery as tfl
from tests.testing import (
    RoundStartProbe,
    TestCase,
    compile_classifier,
    mlp,
    pruned_weights_are_zero,
    toy_data,
)
from tf_lottery.pruning.pruner import exact_count
from tf_lottery.utils import atomic_io as tfl_atomic_io


def _kernel_index(model):
    """Positions of the pruned kernels within the snapshot's model values."""
    from tf_lottery.core.walk import model_variables

    ids = {id(w) for wr in tfl.prune_wrappers(model) for w in wr.pruned_weights}
    return [i for i, v in enumerate(model_variables(model)) if id(v) in ids]


def _fit(model, callbacks, epochs, n=192, batch_size=32, **kwargs):
    x, y = toy_data(n, 40, 10)
    return model.fit(
        x,
        y,
        batch_size=batch_size,
        epochs=epochs,
        validation_data=toy_data(64, 40, 10, seed=1),
        callbacks=callbacks,
        verbose=0,
        **kwargs,
    )


def _model(optimizer=None, **kwargs):
    return compile_classifier(tfl.prunable(mlp()), optimizer or keras.optimizers.Adam(1e-2), **kwargs)


class TestLotteryCallback(TestCase):
    def test_imp_on_mnist1d_reaches_expected_sparsity_each_round(self):
        # Imported here: the rest of the file runs with the library alone (CI's oldest-pair step).
        pytest.importorskip("mnist1d", reason="needs the `experiments` extra")
        from tf_lottery.data.mnist1d import load_mnist1d

        (x, y), (xv, yv), _ = load_mnist1d(validation=500)
        model = compile_classifier(
            tfl.prunable(mlp(input_dim=40, hidden=(100, 100), classes=10)), keras.optimizers.Adam(2e-3)
        )
        lottery = tfl.LotteryCallback(rounds=4, pruning_rate=0.2, layer_rates={"output": 0.1}, verbose=0)
        model.fit(
            x, y, validation_data=(xv, yv), batch_size=100, epochs=4 * 3, callbacks=[lottery], verbose=0
        )
        assert [r["round"] for r in lottery.history] == [0, 1, 2, 3]
        hidden, output = 40 * 100 + 100 * 100, 100 * 10
        alive_hidden, alive_output = hidden, output
        for record in lottery.history:
            total = hidden + output
            expected = 1 - (alive_hidden + alive_output) / total
            assert record["sparsity"] == pytest.approx(expected, abs=1e-12)
            assert record["layers"]["output/kernel"] == pytest.approx(1 - alive_output / output)
            alive_hidden -= exact_count(0.2, alive_hidden)
            alive_output -= exact_count(0.1, alive_output)
        assert pruned_weights_are_zero(model)
        # It learned: far above chance (10%) on held-out data at ~49% sparsity.
        assert lottery.history[-1]["metrics"]["val_accuracy"] > 0.3
        assert all(r["early_stop_step"] in (35, 70, 105) for r in lottery.history)

    def test_each_round_starts_from_rewind_weights_times_mask(self):
        model = _model(keras.optimizers.SGD(0.05, momentum=0.9))
        lottery = tfl.LotteryCallback(rounds=3, pruning_rate=0.5, rewind_to="3it", verbose=0)
        probe = RoundStartProbe(epochs_per_round=2)
        _fit(model, [lottery, probe], epochs=6)
        assert lottery.snapshot.step == 3
        assert int(lottery.snapshot.optimizer_values[0]) == 3  # taken at exactly step 3
        kernel_positions = _kernel_index(model)
        for start in probe.starts[1:]:
            assert start["iterations"] == 3  # the schedule rewinds too
            for kernel, mask, pos in zip(start["kernels"], start["masks"], kernel_positions):
                np.testing.assert_array_equal(kernel, lottery.snapshot.model_values[pos] * mask)
        # Masks only shrink between rounds.
        for before, after in zip(probe.starts, probe.starts[1:]):
            for a, b in zip(before["masks"], after["masks"]):
                assert not np.any(b & ~a)

    def test_rewind_to_initialisation_restores_optimizer_state(self):
        model = _model(keras.optimizers.SGD(0.05, momentum=0.9))
        lottery = tfl.LotteryCallback(rounds=2, pruning_rate=0.5, verbose=0)
        probe = RoundStartProbe(epochs_per_round=2)
        _fit(model, [lottery, probe], epochs=4)
        assert lottery.snapshot.step == 0
        assert probe.starts[1]["iterations"] == 0
        momentum_at_start = lottery.snapshot.optimizer_values[2:]
        assert momentum_at_start and all(not np.any(v) for v in momentum_at_start)

    def test_rewind_to_epoch(self):
        model = _model()
        lottery = tfl.LotteryCallback(rounds=2, pruning_rate=0.2, rewind_to="1ep", verbose=0)
        _fit(model, [lottery], epochs=4)
        assert lottery.snapshot.step == 6  # 192 / 32 steps per epoch

    def test_rewind_step_must_be_reachable_with_steps_per_execution(self):
        model = _model(steps_per_execution=4)
        lottery = tfl.LotteryCallback(rounds=2, pruning_rate=0.2, rewind_to="8it", verbose=0)
        _fit(model, [lottery], epochs=4, n=256)
        assert lottery.snapshot.step == 8
        assert int(lottery.snapshot.optimizer_values[0]) == 8
        model = _model(steps_per_execution=4)
        lottery = tfl.LotteryCallback(rounds=2, pruning_rate=0.2, rewind_to="6it", verbose=0)
        with pytest.raises(ValueError, match="multiple of steps_per_execution"):
            _fit(model, [lottery], epochs=4, n=256)

    def test_learning_rate_rewinding_keeps_trained_weights(self):
        model = _model(keras.optimizers.SGD(0.05, momentum=0.9))
        lottery = tfl.LotteryCallback(
            rounds=2, pruning_rate=0.5, retrain="lr_rewind", rewind_to="2it", verbose=0
        )
        ends = []
        end_probe = keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: ends.append(
                [w.numpy().copy() for wr in tfl.prune_wrappers(model) for w in wr.pruned_weights]
            )
        )
        probe = RoundStartProbe(epochs_per_round=2)
        _fit(model, [end_probe, lottery, probe], epochs=4)
        start = probe.starts[1]
        assert start["iterations"] == 2
        for trained, kernel, mask in zip(ends[1], start["kernels"], start["masks"]):
            np.testing.assert_array_equal(kernel, trained * mask)

    def test_finetuning_keeps_weights_and_step(self):
        model = _model()
        lottery = tfl.LotteryCallback(rounds=2, pruning_rate=0.5, retrain="finetune", verbose=0)
        probe = RoundStartProbe(epochs_per_round=2)
        _fit(model, [lottery, probe], epochs=4)
        assert probe.starts[1]["iterations"] == 12

    def test_reinit_imp_draws_new_weights(self):
        model = _model()
        lottery = tfl.LotteryCallback(rounds=2, pruning_rate=0.5, retrain="reinit_imp", verbose=0)
        probe = RoundStartProbe(epochs_per_round=2)
        _fit(model, [lottery, probe], epochs=4)
        start = probe.starts[1]
        for kernel, mask, pos in zip(start["kernels"], start["masks"], _kernel_index(model)):
            rewound = lottery.snapshot.model_values[pos] * mask
            assert not np.allclose(kernel[mask], rewound[mask])
            np.testing.assert_array_equal(kernel[~mask], 0.0)
        assert start["iterations"] == 0

    def test_reinit_is_frankle_and_carbins_control_on_the_tickets_masks(self):
        rounds = 4
        ticket_run = tfl.LotteryCallback(rounds=rounds, pruning_rate=0.5, verbose=0)
        _fit(_model(), [ticket_run], epochs=rounds)
        assert len(ticket_run.round_masks) == rounds - 1

        control_model = _model()
        control = tfl.LotteryCallback(
            rounds=rounds, pruning_rate=0.5, retrain="reinit", ticket_masks=ticket_run, verbose=0
        )
        probe = RoundStartProbe(epochs_per_round=1)
        _fit(control_model, [control, probe], epochs=rounds)
        for r in range(1, rounds):
            for ours, ticket in zip(probe.starts[r]["masks"], ticket_run.round_masks[r - 1]):
                np.testing.assert_array_equal(ours, ticket)
            assert probe.starts[r]["iterations"] == 0
        for kernel, mask, pos in zip(
            probe.starts[1]["kernels"], probe.starts[1]["masks"], _kernel_index(control_model)
        ):
            np.testing.assert_array_equal(kernel[~mask], 0.0)
            assert not np.allclose(kernel[mask], control.snapshot.model_values[pos][mask])  # fresh draw

        # IMP on the reinitialised networks prunes its own weights: its masks
        # leave the ticket's, which is why it is not the paper's control.
        drift = tfl.LotteryCallback(rounds=rounds, pruning_rate=0.5, retrain="reinit_imp", verbose=0)
        _fit(_model(), [drift], epochs=rounds)
        last_ticket, last_drift = ticket_run.round_masks[-1][0], drift.round_masks[-1][0]
        assert np.count_nonzero(last_ticket & last_drift) < 0.9 * np.count_nonzero(last_ticket)

    def test_reinit_arguments_are_checked(self):
        with pytest.raises(ValueError, match=r"`ticket_masks`.*retrain='reinit_imp'"):
            tfl.LotteryCallback(rounds=2, pruning_rate=0.5, retrain="reinit")
        with pytest.raises(ValueError, match=r"only retrain='reinit' uses it"):
            tfl.LotteryCallback(rounds=2, pruning_rate=0.5, ticket_masks=[[np.ones(3, bool)]])
        short = tfl.LotteryCallback(rounds=3, pruning_rate=0.5, retrain="reinit", ticket_masks=[], verbose=0)
        with pytest.raises(ValueError, match=r"round 1 needs the ticket's round-1 masks, but it holds 0"):
            _fit(_model(), [short], epochs=3)
        wrong = tfl.LotteryCallback(
            rounds=2, pruning_rate=0.5, retrain="reinit", ticket_masks=[[np.ones((2, 2), bool)]], verbose=0
        )
        with pytest.raises(ValueError, match=r"same architecture"):
            _fit(_model(), [wrong], epochs=2)
        with pytest.raises(ValueError, match=r"`ticket_masks` holds mask arrays"):
            wrong.get_config()

    def test_target_sparsity_is_reached_exactly(self):
        model = _model()
        lottery = tfl.LotteryCallback(rounds=4, target_sparsity=0.9, verbose=0)
        _fit(model, [lottery], epochs=4)
        report = tfl.sparsity_report(model)
        assert report.total - report.alive == exact_count(0.9, report.total)
        assert lottery.ticket.sparsity == pytest.approx(report.sparsity)

    def test_target_sparsity_counts_from_a_sparse_start(self):
        # Was: the per-round rate assumed a dense start, so on a model already at 50% (one-shot masks
        # seeding IMP) round 1 overshot to 82% and round 2 pruned the last 5% alone.
        model = _model()
        tfl.prune(model, target_sparsity=0.5)
        total = tfl.sparsity_report(model).total
        lottery = tfl.LotteryCallback(rounds=3, target_sparsity=0.875, verbose=0)
        _fit(model, [lottery], epochs=3)
        # From 50%, two prunings of 50% of the survivors: 75%, then exactly 87.5%.
        alive0 = total - exact_count(0.5, total)
        alive1 = alive0 - exact_count(0.5, alive0)
        assert [r["sparsity"] for r in lottery.history] == pytest.approx(
            [1 - alive0 / total, 1 - alive1 / total, exact_count(0.875, total) / total], abs=1e-12
        )

    def test_target_sparsity_below_the_starting_sparsity_is_refused_before_training(self):
        # Was: refused by `tfl.prune` only when round 0 had trained.
        model = _model()
        tfl.prune(model, target_sparsity=0.5)
        lottery = tfl.LotteryCallback(rounds=2, target_sparsity=0.3, verbose=0)
        with pytest.raises(ValueError, match=r"`target_sparsity`: expected at least 0\.5, the sparsity"):
            _fit(model, [lottery], epochs=2)
        assert int(model.optimizer.iterations) == 0

    def test_oneshot_masks_seed_imp_and_each_round_rewinds_to_the_seeded_weights(self):
        # The cheap variant of tests/lottery/test_bert_tickets.py (Chen et al. 2020 from one-shot masks).
        from tf_lottery.core.walk import model_variables

        model = _model()
        tfl.oneshot.wanda(model, toy_data(64, 40, 10, seed=2)[0], 0.5)
        seed = [m for wr in tfl.prune_wrappers(model) for m in wr.get_masks()]
        at_fit_start = [v.numpy().copy() for v in model_variables(model)]
        lottery = tfl.LotteryCallback(rounds=3, target_sparsity=0.75, verbose=0)
        probe = RoundStartProbe(epochs_per_round=1)
        _fit(model, [lottery, probe], epochs=3)
        assert all(np.array_equal(a, b) for a, b in zip(probe.starts[0]["masks"], seed))
        for before, after in zip(probe.starts, probe.starts[1:]):
            assert all(np.all(a <= b) for a, b in zip(after["masks"], before["masks"]))
        kernels = _kernel_index(model)
        for start in probe.starts:
            masks = dict(zip(kernels, start["masks"]))
            for i, (value, want) in enumerate(zip(start["values"], at_fit_start)):
                np.testing.assert_array_equal(value, np.where(masks[i], want, 0.0) if i in masks else want)
        report = tfl.sparsity_report(model)
        assert report.total - report.alive == exact_count(0.75, report.total)

    def test_one_round_per_fit(self):
        model = _model()
        lottery = tfl.LotteryCallback(rounds=3, pruning_rate=0.5, one_round_per_fit=True, verbose=0)
        for _ in range(3):
            _fit(model, [lottery], epochs=1)
        assert [round(r["percent_remaining"]) for r in lottery.history] == [100, 50, 25]
        with pytest.raises(ValueError, match="already finished its 3 rounds"):
            _fit(model, [lottery], epochs=1)

    def test_callback_is_reusable_across_fit_calls(self):
        model = _model()
        lottery = tfl.LotteryCallback(rounds=2, pruning_rate=0.5, verbose=0)
        _fit(model, [lottery], epochs=2)
        assert len(lottery.history) == 2
        fresh = _model()
        _fit(fresh, [lottery], epochs=2)
        assert len(lottery.history) == 2  # state reset in on_train_begin

    def test_backup_and_restore_resumes_without_losing_rewind_point(self, tmp_path):
        class Crash(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if epoch == 2:
                    raise RuntimeError("simulated crash")

        backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
        state = str(tmp_path / "lottery")
        model = _model(keras.optimizers.SGD(0.05))
        lottery = tfl.LotteryCallback(rounds=3, pruning_rate=0.5, rewind_to="2it", state_dir=state, verbose=0)
        with pytest.raises(RuntimeError, match="simulated crash"):
            _fit(model, [backup, lottery, Crash()], epochs=6)
        snapshot = lottery.snapshot
        # A new process: fresh model and callback, same directories.
        keras.backend.clear_session()
        model = _model(keras.optimizers.SGD(0.05))
        model.build((None, 40))
        lottery = tfl.LotteryCallback(rounds=3, pruning_rate=0.5, rewind_to="2it", state_dir=state, verbose=0)
        probe = RoundStartProbe(epochs_per_round=2)
        _fit(model, [backup, lottery, probe], epochs=6)
        assert [r["round"] for r in lottery.history] == [0, 1, 2]
        assert lottery.snapshot.step == 2
        for a, b in zip(lottery.snapshot.model_values, snapshot.model_values):
            np.testing.assert_array_equal(a, b)
        assert tfl.sparsity_report(model).sparsity == pytest.approx(0.75, abs=1e-3)
        start = probe.starts[-1]  # round 2 began after the restart
        for kernel, mask, pos in zip(start["kernels"], start["masks"], _kernel_index(model)):
            np.testing.assert_array_equal(kernel, snapshot.model_values[pos] * mask)

    def test_restart_before_the_rewind_point_takes_it_later(self, tmp_path):
        class Crash(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if epoch == 0:
                    raise RuntimeError("simulated crash")

        backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
        state = str(tmp_path / "lottery")
        make = lambda: tfl.LotteryCallback(
            rounds=2, pruning_rate=0.5, rewind_to="8it", state_dir=state, verbose=0
        )
        model = _model(keras.optimizers.SGD(0.05))
        with pytest.raises(RuntimeError, match="simulated crash"):
            _fit(model, [backup, make(), Crash()], epochs=4)  # 6 steps per epoch: crash at step 6
        model = _model(keras.optimizers.SGD(0.05))
        model.build((None, 40))
        lottery = make()
        _fit(model, [backup, lottery], epochs=4)
        assert lottery.snapshot.step == 8
        assert int(lottery.snapshot.optimizer_values[0]) == 8
        assert [r["round"] for r in lottery.history] == [0, 1]

    def test_model_checkpoint_keeps_masks(self, tmp_path):
        model = _model()
        path = str(tmp_path / "ckpt.keras")
        lottery = tfl.LotteryCallback(rounds=2, pruning_rate=0.5, verbose=0)
        _fit(model, [lottery, keras.callbacks.ModelCheckpoint(path)], epochs=4)
        loaded = keras.models.load_model(path)
        for a, b in zip(tfl.prune_wrappers(model), tfl.prune_wrappers(loaded)):
            np.testing.assert_array_equal(a.get_masks()[0], b.get_masks()[0])
        assert pruned_weights_are_zero(loaded)

    def test_ema_optimizer_is_refused(self):
        model = _model(keras.optimizers.Adam(1e-2, use_ema=True))
        lottery = tfl.LotteryCallback(rounds=2, pruning_rate=0.5, verbose=0)
        with pytest.raises(ValueError, match="use_ema=True"):
            _fit(model, [lottery], epochs=2)

    def test_diverging_training_stops_with_a_clear_message(self):
        model = _model(keras.optimizers.SGD(1e6))
        lottery = tfl.LotteryCallback(rounds=2, pruning_rate=0.5, verbose=0)
        with pytest.raises(FloatingPointError, match="training diverged in round 0"):
            _fit(model, [lottery], epochs=2)
        assert lottery.history == []

    def test_config_round_trip(self):
        lottery = tfl.LotteryCallback(
            rounds=5, pruning_rate=0.2, rewind_to="500it", retrain="lr_rewind", layer_rates={"output": 0.1}
        )
        clone = tfl.LotteryCallback.from_config(lottery.get_config())
        assert clone.get_config() == lottery.get_config()
        assert clone.rewind_to == "500it"

    @pytest.mark.parametrize(
        "kwargs, message",
        [
            ({"rounds": 0, "pruning_rate": 0.2}, r"`rounds`: expected an int >= 1. Received: rounds=0"),
            ({"rounds": 3, "pruning_rate": 1.2}, r"`pruning_rate`: expected a float in \[0, 1\)"),
            ({"rounds": 3}, "Pass exactly one of `pruning_rate`"),
            ({"rounds": 3, "pruning_rate": 0.2, "rewind_to": "5x"}, r"`rewind_to`: expected '<N>it'"),
            ({"rounds": 3, "pruning_rate": 0.2, "retrain": "rewinding"}, r"`retrain`: expected one of"),
            ({"rounds": 3, "pruning_rate": 0.2, "scope": "net"}, r"`scope`: expected one of"),
            ({"rounds": 3, "pruning_rate": 0.2, "epochs_per_round": 0}, r"`epochs_per_round`"),
        ],
    )
    def test_bad_arguments(self, kwargs, message):
        with pytest.raises(ValueError, match=message):
            tfl.LotteryCallback(**kwargs)

    def test_numpy_ints_are_accepted_and_kept_as_python_ints(self):
        lottery = tfl.LotteryCallback(
            rounds=np.int64(3), pruning_rate=np.float32(0.2), epochs_per_round=np.int32(2), seed=np.int64(7)
        )
        config = lottery.get_config()
        assert (config["rounds"], config["epochs_per_round"], config["seed"]) == (3, 2, 7)
        assert all(type(config[key]) is int for key in ("rounds", "epochs_per_round", "seed"))

    @pytest.mark.parametrize("seed, expected", [("0", "an int"), (1.0, "an int"), (-1, "an int >= 0")])
    def test_a_seed_is_a_non_negative_int(self, seed, expected):
        with pytest.raises(ValueError, match=rf"`seed`: expected {expected}\. Received: seed={seed!r}\."):
            tfl.LotteryCallback(rounds=2, pruning_rate=0.2, seed=seed)

    def test_bad_use_in_fit(self):
        with pytest.raises(ValueError, match=r"fit\(epochs=5\) is not a multiple of rounds=2"):
            _fit(_model(), [tfl.LotteryCallback(rounds=2, pruning_rate=0.2, verbose=0)], epochs=5)
        with pytest.raises(ValueError, match="is not inside the first round"):
            _fit(
                _model(),
                [tfl.LotteryCallback(rounds=2, pruning_rate=0.2, rewind_to="2ep", verbose=0)],
                epochs=4,
            )
        plain = compile_classifier(mlp())
        with pytest.raises(ValueError, match="has no PruneWrapper layers"):
            _fit(plain, [tfl.LotteryCallback(rounds=2, pruning_rate=0.2, verbose=0)], epochs=2)


class TestLotteryCallbackRefusals(TestCase):
    def test_fit_again_on_the_same_model_is_refused_until_reset(self):
        # Was: a second fit() silently restarted IMP from the pruned, trained model
        # ("round 0" at 50% sparsity, rewind point = trained weights).
        model = _model()
        lottery = tfl.LotteryCallback(rounds=2, pruning_rate=0.5, verbose=0)
        _fit(model, [lottery], epochs=2)
        weights = model.get_weights()
        with pytest.raises(ValueError, match=r"already ran IMP on model .*2 of 2 rounds.*lottery.reset\(\)"):
            _fit(model, [lottery], epochs=2)
        for a, b in zip(weights, model.get_weights()):
            np.testing.assert_array_equal(a, b)  # nothing trained
        lottery.reset()  # asked for on purpose: a new run from this model
        _fit(model, [lottery], epochs=2)
        assert lottery.history[0]["sparsity"] == pytest.approx(0.5, abs=0.01)

    def test_an_empty_dataset_is_refused_before_any_pruning(self):
        # Was: two rounds "recorded" without a loss, the untrained weights pruned to 50%.
        model = _model()
        lottery = tfl.LotteryCallback(rounds=2, pruning_rate=0.5, verbose=0)
        empty = (np.zeros((0, 40), "float32"), np.zeros((0,), "int64"))
        with pytest.raises(ValueError, match=r"epoch 0 of round 0 ran no training step"):
            model.fit(*empty, epochs=2, callbacks=[lottery], verbose=0)
        assert lottery.history == [] and tfl.sparsity_report(model).sparsity == 0.0

    def test_a_layer_rates_name_that_matches_no_layer_is_refused_before_training(self):
        # Was: refused only when round 0 had trained and the first pruning began.
        model = _model()
        lottery = tfl.LotteryCallback(rounds=2, pruning_rate=0.5, layer_rates={"ouput": 0.1}, verbose=0)
        with pytest.raises(ValueError, match=r"`layer_rates`: 'ouput' matches no pruned layer.*'output'"):
            _fit(model, [lottery], epochs=2)
        assert int(model.optimizer.iterations) == 0

    def test_layer_rates_stay_rates_per_round_with_a_target_sparsity(self):
        # Was: per-round rates until the last round, which read them as the layers' targets:
        # 4 rounds with {"output": 0.375} raised "0.375 is below the current sparsity 0.6094".
        model = _model()
        lottery = tfl.LotteryCallback(
            rounds=4, target_sparsity=0.75, layer_rates={"output": 0.375}, scope="layer", verbose=0
        )
        _fit(model, [lottery], epochs=4)
        output = next(w for w in tfl.prune_wrappers(model) if w.layer.name == "output").get_masks()[0]
        # Three prunings at 37.5% each: the last lands the layer on 1 - 0.625**3.
        assert int(output.sum()) == output.size - exact_count(1 - 0.625**3, output.size)
        hidden = [w.get_masks()[0] for w in tfl.prune_wrappers(model) if w.layer.name != "output"]
        assert all(int(m.sum()) == m.size - exact_count(0.75, m.size) for m in hidden)

    def test_ticket_at_gives_each_finished_rounds_masks_and_the_rewind_weights(self, tmp_path):
        model = _model()
        lottery = tfl.LotteryCallback(rounds=3, pruning_rate=0.5, verbose=0)
        with pytest.raises(ValueError, match=r"`round_index`: expected a finished round \(none has yet\)"):
            lottery.ticket_at(0)
        _fit(model, [lottery], epochs=3)
        sparsities = [lottery.ticket_at(r).sparsity for r in range(3)]
        assert sparsities[0] == 0.0
        assert sparsities[1] == pytest.approx(0.5, abs=0.01) and sparsities[2] == pytest.approx(
            0.75, abs=0.01
        )
        for r in (1, 2):
            ticket = lottery.ticket_at(r)
            assert ticket.metadata["round"] == r
            for got, want in zip(ticket.masks, lottery.round_masks[r - 1], strict=True):
                np.testing.assert_array_equal(got, want)
            for got, want in zip(ticket.weights, lottery.snapshot.model_values, strict=True):
                np.testing.assert_array_equal(got, want)
        path = str(tmp_path / "round1.npz")
        lottery.ticket_at(1).save(path)
        assert tfl.Ticket.load(path).sparsity == pytest.approx(sparsities[1])
        with pytest.raises(
            ValueError, match=r"`round_index`: expected a finished round, 0 to 2. Received: round_index=3"
        ):
            lottery.ticket_at(3)

    def test_damaged_state_files_are_named_with_the_fix(self, tmp_path):
        # Was: BadZipFile / EOFError / KeyError from deep inside numpy or json.
        import shutil

        class Crash(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if epoch == 2:
                    raise RuntimeError("simulated crash")

        def make():
            return tfl.LotteryCallback(
                rounds=2, pruning_rate=0.5, state_dir=str(tmp_path / "run" / "state"), verbose=0
            )

        model = _model(keras.optimizers.SGD(0.05))
        backup = keras.callbacks.BackupAndRestore(str(tmp_path / "run" / "backup"))
        with pytest.raises(RuntimeError, match="simulated crash"):
            _fit(model, [make(), backup, Crash()], epochs=4, n=64)
        shutil.copytree(tmp_path / "run", tmp_path / "good")
        damages = {
            "rewind_point.npz": b"PK\x03\x04truncated",
            "masks_round_1.npz": b"garbage",
            "lottery_state.json": b'["a list, not an object"]',
            "masks_round_0.npz": None,  # truncated to half its size
        }
        for name, content in damages.items():
            shutil.rmtree(tmp_path / "run")
            shutil.copytree(tmp_path / "good", tmp_path / "run")
            path = tmp_path / "run" / "state" / name
            data = path.read_bytes()
            path.write_bytes(content if content is not None else data[: len(data) // 2])
            model = _model(keras.optimizers.SGD(0.05))
            model.build((None, 40))
            backup = keras.callbacks.BackupAndRestore(str(tmp_path / "run" / "backup"))
            damaged = rf"Cannot read '.*{name}': the LotteryCallback state file is damaged.*Delete '.*state'"
            with pytest.raises(tfl_atomic_io.DamagedFileError, match=damaged):
                _fit(model, [make(), backup], epochs=4, n=64)
