"""`LotterySummaries`: a `LotteryCallback`'s rounds and masks in TensorBoard."""

from __future__ import annotations

import os

import keras
import numpy as np
import tensorflow as tf

from tf_lottery.core.naming import weight_names
from tf_lottery.core.walk import prune_wrappers
from tf_lottery.lottery.callback import LotteryCallback
from tf_lottery.pruning.gradual import GradualPruning
from tf_lottery.pruning.summaries import check_run_name, require_tensorboard


class LotterySummaries(keras.callbacks.Callback):
    """Writes the pruning side of an IMP run as TensorBoard summaries.

    Summaries go to `<log_dir>/pruning`, beside the `<log_dir>/train` and
    `<log_dir>/validation` runs of `keras.callbacks.TensorBoard(log_dir)`, so
    `tensorboard --logdir <log_dir>` shows training and pruning together:

    - against the epoch, like Keras's `epoch_loss`: `epoch_sparsity` and
      `epoch_percent_remaining`, the masks each epoch trains with (a staircase
      beside the loss curves);
    - against the round (step `r` is the network trained in round `r`):
      `round/sparsity`, `round/percent_remaining`, `round/<metric>` for each
      metric of the round's last epoch, `round/best_<monitor>` and
      `round/early_stop_step`, from `lottery.history`;
    - mask statistics against the round, taken when the round starts, for each
      pruned weight, tagged by its unique path in the model
      (`tf_lottery.core.naming`, e.g.
      `gpt2_backbone/transformer_layer_0/self_attention/query/kernel`):
      `layer_sparsity/...`,
      `dead_units/...` (output units, along the last axis, with no weight
      left), and the histograms `alive_per_unit/...` (surviving weights per
      output unit) and `weights/...` (the surviving values the round starts
      from, e.g. the rewound ones).

    The callback only reads `lottery.history` and the model's masks, so its
    place in the `callbacks` list does not matter. Needs the `tensorboard`
    package (`tf.summary` is implemented there).

    Args:
        lottery: The `LotteryCallback` of the same `fit()`.
        log_dir: str. The `log_dir` given to `keras.callbacks.TensorBoard`.
            Defaults to `"logs"`.
        run: str. Subdirectory of `log_dir` for these summaries (the run
            name in TensorBoard). Defaults to `"pruning"`.
        histograms: bool. Write the per-weight histograms. Defaults to `True`.

    Example:

    ```python
    lottery = tfl.LotteryCallback(rounds=5, pruning_rate=0.2)
    model.fit(x, y, validation_split=0.1, epochs=50, callbacks=[
        lottery,
        keras.callbacks.TensorBoard("logs"),
        tfl.LotterySummaries(lottery, "logs"),
    ])
    # tensorboard --logdir logs
    ```
    """

    def __init__(
        self,
        lottery: LotteryCallback,
        log_dir: str = "logs",
        *,
        run: str = "pruning",
        histograms: bool = True,
    ):
        super().__init__()
        if not isinstance(lottery, LotteryCallback):
            hint = (
                " For a `tfl.GradualPruning`, use `tfl.PruningSummaries(gradual, log_dir)`."
                if isinstance(lottery, GradualPruning)
                else ""
            )
            raise ValueError(
                "Invalid value for argument `lottery`: expected the `tfl.LotteryCallback` passed to the "
                f"same fit(). Received: lottery={lottery!r} of type {type(lottery).__name__}.{hint}"
            )
        self.run = check_run_name(run)
        require_tensorboard("LotterySummaries")
        self.lottery = lottery
        self.log_dir = os.fspath(log_dir)
        self.histograms = bool(histograms)
        self._writer = None
        self._records_written = 0
        self._rounds_described: set[int] = set()

    @property
    def run_dir(self) -> str:
        return os.path.join(self.log_dir, self.run)

    def on_train_begin(self, logs=None):
        # A LotteryCallback that runs all rounds in one fit() starts afresh;
        # one that trains a round per fit() carries its history over.
        if not self.lottery.one_round_per_fit or len(self.lottery.history) < self._records_written:
            self._records_written = 0
            self._rounds_described = set()
        self._writer = tf.summary.create_file_writer(self.run_dir)

    def on_epoch_begin(self, epoch, logs=None):
        masks = [mask for wrapper in prune_wrappers(self.model) for mask in wrapper.get_masks()]
        total = sum(mask.size for mask in masks)
        alive = sum(int(np.count_nonzero(mask)) for mask in masks)
        with self._writer.as_default(step=epoch):
            tf.summary.scalar("epoch_sparsity", 1.0 - alive / total if total else 0.0)
            tf.summary.scalar("epoch_percent_remaining", 100.0 * alive / total if total else 100.0)
        round_index = self.lottery.current_round
        if round_index not in self._rounds_described:
            self._rounds_described.add(round_index)
            self._describe_masks(round_index)

    def on_epoch_end(self, epoch, logs=None):
        self._write_new_rounds()
        self._writer.flush()

    def on_train_end(self, logs=None):
        self._write_new_rounds()
        self._writer.close()

    def _write_new_rounds(self) -> None:
        with self._writer.as_default():
            for record in self.lottery.history[self._records_written :]:
                step = record["round"]
                if "sparsity" in record:
                    tf.summary.scalar("round/sparsity", record["sparsity"], step=step)
                    tf.summary.scalar("round/percent_remaining", record["percent_remaining"], step=step)
                for name, value in record.get("metrics", {}).items():
                    tf.summary.scalar(f"round/{name}", value, step=step)
                if record.get("best") is not None:
                    # LotteryCallback falls back to the training loss without validation data.
                    monitor = self.lottery.monitor if self.lottery.monitor in record["metrics"] else "loss"
                    tf.summary.scalar(f"round/best_{monitor}", record["best"], step=step)
                if record.get("early_stop_step") is not None:
                    tf.summary.scalar("round/early_stop_step", record["early_stop_step"], step=step)
        self._records_written = len(self.lottery.history)

    def _describe_masks(self, step: int) -> None:
        names = weight_names(self.model)
        with self._writer.as_default(step=step):
            for wrapper in prune_wrappers(self.model):
                for weight, mask in zip(wrapper.pruned_weights, wrapper.get_masks()):
                    tag = names[id(weight)]
                    alive_per_unit = mask.reshape(-1, mask.shape[-1]).sum(axis=0)
                    tf.summary.scalar(f"layer_sparsity/{tag}", 1.0 - np.count_nonzero(mask) / mask.size)
                    tf.summary.scalar(f"dead_units/{tag}", int(np.sum(alive_per_unit == 0)))
                    if self.histograms:
                        tf.summary.histogram(f"alive_per_unit/{tag}", alive_per_unit)
                        value = keras.ops.convert_to_numpy(weight.value)
                        tf.summary.histogram(f"weights/{tag}", value[mask])
