"""Drop-fraction anneals and update steps against the RigL paper's and rigl's formulas."""

from __future__ import annotations

import math

import pytest

from tf_lottery.sparse_training import drop_grow, schedule


@pytest.mark.parametrize("step", [0, 1, 100, 250, 333, 500, 750, 999])
def test_cosine_is_the_papers_equation_one(step):
    # f(t) = alpha / 2 * (1 + cos(t * pi / T_end)), Evci et al. 2020, eq. (1).
    expected = 0.3 / 2 * (1 + math.cos(step * math.pi / 1000))
    assert schedule.drop_fraction(step, 0.3, 0, 1000) == pytest.approx(expected, abs=1e-15)
    assert drop_grow.cosine_drop_fraction(step, 1000, 0.3) == pytest.approx(expected, abs=1e-15)


def test_cosine_at_known_points():
    assert schedule.drop_fraction(0, 0.3, 0, 1000) == 0.3
    assert schedule.drop_fraction(500, 0.3, 0, 1000) == pytest.approx(0.15)
    assert schedule.drop_fraction(1000, 0.3, 0, 1000) == 0.0


def test_every_anneal_is_measured_from_begin_step():
    # p = (800 - 200) / (1200 - 200) = 0.6
    assert schedule.drop_fraction(800, 0.5, 200, 1200, "cosine") == pytest.approx(
        0.25 * (1 + math.cos(0.6 * math.pi))
    )
    assert schedule.drop_fraction(800, 0.5, 200, 1200, "constant") == 0.5
    assert schedule.drop_fraction(800, 0.5, 200, 1200, "linear") == pytest.approx(0.5 * 0.4)
    assert schedule.drop_fraction(800, 0.5, 200, 1200, "exponential") == pytest.approx(0.5 * 0.4)
    assert schedule.drop_fraction(800, 0.5, 200, 1200, "exponential_3") == pytest.approx(0.5 * 0.4**3)
    assert schedule.drop_fraction(800, 0.5, 200, 1200, "exponential_.5") == pytest.approx(0.5 * 0.4**0.5)


@pytest.mark.parametrize("anneal", ["cosine", "constant", "linear", "exponential_2"])
def test_no_fraction_before_begin_or_from_end(anneal):
    assert schedule.drop_fraction(199, 0.5, 200, 1200, anneal) == 0.0
    assert schedule.drop_fraction(1200, 0.5, 200, 1200, anneal) == 0.0
    assert schedule.drop_fraction(200, 0.5, 200, 1200, anneal) == 0.5


def test_update_steps_start_at_begin_step_and_stop_before_end():
    def all_steps(begin, end, delta, start=0):
        steps, step = [], start
        while (step := schedule.next_update_step(step, begin, end, delta)) is not None:
            steps.append(step)
        return steps

    assert all_steps(0, 30, 5) == [5, 10, 15, 20, 25]  # step 0 is before any training
    assert all_steps(10, 30, 4) == [10, 14, 18, 22, 26]
    assert all_steps(10, 30, 4, start=14) == [18, 22, 26]
    assert all_steps(7, 8, 100) == [7]
    assert all_steps(0, 5, 5) == []


@pytest.mark.parametrize("bad", ["cosin", "exponential_", "exponential_0", "exponential_-1", "", None, 3])
def test_unknown_anneals_are_refused_with_the_choices(bad):
    with pytest.raises(
        ValueError,
        match=r"Invalid value for argument `drop_fraction_anneal`: expected one of 'cosine', 'constant', "
        r"'linear' or 'exponential_<k>'.*Received: drop_fraction_anneal=",
    ):
        schedule.parse_anneal(bad)


def test_end_not_after_begin_is_refused():
    with pytest.raises(
        ValueError, match=r"`end_step`: expected an int > begin_step=10\. Received: end_step=10"
    ):
        schedule.drop_fraction(10, 0.3, 10, 10)
