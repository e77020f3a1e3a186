"""open_lth's training-set transformations: subsampling and random labels."""

import numpy as np
import pytest

from tf_lottery.data import registry, transforms


def _config(**overrides):
    config = {
        "name": "mnist1d",
        "data_dir": "",
        "validation": 100,
        "augment": False,
        "train_limit": 0,
        "num_samples": 1000,
        "generator_seed": 42,
    }
    config.update(overrides)
    return config


@pytest.mark.parametrize("n, fraction, count", [(1000, 0.3, 300), (7, 0.5, 4), (100, 0.07, 7), (10, 1.0, 10)])
def test_random_labels_redraw_exactly_ceil_fraction_n_labels(n, fraction, count):
    # Every old label is -1 (no class), so each redrawn label is a changed one.
    labels = transforms.random_labels(np.full(n, -1), fraction, num_classes=10, seed=3)
    assert np.count_nonzero(labels != -1) == count
    assert set(labels[labels != -1]) <= set(range(10))


def test_random_labels_are_fixed_by_the_seed_and_uniform():
    labels = np.arange(20_000) % 10
    first = transforms.random_labels(labels, 1.0, 10, seed=0)
    np.testing.assert_array_equal(first, transforms.random_labels(labels, 1.0, 10, seed=0))
    assert np.count_nonzero(first != transforms.random_labels(labels, 1.0, 10, seed=1)) > 15_000
    # Uniform over the classes: each near 2,000 (5 sigma = 212), and about 9/10 differ from the old label.
    assert np.all(np.abs(np.bincount(first, minlength=10) - 2000) < 212)
    assert abs(np.mean(first != labels) - 0.9) < 0.01
    np.testing.assert_array_equal(transforms.random_labels(labels, 0.0, 10, seed=0), labels)


def test_subsample_keeps_ceil_fraction_n_distinct_examples_fixed_by_the_seed():
    kept = transforms.subsample(1001, 0.25, seed=0)
    assert len(kept) == 251 == len(set(kept.tolist()))
    assert np.all(np.diff(kept) > 0) and kept[0] >= 0 and kept[-1] < 1001
    np.testing.assert_array_equal(kept, transforms.subsample(1001, 0.25, seed=0))
    assert not np.array_equal(kept, transforms.subsample(1001, 0.25, seed=1))
    # Random, not the first examples: spread over the whole range.
    assert kept.mean() == pytest.approx(500, abs=60)


def test_random_labels_come_first_and_are_the_first_examples_kept():
    # open_lth draws both from one permutation: with 20% relabelled and half kept,
    # every relabelled example survives the subsampling.
    y = np.full(1000, -1)
    x = np.arange(1000)
    x_kept, y_kept = transforms.transform_training_set(x, y, 10, 0.5, 0.2, seed=4)
    assert len(y_kept) == 500 and np.count_nonzero(y_kept != -1) == 200
    np.testing.assert_array_equal(x_kept, transforms.subsample(1000, 0.5, seed=4))


def test_the_pipeline_transforms_only_the_training_split():
    plain = registry.load_dataset(_config())
    data = registry.load_dataset(
        _config(subsample_fraction=0.25, random_labels_fraction=0.5, transformation_seed=2)
    )
    assert plain.num_train == 700 and data.num_train == 175
    kept = transforms.subsample(700, 0.25, seed=2)
    np.testing.assert_array_equal(data.x_train, plain.x_train[kept])
    relabelled = transforms.random_labels(plain.y_train, 0.5, 10, seed=2)[kept]
    np.testing.assert_array_equal(data.y_train, relabelled)
    assert np.count_nonzero(data.y_train != plain.y_train[kept]) > 0
    for split in ("x_val", "y_val", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(data, split), getattr(plain, split))
    # The batches come from the transformed set.
    x, y = next(iter(data.train_batches(0, 175, seed=0)))
    assert sorted(map(tuple, np.asarray(x).round(5))) == sorted(map(tuple, data.x_train.round(5)))


def test_defaults_leave_the_pipeline_as_it_was():
    plain = registry.load_dataset(_config())
    same = registry.load_dataset(
        _config(subsample_fraction=1.0, random_labels_fraction=0.0, transformation_seed=9)
    )
    np.testing.assert_array_equal(plain.x_train, same.x_train)
    np.testing.assert_array_equal(plain.y_train, same.y_train)
