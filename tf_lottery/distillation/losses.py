"""`SoftLabelKL`: the temperature-scaled KL divergence of Hinton et al. (2015), from logits."""

from __future__ import annotations

import keras

from tf_lottery import _keras_compat


@keras.saving.register_keras_serializable(package="tf_lottery")
class SoftLabelKL(keras.distillation.DistillationLoss):
    """`T**2 * mean KL(softmax(z_teacher / T) || softmax(z_student / T))`.

    The direction is the teacher's distribution relative to the student's:
    the student is pulled towards the teacher's soft labels. The `T**2`
    factor keeps the gradients on the scale of a hard-label loss (Hinton et
    al. 2015). Computed with log-softmax on the logits (no clipping of
    probabilities), in about ten graph ops: on small networks the per-step
    cost of the loss matters (see `benchmarks/kd_epoch_time.py`). The batch
    mean is scaled for the number of replicas like every Keras loss, so the
    gradient is the same with 1 or N replicas.

    `keras.distillation.LogitsDistillation(temperature)` is meant to compute
    the same, but its default `loss="kl_divergence"` resolves to the bare
    function, which its `isinstance(loss, KLDivergence)` test misses: it then
    compares the scaled logits directly, with neither softmax nor `T**2`
    (Keras 3.15). Passing `loss=keras.losses.KLDivergence()` gives this
    value, with probabilities clipped at 1e-7.

    Args:
        temperature: float > 0. Softmax temperature `T`. Defaults to `5.0`.

    Example:

    ```python
    distiller = keras.distillation.Distiller(teacher, student, SoftLabelKL(temperature=4.0))
    ```

    Reference:
        Hinton et al., "Distilling the Knowledge in a Neural Network", 2015,
        arXiv:1503.02531.
    """

    def __init__(self, temperature: float = 5.0):
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or temperature <= 0:
            raise ValueError(
                "Invalid value for argument `temperature`: expected a float > 0. "
                f"Received: temperature={temperature!r}."
            )
        self.temperature = float(temperature)

    def compute_loss(self, teacher_outputs, student_outputs, **kwargs):
        inverse = 1.0 / self.temperature
        log_teacher = keras.ops.log_softmax(teacher_outputs * inverse, axis=-1)
        log_student = keras.ops.log_softmax(student_outputs * inverse, axis=-1)
        per_example = keras.ops.sum(keras.ops.exp(log_teacher) * (log_teacher - log_student), axis=-1)
        return _keras_compat.scale_loss_for_distribution(keras.ops.mean(per_example)) * self.temperature**2

    def get_config(self) -> dict:
        return {"temperature": self.temperature}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
