"""LotteryCallback beside BackupAndRestore: a job killed anywhere resumes to the uninterrupted run, bit for bit.

3 rounds of 2 epochs (4 steps each) on a small MLP; a callback raises at an
epoch end (after both callbacks' epoch-end work) or in the middle of an
epoch, and a fresh model and callback resume from the two directories.
Masks, weights, the rewind point and `history` must equal those of the run
that was never stopped, for both orders of the two callbacks. The default
suite kills once at four points; the slow suite kills one job at every point
in turn.
"""

import itertools

import keras
import numpy as np
import pytest

import tf_lottery as tfl
from tests.testing import TestCase, compile_classifier, mlp, toy_data

ROUNDS, EPOCHS_PER_ROUND, STEPS = 3, 2, 4
EPOCHS = ROUNDS * EPOCHS_PER_ROUND
# (kind, epoch): "end" raises after epoch `epoch` ends, "mid" after its second batch.
KILLS = [
    (kind, epoch)
    for epoch in range(EPOCHS)
    for kind in ("mid", "end")
    if (kind, epoch) != ("end", EPOCHS - 1)
]
ORDERS = ("backup_first", "lottery_first")
# The default run: kills in the first epoch of a round, at a round boundary and in the middle of a round.
CHEAP = [
    ("backup_first", ("mid", 2)),
    ("backup_first", ("end", 1)),
    ("lottery_first", ("end", 3)),
    ("lottery_first", ("mid", 1)),
]


class Crash(keras.callbacks.Callback):
    def __init__(self, kind, epoch):
        super().__init__()
        self.kind, self.epoch, self._current = kind, epoch, None

    def on_epoch_begin(self, epoch, logs=None):
        self._current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.kind == "mid" and self._current == self.epoch and batch == 1:
            raise RuntimeError("simulated crash")

    def on_epoch_end(self, epoch, logs=None):
        if self.kind == "end" and epoch == self.epoch:
            raise RuntimeError("simulated crash")


def _fit(tmp_path, rewind_to, order, crash=None):
    """One fit() of a fresh process: same seed, model, data and directories."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(7)
    model = compile_classifier(tfl.prunable(mlp(hidden=(16,))), keras.optimizers.SGD(0.1, momentum=0.9))
    model.build((None, 40))
    lottery = tfl.LotteryCallback(
        rounds=ROUNDS, pruning_rate=0.5, rewind_to=rewind_to, state_dir=str(tmp_path / "state"), verbose=0
    )
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    callbacks = [backup, lottery] if order == "backup_first" else [lottery, backup]
    x, y = toy_data(16 * STEPS, 40, 10)
    model.fit(
        x,
        y,
        batch_size=16,
        epochs=EPOCHS,
        shuffle=False,
        validation_data=toy_data(32, 40, 10, seed=1),
        callbacks=callbacks + ([crash] if crash else []),
        verbose=0,
    )
    return model, lottery


def _state(model, lottery):
    return {
        "weights": model.get_weights(),
        "round_masks": lottery.round_masks,
        "rewind": lottery.snapshot.model_values + lottery.snapshot.optimizer_values,
        "history": lottery.history,
    }


_REFERENCES = {}


def _reference(tmp_path_factory, rewind_to):
    if rewind_to not in _REFERENCES:
        _REFERENCES[rewind_to] = _state(
            *_fit(tmp_path_factory.mktemp("reference"), rewind_to, "lottery_first")
        )
    return _REFERENCES[rewind_to]


def _assert_same(got, want):
    for name in ("weights", "rewind"):
        assert len(got[name]) == len(want[name])
        for a, b in zip(got[name], want[name]):
            np.testing.assert_array_equal(a, b, err_msg=name)
    for a_round, b_round in zip(got["round_masks"], want["round_masks"], strict=True):
        for a, b in zip(a_round, b_round, strict=True):
            np.testing.assert_array_equal(a, b)
    assert got["history"] == want["history"]


def _killed_and_resumed(tmp_path, rewind_to, order, kill):
    with pytest.raises(RuntimeError, match="simulated crash"):
        _fit(tmp_path, rewind_to, order, Crash(*kill))
    return _state(*_fit(tmp_path, rewind_to, order))


class TestBackupAndRestoreResumesExactly(TestCase):
    @pytest.mark.parametrize("order, kill", CHEAP, ids=lambda v: v if isinstance(v, str) else f"{v[0]}{v[1]}")
    def test_a_kill_resumes_to_the_uninterrupted_run(self, tmp_path, tmp_path_factory, order, kill):
        # Was: a kill in a round's first epoch or at its end resumed with the previous round's
        # masks and trained weights (sparsity 0.5 instead of 0.75); with rewind_to="0it" any
        # kill re-took the rewind point from the restored weights.
        want = _reference(tmp_path_factory, "0it")
        _assert_same(_killed_and_resumed(tmp_path, "0it", order, kill), want)
        assert [r["round"] for r in want["history"]] == [0, 1, 2]
        assert want["history"][-1]["sparsity"] == pytest.approx(0.75, abs=0.01)

    def test_a_late_rewind_point_taken_before_the_kill_is_kept(self, tmp_path, tmp_path_factory):
        want = _reference(tmp_path_factory, "6it")
        _assert_same(_killed_and_resumed(tmp_path, "6it", "backup_first", ("mid", 2)), want)

    @pytest.mark.slow
    @pytest.mark.parametrize("rewind_to, order", list(itertools.product(["0it", "6it"], ORDERS)))
    def test_killed_at_every_point_in_turn(self, tmp_path, tmp_path_factory, rewind_to, order):
        # One job killed at every point in turn (mid-epoch and after each epoch's end, in the
        # order they come), each restart resuming from what the last kill left and killed at
        # the next point: 11 kills, then a last restart to the end. BackupAndRestore numbers
        # a resumed fit's epochs from where the job stopped, so each `Crash` point is absolute.
        for kill in KILLS:
            with pytest.raises(RuntimeError, match="simulated crash"):
                _fit(tmp_path, rewind_to, order, Crash(*kill))
        _assert_same(_state(*_fit(tmp_path, rewind_to, order)), _reference(tmp_path_factory, rewind_to))
