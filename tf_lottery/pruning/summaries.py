"""`PruningSummaries`: a `GradualPruning` run's sparsity, layer by layer, in TensorBoard."""

from __future__ import annotations

import os

import keras
import numpy as np
import tensorflow as tf

from tf_lottery.core.naming import weight_names
from tf_lottery.core.walk import prune_wrappers
from tf_lottery.pruning.gradual import GradualPruning


def check_run_name(run) -> str:
    """`run` as a TensorBoard run directory beside Keras's own `train` and `validation`."""
    if not isinstance(run, str) or not run or os.sep in run or run in ("train", "validation"):
        raise ValueError(
            "Invalid value for argument `run`: expected a subdirectory name other than Keras's "
            f"'train' and 'validation'. Received: run={run!r}."
        )
    return run


def require_tensorboard(owner: str) -> None:
    """Raises the install advice when the `tensorboard` package (which implements `tf.summary`) is missing."""
    try:
        import tensorboard  # noqa: F401
    except ImportError as error:
        raise ImportError(
            f"{owner} needs the `tensorboard` package, which implements `tf.summary`: `pip install tensorboard`."
        ) from error


def layer_sparsities(model) -> dict[str, float]:
    """The sparsity of each pruned weight's mask, by the weight's unique path (`tf_lottery.core.naming`)."""
    names = weight_names(model)
    return {
        names[id(weight)]: 1.0 - np.count_nonzero(mask) / mask.size
        for wrapper in prune_wrappers(model)
        for weight, mask in zip(wrapper.pruned_weights, wrapper.get_masks())
    }


class PruningSummaries(keras.callbacks.Callback):
    """Writes the sparsity of each pruned weight of a `GradualPruning` run to TensorBoard.

    The counterpart of tfmot's `PruningSummaries`. Summaries go to
    `<log_dir>/pruning`, beside the `<log_dir>/train` and
    `<log_dir>/validation` runs of `keras.callbacks.TensorBoard(log_dir)`, so
    `tensorboard --logdir <log_dir>` shows training and pruning together.
    Against the training step (batches from 1, as `GradualPruning` counts
    them):

    - `layer_sparsity/<weight path>` for each pruned weight, tagged by its
      unique path in the model (`tf_lottery.core.naming`, e.g.
      `conv2d/kernel`), and `sparsity`, the sparsity of all prunable weights:
      at the step where `fit()` starts (the masks it starts from) and at
      each step where the masks changed (`gradual.events`), so each curve is
      the staircase of the masks the model trained with.

    The overall sparsity of every epoch needs no extra callback:
    `GradualPruning` writes it into `logs["sparsity"]`, which
    `keras.callbacks.TensorBoard` records as `epoch_sparsity` when listed
    after it.

    The callback reads the masks only when they have changed, so between
    pruning steps it costs one integer comparison per batch. List it after
    `GradualPruning` (as Keras's `TensorBoard` is listed after the callbacks
    whose logs it records): with `steps_per_execution > 1`, a pruning step
    inside the last block is applied when training ends, and is written only
    by a `PruningSummaries` whose `on_train_end` runs after it. Needs the
    `tensorboard` package (`tf.summary` is implemented there).

    Args:
        gradual: The `tfl.GradualPruning` of the same `fit()`.
        log_dir: str. The `log_dir` given to `keras.callbacks.TensorBoard`.
            Defaults to `"logs"`.
        run: str. Subdirectory of `log_dir` for these summaries (the run name
            in TensorBoard). Defaults to `"pruning"`.

    Example:

    ```python
    gradual = tfl.GradualPruning(tfl.PolynomialDecay(0.5, 0.8, 0, 1000))
    model.fit(x, y, epochs=4, callbacks=[
        gradual,
        keras.callbacks.TensorBoard("logs"),
        tfl.PruningSummaries(gradual, "logs"),
    ])
    # tensorboard --logdir logs
    ```
    """

    def __init__(self, gradual: GradualPruning, log_dir: str = "logs", *, run: str = "pruning"):
        super().__init__()
        if not isinstance(gradual, GradualPruning):
            raise ValueError(
                "Invalid value for argument `gradual`: expected the `tfl.GradualPruning` passed to the "
                f"same fit(). Received: gradual={gradual!r} of type {type(gradual).__name__}. "
                "For a `tfl.LotteryCallback`, use `tfl.LotterySummaries(lottery, log_dir)`."
            )
        self.run = check_run_name(run)
        require_tensorboard("PruningSummaries")
        self.gradual = gradual
        self.log_dir = os.fspath(log_dir)
        self._writer = None
        self._written = None  # how many of `gradual.events` this fit has written

    @property
    def run_dir(self) -> str:
        return os.path.join(self.log_dir, self.run)

    def on_train_begin(self, logs=None):
        self._writer = tf.summary.create_file_writer(self.run_dir)
        self._written = None

    def on_epoch_begin(self, epoch, logs=None):
        if self._written is None:
            # After every on_train_begin (GradualPruning's resets its events, BackupAndRestore
            # restores the optimizer): the step this fit starts after, and the masks it starts from.
            self._written = len(self.gradual.events)
            start = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
            self._write(start, self.gradual.sparsity)

    def on_train_batch_end(self, batch, logs=None):
        if self._written is not None and len(self.gradual.events) > self._written:
            self._write_new_events()

    def on_epoch_end(self, epoch, logs=None):
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._written is not None and len(self.gradual.events) > self._written:
            self._write_new_events()
        self._writer.close()

    def _write_new_events(self) -> None:
        new = self.gradual.events[self._written :]
        with self._writer.as_default():
            for step, sparsity in new[:-1]:  # superseded before this callback saw their masks
                tf.summary.scalar("sparsity", sparsity, step=step)
        self._write(*new[-1])
        self._written = len(self.gradual.events)

    def _write(self, step: int, sparsity: float) -> None:
        with self._writer.as_default(step=step):
            tf.summary.scalar("sparsity", sparsity)
            for tag, value in layer_sparsities(self.model).items():
                tf.summary.scalar(f"layer_sparsity/{tag}", value)
