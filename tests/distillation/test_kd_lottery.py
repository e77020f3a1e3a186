"""LotteryCallback on a KDDistiller: the student is pruned and rewound, the teacher never."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_lottery as tfl
from tests.testing import RoundStartProbe, TestCase, mlp, pruned_weights_are_zero, toy_data
from tf_lottery.core.walk import model_variables
from tf_lottery.distillation import KDDistiller, with_teacher_logits
from tf_lottery.pruning.pruner import exact_count


def _trained_teacher():
    teacher = tfl.prunable(mlp(name="teacher"))
    teacher.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    teacher.fit(*toy_data(256), batch_size=64, epochs=3, verbose=0)
    return teacher


def _kd_run(rounds, epochs_per_round, callbacks=(), **lottery_kwargs):
    teacher = _trained_teacher()
    distiller = KDDistiller(teacher, tfl.prunable(mlp(name="student")))
    distiller.compile(keras.optimizers.SGD(0.05, momentum=0.9), metrics=["accuracy"])
    lottery = tfl.LotteryCallback(rounds=rounds, verbose=0, **lottery_kwargs)
    x, y = toy_data(192, seed=1)
    train = with_teacher_logits(x, y, teacher, 32, shuffle=False)
    distiller.fit(train, epochs=rounds * epochs_per_round, callbacks=[lottery, *callbacks], verbose=0)
    return teacher, distiller, lottery


class TestKDLottery(TestCase):
    def test_prunes_only_the_student_to_the_exact_sparsity(self):
        teacher = _trained_teacher()
        teacher_before = [w.numpy().copy() for w in teacher.weights]
        distiller = KDDistiller(teacher, tfl.prunable(mlp(name="student")))
        distiller.compile(keras.optimizers.SGD(0.05, momentum=0.9), metrics=["accuracy"])
        lottery = tfl.LotteryCallback(rounds=3, pruning_rate=0.5, verbose=0)
        x, y = toy_data(192, seed=1)
        distiller.fit(with_teacher_logits(x, y, teacher, 32), epochs=6, callbacks=[lottery], verbose=0)

        total = 40 * 64 + 64 * 32 + 32 * 10
        alive = total
        for record in lottery.history:
            assert record["sparsity"] == pytest.approx(1 - alive / total, abs=1e-12)
            alive -= exact_count(0.5, alive)
        assert pruned_weights_are_zero(distiller)
        for before, after in zip(teacher_before, teacher.weights):
            np.testing.assert_array_equal(before, after.numpy())
        assert all(m.all() for wr in tfl.prune_wrappers(teacher) for m in wr.get_masks())
        ticket = lottery.ticket
        assert len(ticket.masks) == 3 and ticket.sparsity == pytest.approx(0.75, abs=1e-3)
        assert len(ticket.weights) == len(model_variables(distiller.student))
        assert {"student_loss", "distillation_loss", "accuracy"} <= set(lottery.history[-1]["metrics"])

    def test_each_round_starts_from_rewind_weights_times_mask(self):
        probe = RoundStartProbe(epochs_per_round=2)
        _, distiller, lottery = _kd_run(3, 2, [probe], pruning_rate=0.5, rewind_to="2it")
        assert [start["iterations"] for start in probe.starts] == [0, 2, 2]
        kernels = [w for wr in tfl.prune_wrappers(distiller) for w in wr.pruned_weights]
        snapshot = lottery.snapshot.model_values
        assert lottery.snapshot.step == 2
        for start in probe.starts[1:]:
            masks = {id(w): m for w, m in zip(kernels, start["masks"])}
            for variable, value, rewound in zip(model_variables(distiller), start["values"], snapshot):
                np.testing.assert_array_equal(value, rewound * masks.get(id(variable), 1))
        for early, late in zip(probe.starts[1]["masks"], probe.starts[2]["masks"]):
            assert not np.any(late & ~early)  # masks only shrink
        alive = sum(m.sum() for m in probe.starts[2]["masks"]) / sum(m.size for m in probe.starts[2]["masks"])
        assert alive == pytest.approx(0.25, abs=1e-3)

    def test_stripped_student_computes_the_distillers_outputs_and_exports(self, tmp_path):
        _, distiller, lottery = _kd_run(2, 1, pruning_rate=0.6)
        plain = tfl.strip(distiller.student)
        assert not tfl.prune_wrappers(plain)
        x, _ = toy_data(64, seed=2)
        np.testing.assert_allclose(
            plain.predict(x, verbose=0), distiller.predict(x, verbose=0), rtol=1e-6, atol=1e-6
        )
        kernels = [w.numpy() for w in plain.weights if w.name == "kernel"]
        assert 1 - sum(np.count_nonzero(k) for k in kernels) / sum(k.size for k in kernels) == pytest.approx(
            0.6, abs=2e-3
        )

        plain.export(str(tmp_path / "saved_model"))
        exported = tf.saved_model.load(str(tmp_path / "saved_model"))
        served = exported.serve(tf.constant(x))
        np.testing.assert_allclose(served.numpy(), distiller.predict(x, verbose=0), rtol=1e-5, atol=1e-6)

        lottery.ticket.save(str(tmp_path / "ticket.npz"))
        fresh = tfl.prunable(mlp(name="student"))
        tfl.Ticket.load(str(tmp_path / "ticket.npz")).apply(fresh)
        for a, b in zip(tfl.prune_wrappers(fresh), tfl.prune_wrappers(distiller)):
            np.testing.assert_array_equal(a.get_masks()[0], b.get_masks()[0])
