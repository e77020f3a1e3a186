"""with_teacher_logits / array_batches: logits computed once, gathered with their examples."""

import keras
import numpy as np
import pytest

from tests.testing import TestCase, mlp, toy_data
from tf_lottery.distillation import (
    INPUTS_KEY,
    TEACHER_LOGITS_KEY,
    array_batches,
    split_cached_inputs,
    with_teacher_logits,
)


def _epoch(dataset):
    batches = list(dataset.as_numpy_iterator())
    features = {key: np.concatenate([f[key] for f, _ in batches]) for key in (INPUTS_KEY, TEACHER_LOGITS_KEY)}
    return features, np.concatenate([y for _, y in batches]), batches


class TestWithTeacherLogits(TestCase):
    def test_every_example_comes_once_per_epoch_with_its_logits_and_label(self):
        teacher = mlp()
        x, y = toy_data(50, seed=1)
        dataset = with_teacher_logits(x, y, teacher, batch_size=16, seed=0)
        expected = teacher.predict(x, verbose=0)
        orders = []
        for _ in range(2):
            features, labels, batches = _epoch(dataset)
            assert [len(b[1]) for b in batches] == [16, 16, 16, 2]
            # Rows of x are distinct, so each row tells which example it is.
            order = [int(np.flatnonzero((x == row).all(axis=1))[0]) for row in features[INPUTS_KEY]]
            assert sorted(order) == list(range(50))
            np.testing.assert_array_equal(labels, y[order])
            np.testing.assert_allclose(features[TEACHER_LOGITS_KEY], expected[order], rtol=1e-6, atol=1e-6)
            assert features[TEACHER_LOGITS_KEY].dtype == np.float32
            orders.append(order)
        assert orders[0] != orders[1]  # reshuffled every epoch

    def test_static_batch_shape_with_drop_remainder(self):
        x, y = toy_data(50, seed=2)
        dataset = with_teacher_logits(x, y, mlp(), batch_size=16, drop_remainder=True)
        features, labels = dataset.element_spec
        assert tuple(features[INPUTS_KEY].shape) == (16, 40)
        assert tuple(features[TEACHER_LOGITS_KEY].shape) == (16, 10)
        assert tuple(labels.shape) == (16,)
        assert dataset.cardinality().numpy() == 3

    def test_teacher_runs_in_inference_mode(self):
        inputs = keras.Input((40,))
        outputs = keras.layers.Dense(10)(keras.layers.Dropout(0.9)(inputs))
        teacher = keras.Model(inputs, outputs)
        x, y = toy_data(32, seed=3)
        features, _ = next(iter(with_teacher_logits(x, y, teacher, 32, shuffle=False)))
        np.testing.assert_allclose(features[TEACHER_LOGITS_KEY], teacher(x, training=False), rtol=1e-6)

    def test_augmented_pipelines_are_refused(self):
        x, y = toy_data(8)
        with pytest.raises(
            ValueError,
            match=r"Invalid value for argument `augmented`: .*expected augmented=False\. "
            r"Received: augmented=True\.",
        ):
            with_teacher_logits(x, y, mlp(), 4, augmented=True)

    def test_label_count_must_match(self):
        x, y = toy_data(8)
        with pytest.raises(
            ValueError,
            match=r"Invalid value for argument `y`: expected one label per example of `x` \(8\)\. Received 5",
        ):
            with_teacher_logits(x, y[:5], mlp(), 4)


class TestArrayBatches(TestCase):
    def test_unshuffled_batches_keep_the_order(self):
        x, y = toy_data(10, seed=4)
        batches = list(array_batches((x, y), 4, shuffle=False).as_numpy_iterator())
        np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), x)
        np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y)

    def test_split_cached_inputs(self):
        assert split_cached_inputs({INPUTS_KEY: 1, TEACHER_LOGITS_KEY: 2}) == (1, 2)
        plain = {"a": 1, "b": 2}
        assert split_cached_inputs(plain) == (plain, None)
        assert split_cached_inputs(3) == (3, None)
