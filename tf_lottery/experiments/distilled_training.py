"""Training a line on a teacher's soft labels: what the level loop plugs in for KD lines.

The teacher is the replicate's trained dense network (level 0), frozen; the
student is the replicate's own model, trained by a `KDDistiller` that shares
the student's optimizer, so checkpoints and rewinds hold its state as for
any level. With a deterministic pipeline the teacher's logits are computed
once and gathered into each batch with its examples.

Reference:
    Ma et al., "Good Students Play Big Lottery Better", 2021, arXiv:2101.03255.
"""

from __future__ import annotations

import keras
import ml_collections
import numpy as np
import tensorflow as tf

from tf_lottery.core.strip import strip
from tf_lottery.distillation.distiller import KDDistiller
from tf_lottery.distillation.teacher_logits import INPUTS_KEY, TEACHER_LOGITS_KEY
from tf_lottery.experiments import xla


class _TeacherLogitsData:
    """A pipeline whose training batches carry the teacher's cached logits."""

    def __init__(self, data, logits: np.ndarray):
        self._data, self._logits = data, logits

    def __getattr__(self, name):
        return getattr(self._data, name)

    def train_batches(self, epoch: int, batch_size: int, seed: int, skip: int = 0):
        batches = self._data.train_batches(epoch, batch_size, seed, skip=skip, extra=self._logits)
        return batches.map(lambda xt, y: ({INPUTS_KEY: xt[0], TEACHER_LOGITS_KEY: xt[1]}, y))


class DistilledTraining:
    """The teacher, the distiller and the training data of a replicate's KD lines (built once).

    Args:
        kd: ConfigDict. The run's `config.kd` group (`weight`,
            `temperature`, `cache_teacher_logits`).
        context: `level_context.LevelContext`. The replicate: its model
            (the student), its data, its strategy (where the teacher and
            the distiller are built) and its finished level 0 (the teacher).
    """

    def __init__(self, kd: ml_collections.ConfigDict, context):
        self.kd, self.context = kd, context
        self.model, self.data = context.model, context.data
        self.strategy: tf.distribute.Strategy = context.services.strategy
        self._teacher = None
        self._distiller = None
        self._data = None

    def teacher(self) -> keras.Model:
        """The trained dense network, stripped and frozen (sets the model to it the first time)."""
        if self._teacher is None:
            self.context.load_end(0)
            with self.strategy.scope():
                teacher = strip(self.model)
            teacher.trainable = False
            self._teacher = teacher
        return self._teacher

    def fitting(self):
        """`(distiller, training data or None)`; call before setting the level's start."""
        if self._distiller is None:
            kd = self.kd
            with self.strategy.scope():
                distiller = KDDistiller(self.teacher(), self.model, float(kd.weight), float(kd.temperature))
                # The student's own optimizer: its state is what checkpoints and rewinds hold.
                distiller.compile(
                    optimizer=self.model.optimizer,
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                    steps_per_execution=self.model.steps_per_execution,
                )
                # XLA as the student has it (`config.run.jit_compile`, see `xla.py`).
                xla.apply(distiller, bool(self.model.jit_compile))
            self._distiller = distiller
            if kd.cache_teacher_logits and not getattr(self.data, "augment", True):
                # Same inputs every epoch: the teacher's logits are computed once.
                logits = self.teacher().predict(self.data.eval_batches("train"), verbose=0)
                self._data = _TeacherLogitsData(self.data, np.asarray(logits, np.float32))
        return self._distiller, self._data
