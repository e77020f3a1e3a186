"""tensorflow_datasets sources: MNIST, Fashion-MNIST, CIFAR-10/100, ImageNet.

These read a *prepared* tfds `data_dir` and never download: without data
they fail with a message that says how to prepare it on a machine with
internet access. The validation split is held out of the end of `train`.

The small datasets are read whole into memory once (see `ArrayPipeline`);
ImageNet is streamed from its TFRecords with a per-epoch deterministic file
order, shuffle buffer and stateless augmentation (`ImageNetPipeline`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from tf_lottery.data.pipeline import SPLITS, ArrayPipeline

# name: (normalization mean, std), on [0, 1] pixel values.
STATISTICS = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class DataNotPreparedError(FileNotFoundError):
    """The tfds dataset is not prepared in the given `data_dir`."""


def default_data_dir() -> str:
    import tensorflow_datasets as tfds

    return os.environ.get("TFDS_DATA_DIR") or os.path.expanduser(tfds.core.constants.DATA_DIR)


def prepared_builder(name: str, data_dir: str | None):
    """The tfds builder of `name` in `data_dir`, checked to be prepared."""
    import tensorflow_datasets as tfds

    directory = data_dir or default_data_dir()
    try:
        builder = tfds.builder(name, data_dir=directory)
        prepared = builder.is_prepared()
    except Exception as error:  # tfds raises many types for a missing/corrupt dir
        builder, prepared = None, False
        reason = f" ({type(error).__name__}: {error})"
    else:
        reason = ""
    if not prepared:
        manual = (
            f" ImageNet cannot be downloaded automatically: put ILSVRC2012_img_train.tar and "
            f"ILSVRC2012_img_val.tar in {os.path.join(directory, 'downloads', 'manual')} first."
            if name == "imagenet2012"
            else ""
        )
        raise DataNotPreparedError(
            f"Invalid value for `config.dataset.data_dir`: the tensorflow_datasets dataset '{name}' "
            f"is not prepared in data_dir={directory!r}{reason}. This machine cannot download it. "
            f"On a machine with internet access run `tfds build {name} --data_dir=DIR` (or in Python "
            f"`tfds.builder({name!r}, data_dir='DIR').download_and_prepare()`), copy DIR here and pass "
            f"`--config.dataset.data_dir=DIR`.{manual}"
        )
    return builder


def split_names(num_train_examples: int, validation: int, train_limit: int = 0) -> dict:
    """tfds split strings for train / validation / test with `validation` held out of train."""
    if validation >= num_train_examples:
        raise ValueError(
            f"Invalid value for `config.dataset.validation`: {validation} must be smaller than the "
            f"training split ({num_train_examples} examples)."
        )
    end = num_train_examples - validation
    train_end = min(end, train_limit) if train_limit else end
    return {
        "train": f"train[:{train_end}]",
        "validation": f"train[{end}:]" if validation else None,
        "test": "test",
    }


def _as_arrays(builder, split):
    import tensorflow_datasets as tfds

    if split is None:
        return None, None
    images, labels = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1, as_supervised=True))
    return np.asarray(images), np.asarray(labels, np.int64)


def load_in_memory(
    name: str, data_dir: str | None, validation: int, augment: bool, train_limit: int = 0
) -> ArrayPipeline:
    """MNIST, Fashion-MNIST or CIFAR-10/100 from a prepared tfds `data_dir`, in memory."""
    builder = prepared_builder(name, data_dir)
    splits = split_names(builder.info.splits["train"].num_examples, validation, train_limit)
    x_train, y_train = _as_arrays(builder, splits["train"])
    x_val, y_val = _as_arrays(builder, splits["validation"])
    x_test, y_test = _as_arrays(builder, splits["test"])
    if x_val is None:
        x_val, y_val = x_train[:0], y_train[:0]
    mean, std = STATISTICS[name]
    return ArrayPipeline(
        name=name,
        x_train=x_train,
        y_train=y_train,
        x_val=x_val,
        y_val=y_val,
        x_test=x_test,
        y_test=y_test,
        num_classes=builder.info.features["label"].num_classes,
        mean=mean,
        std=std,
        scale=255.0,
        augment=augment,
    )


@dataclass
class ImageNetPipeline:
    """ImageNet (tfds `imagenet2012`) streamed from a prepared `data_dir`.

    Training: random-resized crop to `image_size` (scale 0.08-1, aspect
    3/4-4/3) and random flip, with stateless draws seeded by
    `(seed, epoch, example)`; evaluation: resize to 1.14x and center crop.
    The tfds `validation` split is the test set.
    """

    builder: object
    splits: dict
    num_train: int
    num_validation: int
    num_test: int
    image_size: int = 224
    shuffle_buffer: int = 10_000
    name: str = "imagenet2012"
    num_classes: int = 1000

    @property
    def input_shape(self) -> tuple:
        return (self.image_size, self.image_size, 3)

    def size(self, split: str) -> int:
        return {"train": self.num_train, "validation": self.num_validation, "test": self.num_test}[split]

    def steps_per_epoch(self, batch_size: int) -> int:
        return max(1, self.num_train // batch_size)

    def _normalize(self, image):
        image = tf.cast(image, tf.float32) / 255.0
        return (image - tf.constant(IMAGENET_MEAN)) / tf.constant(IMAGENET_STD)

    def _train_example(self, seed, example):
        encoded, label = example["image"], example["label"]
        shape = tf.image.extract_jpeg_shape(encoded)
        begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
            shape,
            bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]),
            seed=seed,
            area_range=(0.08, 1.0),
            aspect_ratio_range=(3 / 4, 4 / 3),
            max_attempts=10,
            use_image_if_no_bounding_boxes=True,
        )
        window = tf.stack([begin[0], begin[1], size[0], size[1]])
        image = tf.image.decode_and_crop_jpeg(encoded, window, channels=3)
        image = tf.image.resize(image, [self.image_size, self.image_size])
        image = tf.image.stateless_random_flip_left_right(image, seed=seed + 1)
        return self._normalize(image), label

    def _eval_example(self, example):
        image = tf.image.decode_jpeg(example["image"], channels=3)
        resize = int(self.image_size * 256 / 224)
        image = tf.image.resize(image, [resize, resize])
        image = tf.image.resize_with_crop_or_pad(image, self.image_size, self.image_size)
        return self._normalize(image), example["label"]

    def train_batches(self, epoch: int, batch_size: int, seed: int, skip: int = 0) -> tf.data.Dataset:
        import tensorflow_datasets as tfds

        epoch_seed = int(np.random.default_rng([int(seed), int(epoch)]).integers(2**31 - 1))
        dataset = self.builder.as_dataset(
            split=self.splits["train"],
            shuffle_files=True,
            read_config=tfds.ReadConfig(shuffle_seed=epoch_seed),
            decoders={"image": tfds.decode.SkipDecoding()},
        )
        dataset = dataset.shuffle(self.shuffle_buffer, seed=epoch_seed, reshuffle_each_iteration=False)
        dataset = dataset.take(self.steps_per_epoch(batch_size) * batch_size).enumerate()
        dataset = dataset.skip(int(skip) * batch_size)
        dataset = dataset.map(
            lambda index, example: self._train_example(
                tf.stack([tf.cast(epoch_seed, tf.int64), index]), example
            ),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        return dataset.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)

    def eval_batches(self, split: str, batch_size: int = 256) -> tf.data.Dataset | None:
        import tensorflow_datasets as tfds

        if split not in SPLITS:
            raise ValueError(
                f"Invalid value for argument `split`: expected one of {SPLITS}. Received: {split!r}."
            )
        if self.splits.get(split) is None:
            return None
        dataset = self.builder.as_dataset(
            split=self.splits[split], decoders={"image": tfds.decode.SkipDecoding()}
        )
        dataset = dataset.map(self._eval_example, num_parallel_calls=tf.data.AUTOTUNE)
        return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def load_imagenet(data_dir: str | None, validation: int, train_limit: int = 0) -> ImageNetPipeline:
    """ImageNet from a prepared tfds `data_dir` (see `ImageNetPipeline`)."""
    builder = prepared_builder("imagenet2012", data_dir)
    total = builder.info.splits["train"].num_examples
    splits = split_names(total, validation, train_limit)
    splits["test"] = "validation"
    num_train = min(total - validation, train_limit) if train_limit else total - validation
    return ImageNetPipeline(
        builder=builder,
        splits=splits,
        num_train=num_train,
        num_validation=validation,
        num_test=builder.info.splits["validation"].num_examples,
    )
