"""Optimizers and learning-rate schedules from the `train` config group.

Schedules count optimizer steps (`optimizer.iterations`), so rewinding the
optimizer (`tfl.Snapshot.restore_optimizer`) also rewinds the schedule.
Weight decay defaults to the *coupled* form of PyTorch and open_lth
(`weight_decay * w` added to the gradient, so it passes through momentum);
Keras' own optimizers decay the weights directly ('decoupled').
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tf_lottery import _keras_compat
from tf_lottery.experiments.schema import csv_list
from tf_lottery.lottery.rewind import RewindPoint


def to_steps(point: str, steps_per_epoch: int) -> int:
    """`"2ep"` -> 2 * steps_per_epoch; `"500it"` -> 500."""
    return RewindPoint.parse(point).step(steps_per_epoch)


@keras.saving.register_keras_serializable(package="tf_lottery")
class LinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """Scales another schedule by `min(1, step / warmup_steps)` (open_lth's warmup).

    Args:
        schedule: A `LearningRateSchedule` or a float learning rate.
        warmup_steps: int. Steps of the linear ramp from 0.

    Reference:
        Goyal et al. 2017, arXiv:1706.02677; Frankle & Carbin 2019 use it for
        VGG-19 and ResNet-18 at learning rate 0.1.
    """

    def __init__(self, schedule, warmup_steps: int):
        self.schedule = schedule
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        base = self.schedule(step) if callable(self.schedule) else tf.constant(self.schedule, tf.float32)
        return base * tf.minimum(1.0, step / float(self.warmup_steps))

    def get_config(self):
        return {
            "schedule": keras.optimizers.schedules.serialize(self.schedule)
            if callable(self.schedule)
            else self.schedule,
            "warmup_steps": self.warmup_steps,
        }

    @classmethod
    def from_config(cls, config):
        schedule = config["schedule"]
        if isinstance(schedule, dict):
            schedule = keras.optimizers.schedules.deserialize(schedule)
        return cls(schedule, config["warmup_steps"])


def learning_rate(train, steps_per_epoch: int):
    """The learning rate or schedule that `train` describes."""
    total = to_steps(train.training_steps, steps_per_epoch)
    warmup = to_steps(train.warmup, steps_per_epoch)
    if train.schedule == "constant":
        schedule = float(train.lr)
    elif train.schedule == "step":
        boundaries = sorted(to_steps(m, steps_per_epoch) for m in csv_list(train.milestones))
        if not boundaries:
            raise ValueError(
                "Invalid value for `config.train.milestones`: schedule='step' needs at least one "
                "point, e.g. '80ep,120ep'. Received: milestones=''."
            )
        values = [float(train.lr) * float(train.gamma) ** i for i in range(len(boundaries) + 1)]
        # Keras keeps the old rate *at* a boundary; PyTorch's MultiStepLR (and
        # so open_lth) decays from the milestone step on.
        schedule = keras.optimizers.schedules.PiecewiseConstantDecay(
            [max(0, b - 1) for b in boundaries], values
        )
    else:
        schedule = keras.optimizers.schedules.CosineDecay(float(train.lr), decay_steps=max(1, total))
    return LinearWarmup(schedule, warmup) if warmup > 0 else schedule


def _coupled(base: type) -> type:
    class CoupledWeightDecay(base):
        """`base` with `coupled_weight_decay * w` added to every gradient."""

        def __init__(self, coupled_weight_decay: float, **kwargs):
            super().__init__(**kwargs)
            self.coupled_weight_decay = float(coupled_weight_decay)

        def apply(self, grads, trainable_variables=None):
            variables = (
                trainable_variables
                if trainable_variables is not None
                else _keras_compat.optimizer_trainable_variables(self)
            )
            grads = [
                g if g is None else tf.convert_to_tensor(g) + self.coupled_weight_decay * v.value
                for g, v in zip(grads, variables)
            ]
            return super().apply(grads, trainable_variables)

    CoupledWeightDecay.__name__ = f"{base.__name__}CoupledWeightDecay"
    return CoupledWeightDecay


def build_optimizer(train, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """A Keras optimizer for the `train` config group.

    Example:

    ```python
    optimizer = build_optimizer(config.train, steps_per_epoch=390)
    ```
    """
    rate = learning_rate(train, steps_per_epoch)
    if train.optimizer == "sgd":
        base, kwargs = (
            keras.optimizers.SGD,
            {"momentum": float(train.momentum), "nesterov": bool(train.nesterov)},
        )
    else:
        base, kwargs = keras.optimizers.Adam, {}
    decay = float(train.weight_decay)
    if decay and train.weight_decay_mode == "coupled":
        return _coupled(base)(decay, learning_rate=rate, **kwargs)
    if decay:
        kwargs["weight_decay"] = decay
    return base(learning_rate=rate, **kwargs)
