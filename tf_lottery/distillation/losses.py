"""The distiller's losses: `SoftLabelKL` (Hinton et al. 2015, from logits) and the label loss in any Keras form."""

from __future__ import annotations

import re

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


# Label losses Keras names that take `from_logits`; given by name or as the bare
# function, they are applied to the student's logits (see `label_loss`).
_LOGIT_LOSSES = {
    "sparse_categorical_crossentropy": keras.losses.SparseCategoricalCrossentropy,
    "categorical_crossentropy": keras.losses.CategoricalCrossentropy,
    "binary_crossentropy": keras.losses.BinaryCrossentropy,
}


@keras.saving.register_keras_serializable(package="tf_lottery")
class PerExampleLoss(keras.losses.Loss):
    """A per-example loss function as a `keras.losses.Loss`: batch mean, scaled for replicas.

    What `keras.losses.get` returns for most names is a bare function of
    `(y_true, y_pred)` that returns one value per example; Keras wraps it
    (`LossFunctionWrapper`, not exported) before using it. This does the
    same with public API only.

    Args:
        fn: Callable `fn(y_true, y_pred)` returning per-example losses.
        name: str. Defaults to the function's name.
    """

    def __init__(self, fn, name: str | None = None, **kwargs):
        if not callable(fn):
            raise ValueError(
                "Invalid value for argument `fn`: expected a function `fn(y_true, y_pred)`. "
                f"Received: fn={fn!r}."
            )
        if name is None:
            # Keras uses the name as a scope name: `_private` or `<lambda>` would be refused.
            name = re.sub(r"[^A-Za-z0-9_.]", "", getattr(fn, "__name__", "")).lstrip("_.") or "label_loss"
        super().__init__(name=name, **kwargs)
        self.fn = fn

    def call(self, y_true, y_pred):
        return self.fn(y_true, y_pred)

    def get_config(self) -> dict:
        return {**super().get_config(), "fn": keras.saving.serialize_keras_object(self.fn)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["fn"] = keras.saving.deserialize_keras_object(config["fn"])
        return cls(**config)


def label_loss(loss) -> keras.losses.Loss:
    """The student's label loss as a `keras.losses.Loss`, from any form Keras' `compile` takes.

    A `keras.losses.Loss` instance is used as it is. A name (`"mse"`,
    `"sparse_categorical_crossentropy"`, `"SparseCategoricalCrossentropy"`)
    or a function is resolved by `keras.losses.get`; the crossentropies among
    them are taken `from_logits=True`, since the student outputs logits.

    Args:
        loss: A `keras.losses.Loss`, a name Keras knows, or a function
            `fn(y_true, y_pred)` returning per-example losses.

    Returns:
        A `keras.losses.Loss`.
    """
    if isinstance(loss, keras.losses.Loss):
        return loss
    if isinstance(loss, str):
        try:
            resolved = keras.losses.get(loss)
        except ValueError as error:
            raise ValueError(
                "Invalid value for argument `loss`: expected a loss Keras knows by name (e.g. "
                "'sparse_categorical_crossentropy'), a function or a keras.losses.Loss. "
                f"Received: loss={loss!r}."
            ) from error
    elif callable(loss):
        resolved = loss
    else:
        raise ValueError(
            "Invalid value for argument `loss`: expected a loss name, a function `fn(y_true, y_pred)` "
            f"or a keras.losses.Loss. Received: loss={loss!r} of type {type(loss).__name__}."
        )
    for name, logits_class in _LOGIT_LOSSES.items():
        if isinstance(resolved, logits_class) or resolved is keras.losses.get(name):
            return logits_class(from_logits=True)
    if isinstance(resolved, keras.losses.Loss):
        return resolved
    return PerExampleLoss(resolved)
