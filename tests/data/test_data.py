"""Data pipelines: shapes, splits, deterministic resumable order, missing data.

The tfds tests prepare tiny *real* tfds datasets offline (the registered
builders with generated examples instead of downloads), so the loaders read
prepared TFRecords exactly as they would read CIFAR-10 or ImageNet.
"""

import numpy as np
import pytest
import tensorflow as tf

from tf_lottery.data import pipeline, registry, tfds
from tf_lottery.data.pipeline import pad_and_crop, random_flip


def _config(**overrides):
    config = {
        "name": "mnist1d",
        "data_dir": "",
        "validation": 500,
        "augment": False,
        "train_limit": 0,
        "num_samples": 5000,
        "generator_seed": 42,
    }
    config.update(overrides)
    return config


def _prepare(data_dir, name, splits, shape, classes, extra=None):
    import tensorflow_datasets as tensorflow_datasets

    tensorflow_datasets.disable_progress_bar()
    base = tensorflow_datasets.builder_cls(name)

    def examples(count, seed):
        rng = np.random.default_rng(seed)
        for i in range(count):
            example = {"image": rng.integers(0, 255, shape, dtype=np.uint8), "label": int(i % classes)}
            example.update({key: f"x{i}" for key in extra or ()})
            yield f"x{i}", example

    with tensorflow_datasets.core.registered.skip_registration():

        class Fake(base):
            def _split_generators(self, dl_manager):
                return {split: examples(count, seed) for seed, (split, count) in enumerate(splits.items())}

    Fake.name = name
    Fake(data_dir=str(data_dir)).download_and_prepare(
        download_config=tensorflow_datasets.download.DownloadConfig(try_download_gcs=False)
    )


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds")
    _prepare(data_dir, "cifar10", {"train": 40, "test": 12}, (32, 32, 3), 10, extra=("id",))
    _prepare(
        data_dir, "imagenet2012", {"train": 30, "validation": 10}, (48, 40, 3), 1000, extra=("file_name",)
    )
    return str(data_dir)


def _batches(dataset):
    return [(x.numpy(), y.numpy()) for x, y in dataset]


def test_mnist1d_shapes_and_splits():
    data = registry.load_dataset(_config())
    assert data.input_shape == (40,)
    assert (data.size("train"), data.size("validation"), data.size("test")) == (3500, 500, 1000)
    batches = _batches(data.train_batches(0, 100, seed=0))
    assert len(batches) == data.steps_per_epoch(100) == 35
    assert batches[0][0].shape == (100, 40) and batches[0][1].dtype == np.int64
    labels = np.concatenate([y for _, y in batches])
    assert sorted(labels.tolist()) == sorted(data.y_train.tolist())  # every example once per epoch
    assert sum(x.shape[0] for x, _ in _batches(data.eval_batches("test"))) == 1000


def test_train_order_is_a_function_of_seed_and_epoch_and_resumes_mid_epoch():
    data = registry.load_dataset(_config(train_limit=640))
    first = _batches(data.train_batches(3, 64, seed=7))
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(first, _batches(data.train_batches(3, 64, seed=7))))
    resumed = _batches(data.train_batches(3, 64, seed=7, skip=4))
    assert len(resumed) == len(first) - 4
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(first[4:], resumed))
    assert not np.array_equal(first[0][0], _batches(data.train_batches(4, 64, seed=7))[0][0])
    assert not np.array_equal(first[0][0], _batches(data.train_batches(3, 64, seed=8))[0][0])


@pytest.mark.parametrize("skip", [0, 3])
def test_an_epoch_gathered_at_once_equals_the_per_batch_map_bit_for_bit(monkeypatch, skip):
    # Un-augmented epochs below `TRAIN_IN_MEMORY_BYTES` are gathered and normalized in one go;
    # larger ones (and augmented images) map batch by batch. Both must feed the same numbers:
    # uint8 images scaled and normalized per channel, with a teacher's logits beside them.
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (80, 6, 5, 3), dtype=np.uint8)
    data = pipeline.ArrayPipeline(
        name="images",
        x_train=images,
        y_train=rng.integers(0, 10, 80).astype(np.int64),
        x_val=images[:0],
        y_val=np.zeros(0, np.int64),
        x_test=images[:8],
        y_test=np.zeros(8, np.int64),
        num_classes=10,
        mean=(0.49, 0.48, 0.45),
        std=(0.25, 0.24, 0.26),
        scale=255.0,
    )
    logits = rng.normal(size=(80, 10)).astype(np.float32)

    def epoch():
        out = []
        for (x, extra), y in data.train_batches(2, 16, seed=5, skip=skip, extra=logits):
            out.append((x.numpy(), extra.numpy(), y.numpy()))
        return out

    gathered = epoch()
    monkeypatch.setattr(pipeline, "TRAIN_IN_MEMORY_BYTES", 0)  # the map path
    mapped = epoch()
    assert len(gathered) == len(mapped) == 5 - skip
    for got, want in zip(gathered, mapped):
        assert got[0].dtype == want[0].dtype == np.float32
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)
    # What the cap is compared with: the gathered float32 batches, here 5 x 16 images of 90 values.
    assert data._gathered_bytes(np.zeros((5, 16), np.int64)) == 5 * 16 * 90 * 4


def test_pad_and_crop_and_flip_keep_shape_and_pixels():
    images = tf.reshape(tf.range(2 * 6 * 6 * 1, dtype=tf.float32), (2, 6, 6, 1))
    seed = tf.constant([1, 2], tf.int64)
    assert np.array_equal(pad_and_crop(images, seed, padding=0), images)
    cropped = pad_and_crop(images, seed, padding=2).numpy()
    assert cropped.shape == (2, 6, 6, 1)
    assert set(np.unique(cropped)) <= set(np.unique(images.numpy())) | {0.0}
    flipped = random_flip(images, seed).numpy()
    for original, result in zip(images.numpy(), flipped):
        assert np.array_equal(result, original) or np.array_equal(result, original[:, ::-1])


def test_augmenting_non_images_is_refused():
    with pytest.raises(ValueError, match=r"`config.dataset.augment`: flip and pad-and-crop need images"):
        registry.load_dataset(_config(augment=True))


def test_unknown_dataset_is_named():
    with pytest.raises(
        ValueError,
        match=r"Invalid value for `config.dataset.name`: expected one of \('mnist1d', "
        r"'mnist', .*'imagenet2012'\). Received: name='svhn'",
    ):
        registry.load_dataset(_config(name="svhn"))


def test_missing_data_dir_says_how_to_prepare(tmp_path):
    with pytest.raises(
        tfds.DataNotPreparedError,
        match=r"Invalid value for `config.dataset.data_dir`: the "
        r"tensorflow_datasets dataset 'cifar10' is not prepared in data_dir='.*empty'.*"
        r"`tfds build cifar10 --data_dir=DIR`",
    ):
        registry.load_dataset(_config(name="cifar10", data_dir=str(tmp_path / "empty"), validation=5000))
    with pytest.raises(tfds.DataNotPreparedError, match=r"ILSVRC2012_img_train.tar"):
        registry.load_dataset(_config(name="imagenet2012", data_dir=str(tmp_path / "empty")))


def test_cifar10_from_a_prepared_data_dir(prepared):
    data = registry.load_dataset(_config(name="cifar10", data_dir=prepared, validation=8, augment=True))
    assert data.input_shape == (32, 32, 3) and data.num_classes == 10
    assert (data.size("train"), data.size("validation"), data.size("test")) == (32, 8, 12)
    x, y = _batches(data.train_batches(0, 16, seed=0))[0]
    assert x.shape == (16, 32, 32, 3) and x.dtype == np.float32 and y.shape == (16,)
    assert abs(float(x.mean())) < 1.5  # normalized
    limited = registry.load_dataset(_config(name="cifar10", data_dir=prepared, validation=8, train_limit=20))
    assert limited.size("train") == 20 and limited.size("validation") == 8
    with pytest.raises(
        ValueError, match=r"`config.dataset.validation`: 40 must be smaller than the training split"
    ):
        registry.load_dataset(_config(name="cifar10", data_dir=prepared, validation=40))


def test_imagenet_streams_deterministically_from_a_prepared_data_dir(prepared):
    data = registry.load_dataset(_config(name="imagenet2012", data_dir=prepared, validation=6))
    data.image_size = 32
    assert (data.size("train"), data.size("validation"), data.size("test")) == (24, 6, 10)
    full = _batches(data.train_batches(0, 8, seed=1))
    assert len(full) == 3 and full[0][0].shape == (8, 32, 32, 3)
    resumed = _batches(data.train_batches(0, 8, seed=1, skip=1))
    assert all(np.allclose(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(full[1:], resumed))
    assert sum(x.shape[0] for x, _ in _batches(data.eval_batches("test", 4))) == 10
