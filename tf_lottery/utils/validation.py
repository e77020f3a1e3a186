"""Argument checks with Keras-style error messages, shared by the whole package.

Every message names the argument, shows what was received and says what is
expected:

    Invalid value for argument `seed`: expected an int. Received: seed='a'.

Integers are Python or NumPy integers, never `bool`; numbers are Python or
NumPy reals, never `bool`. Each checker returns the value as a plain Python
`int`, `float` or `bool` (or, for `check_choice`, unchanged), so a caller can
store it in a JSON-serialisable config.

Example:

```python
from tf_lottery.utils import validation

self.rounds = validation.check_int("rounds", rounds, minimum=1)
validation.check_fraction("rate", rate)  # a float in [0, 1)
```
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np


def invalid_argument(name: str, value, expected: str) -> ValueError:
    """The standard error: "Invalid value for argument `name`: expected ... Received: name=value."."""
    return ValueError(
        f"Invalid value for argument `{name}`: expected {expected}. Received: {name}={value!r}."
    )


def _is_int(value) -> bool:
    """Whether `value` is a Python or NumPy integer (not a bool)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
    """Whether `value` is a Python or NumPy real number (not a bool)."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def check_int(name: str, value, minimum: int | None = None, maximum: int | None = None) -> int:
    """An int within `[minimum, maximum]` (either bound optional); returns `int(value)`."""
    if minimum is not None and maximum is not None:
        expected = f"an int in [{minimum}, {maximum}]"
    elif minimum is not None:
        expected = f"an int >= {minimum}"
    elif maximum is not None:
        expected = f"an int <= {maximum}"
    else:
        expected = "an int"
    if (
        not _is_int(value)
        or (minimum is not None and value < minimum)
        or (maximum is not None and value > maximum)
    ):
        raise invalid_argument(name, value, expected)
    return int(value)


def check_seed(name: str, value) -> int:
    """A random seed: an int >= 0 (NumPy generators refuse negative seeds); returns `int(value)`."""
    if not _is_int(value):
        raise invalid_argument(name, value, "an int")
    return check_int(name, value, minimum=0)


def check_fraction(name: str, value, low_inclusive: bool = True, high_inclusive: bool = False) -> float:
    """A number between 0 and 1, the ends included as asked (default `[0, 1)`); returns `float(value)`."""
    expected = f"a float in {'[' if low_inclusive else '('}0, 1{']' if high_inclusive else ')'}"
    if not _is_number(value):
        raise invalid_argument(name, value, expected)
    above_low = value >= 0 if low_inclusive else value > 0
    below_high = value <= 1 if high_inclusive else value < 1
    if not (above_low and below_high):
        raise invalid_argument(name, value, expected)
    return float(value)


def check_positive_number(name: str, value) -> float:
    """A number > 0; returns `float(value)`."""
    if not _is_number(value) or not value > 0:
        raise invalid_argument(name, value, "a float > 0")
    return float(value)


def check_bool(name: str, value) -> bool:
    """A Python or NumPy bool; returns `bool(value)`."""
    if not isinstance(value, (bool, np.bool_)):
        raise invalid_argument(name, value, "a bool")
    return bool(value)


def check_choice(name: str, value, choices: Sequence):
    """One of `choices` (shown in the message as given, e.g. a tuple); returns `value`."""
    try:
        known = value in choices
    except (TypeError, ValueError):  # e.g. an array, whose `==` has no single truth value
        known = False
    if not known:
        raise invalid_argument(name, value, f"one of {choices!r}")
    return value
