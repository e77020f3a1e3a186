"""What a level leaves in the run store: its checked start, its end ticket and its metrics.

The level loop (`level_loop.Replicate.run_level`) trains a level between
these: `check_start` writes `start.npz` (or, when a rerun finds it, checks
that the start this code computes from the stored files is the stored one,
so a run resumed by other code or options stops instead of mixing results);
after training, `write_end` writes `end.npz` and `metrics` assembles the
level's `metrics.json` record, which the loop writes once (the first
finished result wins).

Example:

```python
check_start(model, level_dir, {"level": 1, "branch": None, "replicate": 0, "what": "start"})
...  # train the level
write_end(model, level_dir, step=plan.end, metadata={"level": 1, "replicate": 0, "what": "end"})
```
"""

from __future__ import annotations

import os

import numpy as np

from tf_lottery.experiments import trainer
from tf_lottery.lottery.rewind import Snapshot
from tf_lottery.lottery.ticket import Ticket
from tf_lottery.utils import atomic_io


def check_start(model, directory: str, metadata: dict) -> None:
    """Writes the level's start (`start.npz`: masks and weights), or checks it against the stored one.

    Raises:
        ValueError: the stored start differs from `model`'s (another
            version of tf_lottery or other options made the run).
        atomic_io.DamagedFileError: the stored start cannot be read; the
            message says to delete it.
    """
    path = os.path.join(directory, "start.npz")
    start = Ticket.from_model(model, weights=Snapshot.capture(model, 0).model_values, metadata=metadata)
    if not atomic_io.exists(path):
        start.save(path)
        return
    try:
        stored = Ticket.load(path)
    except atomic_io.DamagedFileError as error:
        raise error.with_fix(
            f"Delete '{path}' and run the same command again: this level's start is computed "
            "and written anew."
        ) from error
    same = len(stored.masks) == len(start.masks) and all(
        np.array_equal(a, b) for a, b in zip(stored.masks, start.masks)
    )
    same = same and all(np.array_equal(a, b) for a, b in zip(stored.weights, start.weights))
    if not same:
        raise ValueError(
            f"The stored start of '{directory}' differs from the one this code computes from the "
            "stored files: the run was made by another version of tf_lottery or other options. "
            "Use another `--workdir` or remove this run directory."
        )


def write_end(model, directory: str, step: int, metadata: dict) -> None:
    """Writes the level's trained ticket (`end.npz`: masks and weights at data step `step`)."""
    weights = Snapshot.capture(model, step).model_values
    Ticket.from_model(model, weights=weights, metadata=metadata).save(os.path.join(directory, "end.npz"))


def metrics(
    *,
    experiment: str,
    branch: str,
    replicate: int,
    level: int,
    report,
    plan: trainer.LevelPlan,
    result: dict,
    timing: dict,
    extra: dict,
    early_stop_after: int = 0,
) -> dict:
    """The level's `metrics.json` record.

    Args:
        report: `SparsityReport` of the trained level.
        result: what `trainer.train_level` returned (`evals`, `elapsed_s`).
        timing: seconds: train, evaluate, prune_reset (pruning, rewinding,
            the start of the level) and store (its files, checkpoints
            included).
        extra: the kind's own metrics (`Training.finish`).
        early_stop_after: evaluations before this data step do not count
            for the early-stopping summary.
    """
    evals = result["evals"]
    return {
        "experiment": experiment,
        "branch": branch,
        "replicate": replicate,
        "level": level,
        "sparsity": report.sparsity,
        "percent_remaining": report.percent_remaining,
        "alive": report.alive,
        "total": report.total,
        "layers": {e.name: e.sparsity for e in report.layers},
        "start_step": plan.start,
        "end_step": plan.end,
        "evals": evals,
        "elapsed_s": result["elapsed_s"],
        "timing": {key: round(value, 4) for key, value in sorted(timing.items())},
        **trainer.summarize([e for e in evals if e["step"] >= early_stop_after] or evals),
        **extra,
    }
