"""Datasets by name: `load_dataset(config.dataset)` -> a batching pipeline.

Every pipeline has `input_shape`, `num_classes`, `num_train`, `size(split)`,
`steps_per_epoch(batch_size)`, `train_batches(epoch, batch_size, seed,
skip=0)` (deterministic per `(seed, epoch)`) and `eval_batches(split)`.
"""

from __future__ import annotations

import dataclasses

from tf_lottery.data import tfds, transforms
from tf_lottery.data.mnist1d import load_mnist1d
from tf_lottery.data.pipeline import ArrayPipeline

IN_MEMORY_TFDS = ("mnist", "fashion_mnist", "cifar10", "cifar100")
NAMES = ("mnist1d", *IN_MEMORY_TFDS, "imagenet2012")
# name: (input shape, classes); MNIST-1D's length is its generator's default.
SHAPES = {
    "mnist1d": ((40,), 10),
    "mnist": ((28, 28, 1), 10),
    "fashion_mnist": ((28, 28, 1), 10),
    "cifar10": ((32, 32, 3), 10),
    "cifar100": ((32, 32, 3), 100),
    "imagenet2012": ((224, 224, 3), 1000),
}


def load_dataset(config):
    """Builds the pipeline that `config` (a `config.dataset` group) names.

    Args:
        config: ConfigDict or mapping with `name`, `data_dir`, `validation`,
            `augment`, `train_limit`, and for MNIST-1D `num_samples` and
            `generator_seed`; optionally open_lth's `subsample_fraction`,
            `random_labels_fraction` and `transformation_seed` (see
            `transforms.py` and `tf_lottery.experiments.schema`).

    Example:

    ```python
    data = load_dataset({"name": "cifar10", "data_dir": "/data/tfds", "validation": 5000,
                         "augment": True, "train_limit": 0})
    for x, y in data.train_batches(epoch=0, batch_size=128, seed=0).take(1):
        print(x.shape)  # (128, 32, 32, 3)
    ```
    """
    pipeline = _load(config)
    subsample = float(config.get("subsample_fraction", 1.0))
    relabel = float(config.get("random_labels_fraction", 0.0))
    if subsample == 1.0 and relabel == 0.0:
        return pipeline
    if not isinstance(pipeline, ArrayPipeline):
        raise ValueError(
            f"Invalid value for `config.dataset.name`: subsampling and random labels need a dataset "
            f"held in memory, not the streamed {pipeline.name!r}. Received: name={config['name']!r}."
        )
    x, y = transforms.transform_training_set(
        pipeline.x_train,
        pipeline.y_train,
        pipeline.num_classes,
        subsample,
        relabel,
        int(config.get("transformation_seed", 0)),
    )
    return dataclasses.replace(pipeline, x_train=x, y_train=y)


def _load(config):
    name = str(config["name"]).lower()
    validation = int(config["validation"])
    limit = int(config["train_limit"])
    data_dir = config["data_dir"] or None
    if name == "mnist1d":
        (x, y), (x_val, y_val), (x_test, y_test) = load_mnist1d(
            seed=int(config["generator_seed"]), num_samples=int(config["num_samples"]), validation=validation
        )
        if limit:
            x, y = x[:limit], y[:limit]
        return ArrayPipeline(
            "mnist1d", x, y, x_val, y_val, x_test, y_test, num_classes=10, augment=config["augment"]
        )
    if name in IN_MEMORY_TFDS:
        return tfds.load_in_memory(name, data_dir, validation, bool(config["augment"]), limit)
    if name == "imagenet2012":
        return tfds.load_imagenet(data_dir, validation, limit)
    raise ValueError(
        f"Invalid value for `config.dataset.name`: expected one of {NAMES}. Received: name={name!r}."
    )
