"""`KDDistiller`: trains a (masked) student on a frozen teacher's soft labels."""

from __future__ import annotations

import keras

from tf_lottery import _keras_compat
from tf_lottery.distillation.losses import SoftLabelKL, label_loss
from tf_lottery.distillation.teacher_logits import split_cached_inputs
from tf_lottery.utils import validation


def _output_shape(model: keras.Model):
    outputs = getattr(model, "outputs", None)
    if not outputs or len(outputs) != 1:
        return None
    return tuple(outputs[0].shape)


@keras.saving.register_keras_serializable(package="tf_lottery")
class KDDistiller(keras.distillation.Distiller):
    """Trains a student on a frozen teacher's soft labels (a KD ticket).

    The loss is the one of Ma et al. (2021) (Hinton et al. 2015):

        kd_weight * T**2 * KL(softmax(z_teacher / T) || softmax(z_student / T))
            + (1 - kd_weight) * CE(y, z_student)

    `kd_weight` scales the distillation (soft-label) term and the label
    cross-entropy gets the rest, so `kd_weight=0` is plain training and
    `kd_weight=1` distillation alone. (The keras.io distillation example's
    `alpha` weights the label term instead; `keras.distillation.Distiller`'s
    `student_loss_weight` is `1 - kd_weight`.) The distillation term is
    `SoftLabelKL(temperature)`; its `T**2` factor keeps the soft-label
    gradients on the scale of the hard-label ones.

    The teacher is frozen and runs in inference mode. Its logits can instead
    be cached and streamed with the data (see `with_teacher_logits`): a batch
    whose `x` is `{"inputs": x, "teacher_logits": t}` is distilled from `t`,
    and the teacher is not run at all in that step. Batches of plain `x` (an
    augmented pipeline, validation data) call the teacher.

    Like `keras.distillation.Distiller`, the train step is Keras' own (only
    `call` and `compute_loss` are overridden), so it runs under every
    `tf.distribute` strategy; with static shapes and no host code it also
    compiles with XLA, as TPUs need. (Under `MultiWorkerMirroredStrategy`,
    Keras 3.15's `fit()` fails for every model, keras-team/keras#20585: run
    `train_step` from a custom loop there.) Both loss terms are reduced the Keras way, scaled by the
    number of replicas, so the gradients are the same with 1 or N replicas,
    and the logged `student_loss`/`distillation_loss`/`total_loss` are
    per-example means on every strategy. The student's regularization losses
    (e.g. `kernel_regularizer`) are added.

    The distiller defines `lottery_target()`, so `tf_lottery` pruning,
    `LotteryCallback`, `Snapshot`, `Ticket` and `sparsity_report` act on the
    student only: the teacher is never pruned nor rewound.

    The student must output logits (no softmax); compile with a label loss
    that takes logits (the default).

    Args:
        teacher: A trained `keras.Model` with logits out. It is frozen.
        student: A `keras.Model` (typically `tfl.prunable(...)`) with logits
            of the teacher's shape.
        kd_weight: float in [0, 1]. Weight of the distillation term; the
            label cross-entropy is weighted `1 - kd_weight`. Defaults to
            `0.9` (the paper's value).
        temperature: float > 0. Softmax temperature `T` of the soft labels.
            Defaults to `5.0` (the paper's CIFAR value).
        name: str. Defaults to `"kd_distiller"`.
        **kwargs: Base `keras.Model` arguments.

    Example:

    ```python
    student = tfl.prunable(make_model())
    distiller = KDDistiller(teacher, student, kd_weight=0.9, temperature=5.0)
    distiller.compile(optimizer="adam", metrics=["accuracy"])
    lottery = tfl.LotteryCallback(rounds=3, pruning_rate=0.5)
    train = with_teacher_logits(x_train, y_train, teacher, batch_size=100)
    distiller.fit(train, epochs=3 * 10, callbacks=[lottery])
    ticket_model = tfl.strip(distiller.student)
    ```

    Reference:
        Ma et al., "Good Students Play Big Lottery Better", 2021,
        arXiv:2101.03255; Hinton et al., "Distilling the Knowledge in a
        Neural Network", 2015, arXiv:1503.02531.
    """

    def __init__(
        self,
        teacher: keras.Model,
        student: keras.Model,
        kd_weight: float = 0.9,
        temperature: float = 5.0,
        name: str = "kd_distiller",
        **kwargs,
    ):
        for argument, model in (("teacher", teacher), ("student", student)):
            if not isinstance(model, keras.Model):
                raise ValueError(
                    f"Invalid value for argument `{argument}`: expected a keras.Model. "
                    f"Received: {argument}={model!r} of type {type(model).__name__}."
                )
        kd_weight = validation.check_fraction("kd_weight", kd_weight, high_inclusive=True)
        temperature = validation.check_positive_number("temperature", temperature)
        teacher_shape, student_shape = _output_shape(teacher), _output_shape(student)
        if teacher_shape is not None and student_shape is not None and teacher_shape != student_shape:
            raise ValueError(
                f"Invalid value for argument `student`: expected logits of the teacher's shape "
                f"{teacher_shape} (the distillation term compares the two softmaxes). "
                f"Received: student '{student.name}' with output shape {student_shape}."
            )
        super().__init__(
            teacher=teacher,
            student=student,
            distillation_losses=SoftLabelKL(temperature),
            student_loss_weight=1.0 - float(kd_weight),
            name=name,
            **kwargs,
        )
        self.kd_weight = float(kd_weight)
        self.temperature = float(temperature)

    def lottery_target(self) -> keras.Model:
        """The student: what pruning, rewinding and tickets refer to."""
        return self.student

    def compile(self, optimizer="adam", loss=None, metrics=None, **kwargs):
        """Compiles for training; `loss` is the label loss, on logits.

        Args:
            optimizer: Optimizer for the student. Defaults to `"adam"`.
            loss: Label loss of the `1 - kd_weight` term, in any form
                `keras.Model.compile` takes: a `keras.losses.Loss`, a name
                (`"sparse_categorical_crossentropy"`) or a function. Names
                and functions of the crossentropies are applied to the
                student's logits (`from_logits=True`). Defaults to
                `SparseCategoricalCrossentropy(from_logits=True)`.
            metrics: Metrics of the student's outputs against `y`.
            **kwargs: Other `keras.Model.compile` arguments.
        """
        if loss is None:
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        # Reduced to a batch mean and scaled for the number of replicas, like the KD term.
        resolved = label_loss(loss)
        super().compile(optimizer=optimizer, loss=resolved, metrics=metrics, **kwargs)
        self._label_loss = resolved

    def get_compile_config(self) -> dict:
        config = super().get_compile_config()
        if config:
            # The parent compiles with loss=None; the label loss lives here.
            config["loss"] = keras.saving.serialize_keras_object(self._label_loss)
        return config

    def compile_from_config(self, config):
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def call(self, inputs, training=None, **kwargs):
        inputs, _ = split_cached_inputs(inputs)
        return self.student(inputs, training=training, **kwargs)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if sample_weight is not None:
            raise ValueError(
                "KDDistiller does not support sample weights (nor `class_weight`): the "
                "distillation term has no per-example weighting. Received sample weights."
            )
        inputs, cached_logits = split_cached_inputs(x)
        if y_pred is None:
            y_pred = self(inputs, training=training)
        student_logits = keras.ops.cast(y_pred, "float32")

        label_loss = keras.ops.zeros((), "float32")
        if self.kd_weight < 1.0:
            if y is None:
                raise ValueError(
                    f"KDDistiller with kd_weight={self.kd_weight} < 1 needs labels `y` for its "
                    "cross-entropy term. Received y=None."
                )
            label_loss = keras.ops.cast(self._label_loss(y, student_logits), "float32")

        distillation_loss = keras.ops.zeros((), "float32")
        if self.kd_weight > 0.0:
            if cached_logits is None:
                teacher_logits = self.teacher(inputs, training=False)
            else:
                teacher_logits = cached_logits
            teacher_logits = keras.ops.stop_gradient(keras.ops.cast(teacher_logits, "float32"))
            if teacher_logits.shape[-1] != student_logits.shape[-1]:
                raise ValueError(
                    "Invalid teacher logits: expected the student's number of classes "
                    f"{student_logits.shape[-1]} in the last axis. Received teacher_logits of "
                    f"shape {tuple(teacher_logits.shape)}."
                )
            distillation_loss = self.distillation_losses[0].compute_loss(teacher_logits, student_logits)

        total_loss = self.kd_weight * distillation_loss + (1.0 - self.kd_weight) * label_loss
        for extra in self.student.losses:
            total_loss = total_loss + _keras_compat.aggregate_additional_loss(self, extra)

        unscale = _keras_compat.unscale_loss_for_distribution
        self.student_loss_tracker.update_state(unscale(label_loss))
        self.distillation_loss_tracker.update_state(unscale(distillation_loss))
        self.total_loss_tracker.update_state(unscale(total_loss))
        return total_loss

    def get_config(self) -> dict:
        config = super().get_config()
        # The parent's loss settings are derived from these two arguments.
        for derived in ("distillation_losses", "distillation_loss_weights", "student_loss_weight"):
            config.pop(derived, None)
        config.update({"kd_weight": self.kd_weight, "temperature": self.temperature})
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["teacher"] = keras.saving.deserialize_keras_object(config["teacher"])
        config["student"] = keras.saving.deserialize_keras_object(config["student"])
        return cls(**config)
