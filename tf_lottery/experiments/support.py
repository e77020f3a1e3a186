"""What the `instability` and `transfer` kinds share beyond the level loop.

Both read the runner's config groups (`dataset`, `model`, `train`,
`pruning`, `run`; see `tf_lottery.experiments.schema`) plus one group of
their own, and summarise their analyses over replicates.
"""

from __future__ import annotations

import copy

import ml_collections
import numpy as np


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


def summary(values) -> dict:
    """`{"mean", "min", "max", "n"}` of a list of numbers."""
    values = [float(v) for v in values]
    return {"mean": float(np.mean(values)), "min": min(values), "max": max(values), "n": len(values)}
