"""Knowledge-distillation tickets (Ma et al. 2021, arXiv:2101.03255).

- `KDDistiller`: a `keras.distillation.Distiller` whose student is the
  pruning target, with the paper's loss and cached teacher logits.
- `SoftLabelKL`: the temperature-scaled KL term, as a Keras distillation loss.
- `with_teacher_logits`: `tf.data` batches carrying the teacher's logits,
  computed once, beside their examples (`array_batches` without them).
"""

from tf_lottery.distillation.distiller import KDDistiller
from tf_lottery.distillation.losses import SoftLabelKL
from tf_lottery.distillation.teacher_logits import (
    INPUTS_KEY,
    TEACHER_LOGITS_KEY,
    array_batches,
    split_cached_inputs,
    teacher_logits,
    with_teacher_logits,
)

__all__ = [
    "INPUTS_KEY",
    "KDDistiller",
    "SoftLabelKL",
    "TEACHER_LOGITS_KEY",
    "array_batches",
    "split_cached_inputs",
    "teacher_logits",
    "with_teacher_logits",
]
