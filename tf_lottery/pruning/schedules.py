"""Pruning schedules: when to prune during training, and to what sparsity.

The classes and their arguments are those of tensorflow-model-optimization
(`tfmot.sparsity.keras.ConstantSparsity`, `PolynomialDecay`), so a tfmot
config ports line for line, with the same meaning:

- `step` counts training batches from 1, as tfmot's `pruning_step` does: the
  masks for step `s` are computed right before the `s`-th batch runs, from the
  weights after `s - 1` optimizer updates.
- A step prunes when `begin_step <= step <= end_step` (any step past
  `begin_step` when `end_step == -1`) and `(step - begin_step) % frequency ==
  0`. An `end_step` that is not `begin_step` plus a multiple of `frequency` is
  never a pruning step, so the last pruning step then falls short of it.
- `PolynomialDecay` gives `final + (initial - final) * (1 - p)**power` with
  `p = clip((step - begin_step) / (end_step - begin_step), 0, 1)` (Zhu & Gupta
  2017).

Schedules here are plain Python, evaluated on the host for integer steps (the
callback only compares integers between pruning steps); sparsities are
computed in float64 where tfmot uses float32, so they agree to ~1e-7.

Differences from tfmot, on purpose: `end_step` must be greater than
`begin_step` (tfmot accepts equal steps, which divide by zero in
`PolynomialDecay`), and `PolynomialDecay` refuses a `final_sparsity` below
`initial_sparsity`, because masks here only shrink.

Example:

```python
schedule = tfl.PolynomialDecay(initial_sparsity=0.0, final_sparsity=0.9,
                               begin_step=0, end_step=7000, frequency=100)
schedule(700)  # (True, 0.9 - 0.9 * 0.9**3)
```

Reference:
    Zhu & Gupta, "To prune, or not to prune: exploring the efficacy of
    pruning for model compression", arXiv:1710.01878.
"""

from __future__ import annotations

import keras

from tf_lottery.utils import validation

__all__ = ["ConstantSparsity", "PolynomialDecay", "PruningSchedule", "deserialize"]


class PruningSchedule:
    """Base class: `schedule(step) -> (should_prune, sparsity)`.

    A subclass defines `__call__` and `get_config`. It may also override
    `last_pruning_step` (the default asks `__call__` step by step) and
    `final_sparsity`.
    """

    def __call__(self, step: int) -> tuple[bool, float]:
        raise NotImplementedError("A PruningSchedule subclass must define `__call__(step)`.")

    def get_config(self) -> dict:
        raise NotImplementedError("A PruningSchedule subclass must define `get_config()`.")

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    @property
    def final_sparsity(self) -> float:
        """The sparsity the schedule ends at."""
        raise NotImplementedError("A PruningSchedule subclass must define the `final_sparsity` property.")

    def last_pruning_step(self, after: int, upto: int) -> int | None:
        """The latest pruning step `s` with `after < s <= upto`, or `None`."""
        for step in range(upto, after, -1):
            if self(step)[0]:
                return step
        return None

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash((type(self).__name__, tuple(sorted(self.get_config().items()))))

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class _FrequencySchedule(PruningSchedule):
    """Prunes every `frequency` steps in `[begin_step, end_step]`."""

    def _check_steps(self, begin_step, end_step, frequency, allow_forever: bool):
        begin_step = validation.check_int("begin_step", begin_step, minimum=0)
        frequency = validation.check_int("frequency", frequency, minimum=1)
        forever = " or -1 (prune until training ends)" if allow_forever else ""
        end_step = validation.check_int("end_step", end_step)
        if not (end_step > begin_step or (allow_forever and end_step == -1)):
            raise ValueError(
                f"Invalid value for argument `end_step`: expected an int greater than "
                f"begin_step={begin_step}{forever}. Received: end_step={end_step!r}. "
                "Pass an `end_step` after `begin_step`."
            )
        return begin_step, end_step, frequency

    def _is_pruning_step(self, step: int) -> bool:
        in_range = step >= self.begin_step and (self.end_step < 0 or step <= self.end_step)
        return in_range and (step - self.begin_step) % self.frequency == 0

    def last_pruning_step(self, after: int, upto: int) -> int | None:
        last = upto if self.end_step < 0 else min(upto, self.end_step)
        if last < self.begin_step:
            return None
        step = self.begin_step + (last - self.begin_step) // self.frequency * self.frequency
        return step if step > after else None


@keras.saving.register_keras_serializable(package="tf_lottery")
class ConstantSparsity(_FrequencySchedule):
    """Prunes to one sparsity every `frequency` steps in `[begin_step, end_step]`.

    Masks here only shrink, so after the first pruning step the later ones
    keep the same mask (tfmot recomputes it and may let weights back in).

    Args:
        target_sparsity: float in [0, 1). The sparsity to prune to.
        begin_step: int >= 0. First step that may prune.
        end_step: int > begin_step, or -1 to keep pruning until training
            ends. Defaults to `-1`.
        frequency: int >= 1. Prune every `frequency` steps. Defaults to `100`.

    Example:

    ```python
    schedule = tfl.ConstantSparsity(0.5, begin_step=1000)
    ```
    """

    def __init__(self, target_sparsity: float, begin_step: int, end_step: int = -1, frequency: int = 100):
        self.target_sparsity = validation.check_fraction("target_sparsity", target_sparsity)
        self.begin_step, self.end_step, self.frequency = self._check_steps(
            begin_step, end_step, frequency, allow_forever=True
        )

    def __call__(self, step: int) -> tuple[bool, float]:
        return self._is_pruning_step(int(step)), self.target_sparsity

    @property
    def final_sparsity(self) -> float:
        return self.target_sparsity

    def get_config(self) -> dict:
        return {
            "target_sparsity": self.target_sparsity,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "frequency": self.frequency,
        }


@keras.saving.register_keras_serializable(package="tf_lottery")
class PolynomialDecay(_FrequencySchedule):
    """Sparsity rising from `initial_sparsity` to `final_sparsity` (Zhu & Gupta 2017).

    `sparsity(step) = final + (initial - final) * (1 - p)**power`, with
    `p = clip((step - begin_step) / (end_step - begin_step), 0, 1)`: fast at
    first, flat near the end. Pruning happens every `frequency` steps in
    `[begin_step, end_step]`.

    Args:
        initial_sparsity: float in [0, 1). Sparsity at `begin_step`.
        final_sparsity: float in [0, 1), >= `initial_sparsity`. Sparsity at
            `end_step` and after.
        begin_step: int >= 0. First pruning step.
        end_step: int > begin_step. Last step that may prune.
        power: float > 0. Exponent of the decay. Defaults to `3`.
        frequency: int >= 1. Prune every `frequency` steps. Defaults to `100`.

    Example:

    ```python
    # 0 -> 90% over the first 7,000 of 10,000 steps.
    schedule = tfl.PolynomialDecay(0.0, 0.9, begin_step=0, end_step=7000)
    ```

    Reference:
        Zhu & Gupta, arXiv:1710.01878.
    """

    def __init__(
        self,
        initial_sparsity: float,
        final_sparsity: float,
        begin_step: int,
        end_step: int,
        power: float = 3,
        frequency: int = 100,
    ):
        initial_sparsity = validation.check_fraction("initial_sparsity", initial_sparsity)
        final_sparsity = validation.check_fraction("final_sparsity", final_sparsity)
        if final_sparsity < initial_sparsity:
            raise ValueError(
                "Invalid value for argument `final_sparsity`: expected a float >= "
                f"initial_sparsity={initial_sparsity} (masks only shrink, so sparsity "
                f"cannot decrease). Received: final_sparsity={final_sparsity!r}. "
                "Swap the two values or lower `initial_sparsity`."
            )
        self.initial_sparsity = initial_sparsity
        self._final_sparsity = final_sparsity
        self.power = validation.check_positive_number("power", power)
        self.begin_step, self.end_step, self.frequency = self._check_steps(
            begin_step, end_step, frequency, allow_forever=False
        )

    @property
    def final_sparsity(self) -> float:
        return self._final_sparsity

    def sparsity(self, step: int) -> float:
        """The schedule's sparsity at `step` (whether or not it prunes then)."""
        progress = (int(step) - self.begin_step) / (self.end_step - self.begin_step)
        progress = min(1.0, max(0.0, progress))
        return (
            self.final_sparsity
            + (self.initial_sparsity - self.final_sparsity) * (1.0 - progress) ** self.power
        )

    def __call__(self, step: int) -> tuple[bool, float]:
        return self._is_pruning_step(int(step)), self.sparsity(step)

    def get_config(self) -> dict:
        return {
            "initial_sparsity": self.initial_sparsity,
            "final_sparsity": self.final_sparsity,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "power": self.power,
            "frequency": self.frequency,
        }


_BY_NAME = {"ConstantSparsity": ConstantSparsity, "PolynomialDecay": PolynomialDecay}


def deserialize(config) -> PruningSchedule:
    """A schedule from a config: ours, Keras's serialized form, or tfmot's.

    Accepts a `PruningSchedule` (returned as is), the output of
    `keras.saving.serialize_keras_object(schedule)`, or tfmot's
    `schedule.get_config()` (`{"class_name": "PolynomialDecay", "config":
    {...}}`), so a tfmot config ports unchanged.
    """
    if isinstance(config, PruningSchedule):
        return config
    if isinstance(config, dict) and config.get("class_name") in _BY_NAME and "config" in config:
        return _BY_NAME[config["class_name"]].from_config(dict(config["config"]))
    raise validation.invalid_argument(
        "schedule",
        config,
        "a PruningSchedule or its config {'class_name': 'ConstantSparsity' or 'PolynomialDecay', 'config': {...}}",
    )
