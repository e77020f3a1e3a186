"""When dynamic sparse training rewires, and what fraction it replaces.

Updates happen every `delta_t` optimizer steps from `begin_step` until
`end_step` (exclusive); the drop fraction anneals from `alpha` at
`begin_step` to 0 at `end_step`, with `p = (step - begin_step) / (end_step -
begin_step)`:

- `"cosine"`: `alpha / 2 * (1 + cos(pi * p))`, the RigL paper's equation (1)
  (with `begin_step = 0` it is exactly the paper's `f(t)`).
- `"constant"`: `alpha`.
- `"linear"`: `alpha * (1 - p)`.
- `"exponential_<k>"`: `alpha * (1 - p) ** k` (rigl's `exponential_k`;
  `"exponential"` alone is `k = 1`, i.e. linear, as in rigl).

Note: rigl's TF1 cosine (`tf.train.cosine_decay(alpha, global_step,
end_step - begin_step)`) measures the step from 0, not from `begin_step`;
with `begin_step > 0` its fraction reaches 0 at `end_step - begin_step`.
Here every schedule is measured from `begin_step`; both agree for the
default `begin_step = 0`.
"""

from __future__ import annotations

import math
import re

from tf_lottery.utils import validation

ANNEALS = ("cosine", "constant", "linear", "exponential_<k>")
_EXPONENTIAL = re.compile(r"^exponential(?:_(\d+(?:\.\d*)?|\.\d+))?$")


def parse_anneal(name: str) -> tuple[str, float]:
    """`name` -> `(kind, exponent)`; refuses an unknown schedule.

    Example:

    ```python
    parse_anneal("cosine")         # ("cosine", 1.0)
    parse_anneal("exponential_3")  # ("polynomial", 3.0)
    ```
    """
    if isinstance(name, str):
        if name in ("cosine", "constant"):
            return name, 1.0
        if name == "linear":
            return "polynomial", 1.0
        match = _EXPONENTIAL.match(name)
        if match:
            exponent = float(match.group(1)) if match.group(1) else 1.0
            if exponent > 0:
                return "polynomial", exponent
    raise validation.invalid_argument(
        "drop_fraction_anneal",
        name,
        "one of 'cosine', 'constant', 'linear' or 'exponential_<k>' with a number k > 0 "
        "(e.g. 'exponential_3': alpha * (1 - p) ** 3)",
    )


def drop_fraction(step: int, alpha: float, begin_step: int, end_step: int, anneal: str = "cosine") -> float:
    """The fraction of each tensor's active weights replaced at `step`.

    Args:
        step: int. Optimizer step of the update.
        alpha: float. The fraction at `begin_step`.
        begin_step: int. First step of the schedule.
        end_step: int > `begin_step`. The fraction is 0 from here on.
        anneal: str. See the module docstring. Defaults to `"cosine"`.

    Example:

    ```python
    drop_fraction(500, 0.3, 0, 1000)              # 0.15
    drop_fraction(500, 0.3, 0, 1000, "linear")    # 0.15
    drop_fraction(750, 0.3, 0, 1000, "constant")  # 0.3
    ```

    Reference:
        Evci et al., "Rigging the Lottery: Making All Tickets Winners", ICML
        2020, arXiv:1911.11134, equation (1).
    """
    kind, exponent = parse_anneal(anneal)
    if end_step <= begin_step:
        raise ValueError(
            f"Invalid value for argument `end_step`: expected an int > begin_step={begin_step}. "
            f"Received: end_step={end_step}."
        )
    if step < begin_step or step >= end_step:
        return 0.0
    progress = (step - begin_step) / (end_step - begin_step)
    if kind == "constant":
        return float(alpha)
    if kind == "cosine":
        return alpha / 2.0 * (1.0 + math.cos(math.pi * progress))
    return alpha * (1.0 - progress) ** exponent


def next_update_step(after: int, begin_step: int, end_step: int, delta_t: int) -> int | None:
    """The first update step `s > after`: `s >= begin_step`, `s < end_step`, `(s - begin_step) % delta_t == 0`.

    Step 0 is never an update (it is the state before training). Returns
    `None` when no update is left.
    """
    first = max(begin_step, 1)
    offset = (first - begin_step) % delta_t
    first += (delta_t - offset) % delta_t
    if after >= first:
        first += ((after - first) // delta_t + 1) * delta_t
    return first if first < end_step else None
