"""TensorBoard event files of a run's levels (`config.run.tensorboard`).

Every level of every replicate, line and branch writes the curves a user
watches at each evaluation: `train/loss` (the mean training loss since the
previous evaluation), `val/loss`, `val/accuracy`, `test/...` and
`train_eval/...` where evaluated, and `sparsity` (of the prunable weights,
which changes while gradual pruning trains), against the data step. The
layout is one TensorBoard run per level:

    <run directory>/tensorboard/replicate_<r>/level_<k>/            (the main line)
    <run directory>/tensorboard/replicate_<r>/<branch>/level_<k>/   (arms and controls)

so `tensorboard --logdir <run directory>/tensorboard` lists them all and
filters by replicate, branch and level. A level resumed after a kill writes
the evaluations after its checkpoint again (TensorBoard shows both points
at those steps; their values are the same).
"""

from __future__ import annotations

import os

import tensorflow as tf

DIRECTORY = "tensorboard"


def level_dir(root: str, replicate: int, level: int, branch: str | None = None) -> str:
    """Where the events of one level go (see the module docstring)."""
    parts = [root, DIRECTORY, f"replicate_{replicate}"]
    if branch is not None:
        parts.append(branch)
    return os.path.join(*parts, f"level_{level}")


def tag(key: str) -> str:
    """`'val_accuracy'` -> `'val/accuracy'`, `'train_eval_loss'` -> `'train_eval/loss'`."""
    prefix, _, name = key.rpartition("_")
    return f"{prefix}/{name}" if prefix else key


class LevelSummaries:
    """Writes one level's evaluations to its event file (opened at the first write)."""

    def __init__(self, directory: str):
        self.directory = directory
        self._writer = None

    def write(self, record: dict, sparsity: float | None = None) -> None:
        """Writes an evaluation record (`step` and metrics) and the sparsity at that step."""
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.directory)
        step = int(record["step"])
        with self._writer.as_default():
            for key, value in record.items():
                if key != "step":
                    tf.summary.scalar(tag(key), float(value), step=step)
            if sparsity is not None:
                tf.summary.scalar("sparsity", float(sparsity), step=step)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
