"""KDDistiller: the paper's loss, cached logits, frozen teacher, errors, config."""

import copy
import functools

import keras
import numpy as np
import pytest

import tf_lottery as tfl
from tests.testing import TestCase, mlp, toy_data
from tf_lottery.distillation import KDDistiller, array_batches, with_teacher_logits


def _log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _reference_loss(teacher_logits, student_logits, y, kd_weight, temperature):
    """The paper's loss in float64 NumPy, KL(teacher || student) at temperature T."""
    t, s = np.float64(teacher_logits), np.float64(student_logits)
    log_pt, log_ps = _log_softmax(t / temperature), _log_softmax(s / temperature)
    kl = (np.exp(log_pt) * (log_pt - log_ps)).sum(axis=-1).mean()
    ce = -_log_softmax(s)[np.arange(len(y)), y].mean()
    return kd_weight * temperature**2 * kl + (1 - kd_weight) * ce, kl, ce


class CallCounter(keras.layers.Layer):
    """Identity layer counting its calls (traces, inside compiled steps)."""

    calls = 0

    def call(self, inputs):
        CallCounter.calls += 1
        return inputs


def _teacher_model(classes=10, counter=False):
    inputs = keras.Input((40,))
    x = CallCounter()(inputs) if counter else inputs
    hidden = keras.layers.Dense(64, activation="relu")(x)
    return keras.Model(inputs, keras.layers.Dense(classes)(hidden), name="teacher")


@functools.cache
def _trained_teacher_weights():
    teacher = _teacher_model()
    teacher.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    teacher.fit(*toy_data(256), batch_size=64, epochs=3, verbose=0)
    return teacher.get_weights()


def _teacher(counter=False):
    """A trained teacher (trained once per session; fresh Keras objects per test)."""
    teacher = _teacher_model(counter=counter)
    teacher.set_weights(_trained_teacher_weights())
    return teacher


def _distiller(teacher=None, **kwargs):
    distiller = KDDistiller(teacher or _teacher(), tfl.prunable(mlp()), **kwargs)
    distiller.compile(keras.optimizers.SGD(0.05), metrics=["accuracy"])
    return distiller


class TestKDLoss(TestCase):
    @pytest.mark.parametrize("kd_weight, temperature", [(0.0, 5.0), (0.3, 1.0), (0.9, 5.0), (1.0, 2.0)])
    def test_loss_matches_numpy_formula(self, kd_weight, temperature):
        distiller = _distiller(kd_weight=kd_weight, temperature=temperature)
        x, y = toy_data(64, seed=3)
        t = distiller.teacher.predict(x, verbose=0)
        s = distiller.student.predict(x, verbose=0)
        expected, kl, _ = _reference_loss(t, s, y, kd_weight, temperature)
        reverse_kl = (
            (
                np.exp(_log_softmax(s / temperature))
                * (_log_softmax(s / temperature) - _log_softmax(t / temperature))
            )
            .sum(-1)
            .mean()
        )
        assert abs(kl - reverse_kl) > 1e-3 * kl  # the data tells the two directions apart
        loss = distiller.compute_loss(x, y, distiller(x, training=False), training=False)
        assert float(loss) == pytest.approx(expected, rel=1e-5, abs=1e-6)

    def test_equals_keras_distiller_with_student_loss_weight_one_minus_kd_weight(self):
        teacher, student = _teacher(), tfl.prunable(mlp())
        ours = KDDistiller(teacher, student, kd_weight=0.7, temperature=4.0)
        ours.compile()
        keras_distiller = keras.distillation.Distiller(
            teacher,
            student,
            keras.distillation.LogitsDistillation(temperature=4.0, loss=keras.losses.KLDivergence()),
            student_loss_weight=0.3,
        )
        keras_distiller.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        x, y = toy_data(64, seed=4)
        y_pred = student(x)
        np.testing.assert_allclose(
            float(ours.compute_loss(x, y, y_pred)),
            float(keras_distiller.compute_loss(x, y, y_pred)),
            rtol=1e-6,
        )

    def test_student_regularization_is_added(self):
        student = tfl.prunable(
            keras.Sequential(
                [keras.Input((40,)), keras.layers.Dense(10, kernel_regularizer=keras.regularizers.L2(0.01))]
            )
        )
        distiller = KDDistiller(_teacher(), student)
        distiller.compile()
        x, y = toy_data(32, seed=5)
        expected, _, _ = _reference_loss(
            distiller.teacher.predict(x, verbose=0), student.predict(x, verbose=0), y, 0.9, 5.0
        )
        kernel = tfl.prune_wrappers(student)[0].layer.kernel.numpy()
        expected += 0.01 * np.sum(kernel.astype(np.float64) ** 2)
        loss = distiller.compute_loss(x, y, distiller(x, training=False), training=False)
        assert float(loss) == pytest.approx(expected, rel=1e-5)

    def test_logged_terms_are_per_example_means(self):
        distiller = _distiller(kd_weight=0.6, temperature=2.0)
        x, y = toy_data(64, seed=6)
        t, s = distiller.teacher.predict(x, verbose=0), distiller.student.predict(x, verbose=0)
        expected, kl, ce = _reference_loss(t, s, y, 0.6, 2.0)
        logs = distiller.evaluate(x, y, batch_size=64, verbose=0, return_dict=True)
        assert logs["loss"] == pytest.approx(expected, rel=1e-5)
        assert logs["total_loss"] == pytest.approx(expected, rel=1e-5)
        assert logs["student_loss"] == pytest.approx(ce, rel=1e-5)
        assert logs["distillation_loss"] == pytest.approx(4.0 * kl, rel=1e-5)


class TestCachedTeacherLogits(TestCase):
    def test_cached_and_uncached_losses_are_equal(self):
        distiller = _distiller()
        x, y = toy_data(96, seed=7)
        cached = with_teacher_logits(x, y, distiller.teacher, 32, shuffle=False)
        uncached = array_batches((x, y), 32, shuffle=False)
        for (features, labels), (plain_x, plain_y) in zip(cached, uncached):
            with_cache = distiller.compute_loss(features, labels, distiller(features, training=False))
            without = distiller.compute_loss(plain_x, plain_y, distiller(plain_x, training=False))
            np.testing.assert_allclose(float(with_cache), float(without), rtol=1e-6)

    def test_cached_training_equals_uncached_training(self):
        x, y = toy_data(128, seed=8)
        teacher = _teacher()
        results = []
        for cache in (True, False):
            keras.utils.set_random_seed(11)
            distiller = _distiller(teacher)
            data = (
                with_teacher_logits(x, y, teacher, 32, seed=3) if cache else array_batches((x, y), 32, seed=3)
            )
            history = distiller.fit(data, epochs=2, verbose=0)
            results.append((history.history, [w.numpy() for w in distiller.student.weights]))
        for key in ("loss", "student_loss", "distillation_loss", "accuracy"):
            np.testing.assert_allclose(results[0][0][key], results[1][0][key], rtol=1e-5)
        for a, b in zip(results[0][1], results[1][1]):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

    def test_cached_step_runs_no_teacher_forward_pass(self):
        teacher = _teacher(counter=True)
        distiller = _distiller(teacher)
        x, y = toy_data(128, seed=9)
        data = with_teacher_logits(x, y, teacher, 32)
        CallCounter.calls = 0
        distiller.fit(data, epochs=2, verbose=0)
        assert CallCounter.calls == 0
        distiller.fit(x, y, batch_size=32, epochs=1, verbose=0)
        assert CallCounter.calls > 0  # uncached batches do call it

    def test_kd_weight_zero_never_calls_the_teacher(self):
        distiller = _distiller(_teacher(counter=True), kd_weight=0.0)
        x, y = toy_data(64, seed=10)
        CallCounter.calls = 0
        distiller.fit(x, y, batch_size=32, epochs=1, verbose=0)
        assert CallCounter.calls == 0

    def test_teacher_is_frozen_and_unchanged(self):
        distiller = _distiller()
        before = [w.numpy().copy() for w in distiller.teacher.weights]
        x, y = toy_data(128, seed=12)
        distiller.fit(x, y, batch_size=32, epochs=2, verbose=0)
        assert not distiller.teacher.trainable
        assert {id(v) for v in distiller.trainable_variables} == {
            id(v) for v in distiller.student.trainable_variables
        }
        for a, b in zip(before, distiller.teacher.weights):
            np.testing.assert_array_equal(a, b.numpy())

    def test_train_step_compiles_with_xla(self):
        # XLA needs static shapes and no host code: what TPUs need too.
        x, y = toy_data(128, seed=13)
        for cache in (True, False):
            distiller = KDDistiller(_teacher(), tfl.prunable(mlp()))
            tfl.prune(distiller, target_sparsity=0.5)
            distiller.compile(keras.optimizers.SGD(0.05), jit_compile=True)
            assert distiller.jit_compile is True  # Keras would fall back silently
            options = dict(batch_size=32, drop_remainder=True)
            data = (
                with_teacher_logits(x, y, distiller.teacher, **options)
                if cache
                else array_batches((x, y), **options)
            )
            history = distiller.fit(data, epochs=1, verbose=0)
            assert np.isfinite(history.history["loss"][0])
            assert tfl.sparsity_report(distiller).sparsity == pytest.approx(0.5, abs=1e-3)


class TestKDDistillerContract(TestCase):
    def test_config_round_trip(self):
        distiller = KDDistiller(
            mlp(name="teacher"), tfl.prunable(mlp()), kd_weight=0.75, temperature=3.0, name="kd"
        )
        config = distiller.get_config()
        assert config["kd_weight"] == 0.75 and config["temperature"] == 3.0
        assert "student_loss_weight" not in config and "distillation_losses" not in config
        clone = KDDistiller.from_config(copy.deepcopy(config))  # Keras wrappers pop from their config
        assert clone.get_config() == config
        assert clone.kd_weight == 0.75 and clone.temperature == 3.0 and clone.name == "kd"
        assert clone.student_loss_weight == pytest.approx(0.25)
        assert len(tfl.prune_wrappers(clone)) == 3

    def test_save_and_load_keeps_student_masks_and_weights(self, tmp_path):
        distiller = _distiller()
        tfl.prune(distiller, target_sparsity=0.6)
        x, _ = toy_data(16, seed=14)
        distiller.predict(x, verbose=0)
        path = str(tmp_path / "distiller.keras")
        distiller.save(path)
        loaded = keras.saving.load_model(path)
        assert isinstance(loaded, KDDistiller) and loaded.kd_weight == 0.9
        assert isinstance(loaded.optimizer, keras.optimizers.SGD)
        for a, b in zip(tfl.prune_wrappers(distiller), tfl.prune_wrappers(loaded)):
            np.testing.assert_array_equal(a.get_masks()[0], b.get_masks()[0])
        np.testing.assert_allclose(loaded.predict(x, verbose=0), distiller.predict(x, verbose=0), rtol=1e-6)

    def test_lottery_target_is_the_student(self):
        teacher = tfl.prunable(_teacher())
        distiller = KDDistiller(teacher, tfl.prunable(mlp()))
        student_wrappers = tfl.prune_wrappers(distiller.student)
        assert tfl.prune_wrappers(distiller) == student_wrappers
        tfl.prune(distiller, target_sparsity=0.8)
        assert tfl.sparsity_report(distiller).sparsity == pytest.approx(0.8, abs=1e-3)
        assert all(m.all() for wr in tfl.prune_wrappers(teacher) for m in wr.get_masks())

    @pytest.mark.parametrize("kd_weight", [-0.1, 1.5, True, "0.9", None])
    def test_bad_kd_weight(self, kd_weight):
        with pytest.raises(
            ValueError,
            match=r"Invalid value for argument `kd_weight`: expected a float in \[0, 1\]\. "
            rf"Received: kd_weight={re_repr(kd_weight)}\.",
        ):
            KDDistiller(mlp(), mlp(), kd_weight=kd_weight)

    @pytest.mark.parametrize("temperature", [0, -1.0, "5"])
    def test_bad_temperature(self, temperature):
        with pytest.raises(
            ValueError,
            match=rf"Invalid value for argument `temperature`: expected a float > 0\. "
            rf"Received: temperature={re_repr(temperature)}\.",
        ):
            KDDistiller(mlp(), mlp(), temperature=temperature)

    def test_teacher_and_student_output_shapes_must_match(self):
        with pytest.raises(
            ValueError,
            match=r"Invalid value for argument `student`: expected logits of the teacher's shape "
            r"\(None, 10\).*Received: student 'small' with output shape \(None, 5\)\.",
        ):
            KDDistiller(mlp(), mlp(classes=5, name="small"))

    def test_teacher_must_be_a_model(self):
        with pytest.raises(
            ValueError, match=r"Invalid value for argument `teacher`: expected a keras.Model\. Received"
        ):
            KDDistiller(keras.layers.Dense(10), mlp())

    def test_cached_logits_of_the_wrong_width_are_refused(self):
        distiller = _distiller()
        x, y = toy_data(32, seed=15)
        features = {"inputs": x, "teacher_logits": np.zeros((32, 7), np.float32)}
        with pytest.raises(
            ValueError,
            match=r"expected the student's number of classes 10 in the last axis\. "
            r"Received teacher_logits of shape \(32, 7\)",
        ):
            distiller.compute_loss(features, y, distiller(features))


def re_repr(value):
    import re

    return re.escape(repr(value))
