"""The shared argument checkers: what each accepts (NumPy scalars included), and its exact message."""

from __future__ import annotations

import re

import numpy as np
import pytest

from tf_lottery.utils import validation


def _message(name, value, expected):
    return re.escape(f"Invalid value for argument `{name}`: expected {expected}. Received: {name}={value!r}.")


class TestCheckInt:
    @pytest.mark.parametrize("value", [0, 3, np.int64(3), np.int32(0), np.uint8(7)])
    def test_accepts_python_and_numpy_ints_and_returns_a_python_int(self, value):
        result = validation.check_int("n", value)
        assert result == value and type(result) is int

    @pytest.mark.parametrize("value", [True, np.bool_(True), 1.0, "1", None, np.float32(1.0)])
    def test_refuses_bools_floats_and_strings(self, value):
        with pytest.raises(ValueError, match=_message("n", value, "an int")):
            validation.check_int("n", value)

    def test_bounds_are_inclusive_and_named_in_the_message(self):
        assert validation.check_int("rounds", 1, minimum=1) == 1
        assert validation.check_int("k", 5, minimum=1, maximum=5) == 5
        with pytest.raises(ValueError, match=_message("rounds", 0, "an int >= 1")):
            validation.check_int("rounds", 0, minimum=1)
        with pytest.raises(ValueError, match=_message("k", 6, "an int in [1, 5]")):
            validation.check_int("k", 6, minimum=1, maximum=5)
        with pytest.raises(ValueError, match=_message("k", 6, "an int <= 5")):
            validation.check_int("k", 6, maximum=5)
        with pytest.raises(ValueError, match=_message("rounds", "3", "an int >= 1")):
            validation.check_int("rounds", "3", minimum=1)


class TestCheckSeed:
    @pytest.mark.parametrize("value", [0, 42, np.int64(7), np.uint32(2**31)])
    def test_accepts_non_negative_python_and_numpy_ints(self, value):
        result = validation.check_seed("seed", value)
        assert result == value and type(result) is int

    @pytest.mark.parametrize("value", ["a", 1.5, True, None, np.float64(0.0)])
    def test_refuses_what_is_not_an_int(self, value):
        with pytest.raises(ValueError, match=_message("seed", value, "an int")):
            validation.check_seed("seed", value)

    def test_refuses_negative_seeds(self):
        with pytest.raises(ValueError, match=_message("seed", -1, "an int >= 0")):
            validation.check_seed("seed", -1)
        with pytest.raises(ValueError, match=_message("seed", np.int64(-3), "an int >= 0")):
            validation.check_seed("seed", np.int64(-3))


class TestCheckFraction:
    @pytest.mark.parametrize("value", [0, 0.0, 0.5, np.float32(0.25), np.float64(0.999), np.int64(0)])
    def test_default_is_zero_included_one_excluded(self, value):
        result = validation.check_fraction("rate", value)
        assert result == float(value) and type(result) is float

    @pytest.mark.parametrize("value", [1.0, 1, -0.1, 1.5, float("nan"), "0.2", None, True, np.bool_(False)])
    def test_refuses_values_outside_zero_one_and_non_numbers(self, value):
        with pytest.raises(ValueError, match=_message("rate", value, "a float in [0, 1)")):
            validation.check_fraction("rate", value)

    def test_the_ends_follow_the_flags(self):
        assert validation.check_fraction("w", 1.0, high_inclusive=True) == 1.0
        assert validation.check_fraction("f", 1.0, low_inclusive=False, high_inclusive=True) == 1.0
        with pytest.raises(ValueError, match=_message("f", 0.0, "a float in (0, 1]")):
            validation.check_fraction("f", 0.0, low_inclusive=False, high_inclusive=True)
        with pytest.raises(ValueError, match=_message("f", 0.0, "a float in (0, 1)")):
            validation.check_fraction("f", 0.0, low_inclusive=False)
        with pytest.raises(ValueError, match=_message("w", 1.5, "a float in [0, 1]")):
            validation.check_fraction("w", 1.5, high_inclusive=True)


class TestCheckPositiveNumber:
    @pytest.mark.parametrize("value", [1, 0.5, np.float32(2.0), np.int64(3), float("inf")])
    def test_accepts_positive_numbers(self, value):
        result = validation.check_positive_number("temperature", value)
        assert result == float(value) and type(result) is float

    @pytest.mark.parametrize("value", [0, 0.0, -1.0, float("nan"), "5", None, True])
    def test_refuses_zero_negatives_and_non_numbers(self, value):
        with pytest.raises(ValueError, match=_message("temperature", value, "a float > 0")):
            validation.check_positive_number("temperature", value)


class TestCheckBool:
    @pytest.mark.parametrize("value", [True, False, np.bool_(True)])
    def test_accepts_python_and_numpy_bools(self, value):
        result = validation.check_bool("training", value)
        assert result == bool(value) and type(result) is bool

    @pytest.mark.parametrize("value", [0, 1, "True", None, np.int64(1)])
    def test_refuses_everything_else(self, value):
        with pytest.raises(ValueError, match=_message("training", value, "a bool")):
            validation.check_bool("training", value)


class TestCheckChoice:
    def test_accepts_a_listed_value_and_returns_it(self):
        assert validation.check_choice("scope", "layer", ("global", "layer")) == "layer"

    @pytest.mark.parametrize("value", ["net", None, 1, ["global"], np.array(["global", "layer"])])
    def test_lists_the_choices_as_given(self, value):
        with pytest.raises(
            ValueError,
            match=r"Invalid value for argument `scope`: expected one of \('global', 'layer'\)\. Received: scope=",
        ):
            validation.check_choice("scope", value, ("global", "layer"))


def test_messages_name_the_argument_show_the_value_and_say_what_is_expected():
    error = validation.invalid_argument("seed", "a", "an int")
    assert str(error) == "Invalid value for argument `seed`: expected an int. Received: seed='a'."
