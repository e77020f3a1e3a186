"""What the `instability` and `transfer` kinds share beyond the level loop.

Both read the runner's config groups (`dataset`, `model`, `train`,
`pruning`, `run`; see `tf_lottery.experiments.schema`) plus one group of
their own, and summarise their analyses over replicates.
"""

from __future__ import annotations

import copy
import os
import time

import ml_collections
import numpy as np

from tf_lottery.utils import atomic_io


def validate(
    config: ml_collections.ConfigDict, group: str, reference: ml_collections.ConfigDict, controls: str
) -> None:
    """Checks the runner's groups with its own schema and `config.<group>` against `reference`.

    The kind's IMP rewinds weights and optimizer, and its own `controls`
    (e.g. "its random tickets") replace `config.run.branches`.
    """
    from tf_lottery.experiments import schema

    if config.get("pruning", {}).get("retrain", "rewind") != "rewind":
        raise ValueError(
            f"Invalid value for `config.pruning.retrain`: expected 'rewind' (the {group} kind's IMP rewinds "
            f"weights and optimizer). Received: retrain={config.pruning.retrain!r}."
        )
    if schema.csv_list(config.get("run", {}).get("branches", "")):
        raise ValueError(
            f"Invalid value for `config.run.branches`: expected '' (the {group} kind's controls are "
            f"{controls}). Received: branches={config.run.branches!r}."
        )

    if group not in config:
        raise ValueError(f"Missing config group `config.{group}`: start from this experiment's `defaults()`.")
    unknown = sorted(set(config[group].keys()) - set(reference.keys()))
    if unknown:
        raise ValueError(
            f"Unknown config key `config.{group}.{unknown[0]}`."
            f"{schema.did_you_mean(f'{group}.{unknown[0]}', reference.keys())} Known keys of `config.{group}`: "
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


def finish(store, name: str, rows: list, text: str, verbose: bool, log, began: float, **extra) -> dict:
    """Writes `results/<name>.json` (atomically), logs the table when `verbose`, and returns the kind's summary.

    Returns:
        `{"root", "hash", "rows", "table", "files", "elapsed_s"}` and `extra`.
    """
    files = {"results": os.path.join(store.results_dir, f"{name}.json")}
    atomic_io.write_json(files["results"], {"rows": rows})
    if verbose:
        log(text)
        log(f"Results: {store.results_dir}")
    return {
        "root": store.root,
        "hash": store.hash,
        "rows": rows,
        "table": text,
        "files": files,
        **extra,
        "elapsed_s": time.time() - began,
    }
