"""Building blocks of the `instability` and `transfer` experiments.

They read the experiment runner's config groups (`dataset`, `model`,
`train`, `pruning`, `run`; see `tf_lottery.experiments.schema`) plus one
group of their own, and train with the runner's data pipelines, model
registry and optimizers. Training is counted in *data steps* as in the
runner: data step `s` is batch `s % steps_per_epoch` of epoch
`s // steps_per_epoch` of the order drawn from a seed, so two copies with
different seeds see different data orders and a copy rewound to step `k`
continues with the batches after `k`.
"""

from __future__ import annotations

import copy
import fnmatch

import keras
import ml_collections
import numpy as np

from tf_lottery.core.prunable import prunable
from tf_lottery.core.walk import prune_wrappers
from tf_lottery.lottery.rewind import RewindPoint, Snapshot, reset_for_retrain
from tf_lottery.pruning import pruner as pruning


def validate(config: ml_collections.ConfigDict, group: str, reference: ml_collections.ConfigDict) -> None:
    """Checks the runner's groups with its own schema and `config.<group>` against `reference`."""
    from tf_lottery.experiments import schema

    if group not in config:
        raise ValueError(f"Missing config group `config.{group}`: start from this experiment's `defaults()`.")
    unknown = sorted(set(config[group].keys()) - set(reference.keys()))
    if unknown:
        raise ValueError(
            f"Unknown config key `config.{group}.{unknown[0]}`. Known keys of `config.{group}`: "
            f"{sorted(reference.keys())}."
        )
    base = copy.deepcopy(config)
    with base.unlocked():
        del base[group]
        base.experiment = "lottery"
    schema.validate(base)


def steps(point: str, steps_per_epoch: int) -> int:
    """`"2ep"` -> `2 * steps_per_epoch`, `"500it"` -> 500."""
    return RewindPoint.parse(point).step(steps_per_epoch)


def build(config, data, seed: int, num_classes: int | None = None) -> keras.Model:
    """The config's model, prunable (minus `pruning.exclude`), compiled, optimizer built."""
    from tf_lottery.experiments.optimizers import build_optimizer
    from tf_lottery.experiments.schema import csv_list
    from tf_lottery.models import build_model

    keras.utils.set_random_seed(int(seed))
    options = {k: v for k, v in config.model.items() if k != "name"}
    base = build_model(config.model.name, data.input_shape, num_classes or data.num_classes, **options)
    patterns = csv_list(config.pruning.exclude)
    exclude = (lambda layer: any(fnmatch.fnmatchcase(layer.name, p) for p in patterns)) if patterns else None
    model = prunable(base, exclude=exclude)
    model.compile(
        optimizer=build_optimizer(config.train, data.steps_per_epoch(int(config.train.batch_size))),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        steps_per_execution=int(config.run.steps_per_execution),
    )
    model.optimizer.build(model.trainable_variables)
    return model


def train(model, data, start: int, stop: int, batch_size: int, seed: int) -> float:
    """Trains data steps `[start, stop)` of the order drawn from `seed`; returns the last loss."""
    if stop <= start:
        return float("nan")
    steps_per_epoch = data.steps_per_epoch(batch_size)
    parts, position = [], start
    while position < stop:
        epoch, batch = divmod(position, steps_per_epoch)
        count = min(stop - position, steps_per_epoch - batch)
        parts.append(data.train_batches(epoch, batch_size, seed, skip=batch).take(count))
        position += count
    dataset = parts[0]
    for part in parts[1:]:
        dataset = dataset.concatenate(part)
    history = model.fit(dataset, epochs=1, verbose=0, shuffle=False)
    loss = float(history.history["loss"][-1])
    if not np.isfinite(loss):
        raise FloatingPointError(
            f"Training diverged (loss={loss} before data step {stop}). Lower `config.train.lr`."
        )
    return loss


def masks(model) -> list[np.ndarray]:
    return [m for wrapper in prune_wrappers(model) for m in wrapper.get_masks()]


def set_masks(model, values) -> None:
    position = 0
    for wrapper in prune_wrappers(model):
        count = len(wrapper.masks)
        wrapper.set_masks(values[position : position + count])
        position += count


def pruned_values(model) -> list[np.ndarray]:
    """Values of the pruned weights (kernels), in mask order."""
    return [
        np.array(keras.ops.convert_to_numpy(w.value), copy=True)
        for wrapper in prune_wrappers(model)
        for w in wrapper.pruned_weights
    ]


def imp(
    model,
    data,
    config,
    rewind: Snapshot,
    trained_values: list,
    levels: int,
    seed: int,
    on_level=None,
) -> list[np.ndarray]:
    """Iterative magnitude pruning from a trained dense network, rewinding to `rewind`.

    Level `l` (1..levels) prunes the network trained at level `l - 1`
    (level 0: `trained_values`) by `config.pruning.rate` of its surviving
    weights (`scope`, `layer_rates` as configured), rewinds weights and
    optimizer to `rewind`, and, except for the last level, trains to the
    end of training with data order `seed`. The model is left at the rewind
    point with the level-`levels` masks, untrained.

    Args:
        on_level: Optional `f(level, model)` called after each level's
            training (the model then holds that level's trained network).

    Returns:
        The final masks.
    """
    from tf_lottery.experiments.schema import parse_rates

    batch_size = int(config.train.batch_size)
    total = steps(config.train.training_steps, data.steps_per_epoch(batch_size))
    rates = parse_rates(config.pruning.layer_rates)
    set_masks(model, [np.ones(m.shape, bool) for m in masks(model)])
    Snapshot(trained_values, [], 0).restore_weights(model)
    for level in range(1, levels + 1):
        pruning.prune(model, float(config.pruning.rate), scope=config.pruning.scope, layer_rates=rates)
        reset_for_retrain(model, "rewind", rewind)
        if level < levels or on_level is not None:
            train(model, data, rewind.step, total, batch_size, seed)
            if on_level is not None:
                on_level(level, model)
            if level == levels:
                reset_for_retrain(model, "rewind", rewind)
    return masks(model)


def summary(values) -> dict:
    """`{"mean", "min", "max", "n"}` of a list of numbers."""
    values = [float(v) for v in values]
    return {"mean": float(np.mean(values)), "min": min(values), "max": max(values), "n": len(values)}


def cached_replicates(root: str, replicates: int, fmt: str, run_one) -> list:
    """Rows of every replicate, reusing each finished one's `replicate_<r>.json`.

    Args:
        root: Run directory.
        replicates: Number of replicates.
        fmt: Format tag stored with the rows; a file with another tag is redone.
        run_one: `run_one(replicate) -> rows` for a replicate not finished yet.
    """
    import json
    import os

    from tf_lottery.utils import atomic_io

    rows = []
    for replicate in range(replicates):
        path = os.path.join(root, f"replicate_{replicate}.json")
        if os.path.exists(path):
            with open(path) as handle:
                stored = json.load(handle)
            if stored.get("format") == fmt:
                rows.extend(stored["rows"])
                continue
        replicate_rows = run_one(replicate)
        atomic_io.write_json(path, {"format": fmt, "rows": replicate_rows})
        rows.extend(replicate_rows)
    return rows
