"""Pruning schedules: tfmot's meaning, numerically; configs; bad input."""

import keras
import numpy as np
import pytest

import tf_lottery as tfl
from tf_lottery.pruning import schedules

_CASES = [
    ("ConstantSparsity", dict(target_sparsity=0.5, begin_step=0, end_step=-1, frequency=100)),
    ("ConstantSparsity", dict(target_sparsity=0.8, begin_step=30, end_step=470, frequency=7)),
    (
        "PolynomialDecay",
        dict(initial_sparsity=0.0, final_sparsity=0.9, begin_step=0, end_step=700, frequency=100),
    ),
    (
        "PolynomialDecay",
        dict(initial_sparsity=0.2, final_sparsity=0.95, begin_step=13, end_step=517, frequency=9),
    ),
    (
        "PolynomialDecay",
        dict(initial_sparsity=0.1, final_sparsity=0.5, begin_step=5, end_step=205, power=1.5, frequency=1),
    ),
]


@pytest.mark.parametrize("name, kwargs", _CASES)
def test_matches_tfmot_at_every_step(name, kwargs):
    tfmot = pytest.importorskip("tensorflow_model_optimization")
    theirs = getattr(tfmot.sparsity.keras, name)(**kwargs)
    ours = getattr(tfl, name)(**kwargs)
    steps = np.arange(0, 800)
    their_prune, their_sparsity = theirs(np.asarray(steps, dtype=np.int64))
    their_sparsity = np.broadcast_to(np.asarray(their_sparsity), steps.shape)
    for step, should, sparsity in zip(steps, np.asarray(their_prune), their_sparsity):
        got_should, got_sparsity = ours(int(step))
        assert got_should == bool(should), step
        assert got_sparsity == pytest.approx(float(sparsity), abs=1e-6), step


def test_polynomial_decay_formula():
    schedule = tfl.PolynomialDecay(0.0, 0.9, begin_step=0, end_step=1000, frequency=100)
    assert schedule(0) == (True, 0.0)
    assert schedule(100)[1] == pytest.approx(0.9 - 0.9 * 0.9**3)
    assert schedule(1000) == (True, pytest.approx(0.9))
    assert schedule(1100) == (False, pytest.approx(0.9))  # past end_step: no pruning
    assert schedule(150) == (False, pytest.approx(0.9 - 0.9 * 0.85**3))


@pytest.mark.parametrize(
    "schedule", [tfl.ConstantSparsity(0.5, 3, 50, 4), tfl.PolynomialDecay(0, 0.5, 10, 95, 3, 7)]
)
def test_last_pruning_step_is_the_latest_scheduled_step_in_the_interval(schedule):
    brute = schedules.PruningSchedule.last_pruning_step
    for after in range(0, 110, 3):
        for upto in range(after, 120, 5):
            assert schedule.last_pruning_step(after, upto) == brute(schedule, after, upto), (after, upto)


@pytest.mark.parametrize(
    "schedule", [tfl.ConstantSparsity(0.5, 10), tfl.PolynomialDecay(0.1, 0.9, 0, 700, 2, 50)]
)
def test_config_round_trips(schedule):
    assert type(schedule).from_config(schedule.get_config()) == schedule
    assert keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule)) == schedule
    tfmot_form = {"class_name": type(schedule).__name__, "config": schedule.get_config()}
    assert schedules.deserialize(tfmot_form) == schedule


def test_a_tfmot_config_ports_unchanged():
    tfmot = pytest.importorskip("tensorflow_model_optimization")
    theirs = tfmot.sparsity.keras.PolynomialDecay(0.0, 0.9, begin_step=0, end_step=700, frequency=100)
    ours = schedules.deserialize(theirs.get_config())
    assert ours == tfl.PolynomialDecay(0.0, 0.9, begin_step=0, end_step=700, frequency=100)


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda: tfl.PolynomialDecay(0.0, 0.9, 100, 100),
            r"`end_step`: expected an int greater than begin_step=100\. "
            r"Received: end_step=100\. Pass an `end_step` after `begin_step`",
        ),
        (lambda: tfl.PolynomialDecay(0.0, 0.9, 100, 50), r"Received: end_step=50"),
        (
            lambda: tfl.PolynomialDecay(0.0, 0.9, 0, -1),
            r"`end_step`: expected an int greater than begin_step=0\. ",
        ),
        (
            lambda: tfl.ConstantSparsity(0.5, 10, 10),
            r"greater than begin_step=10 or -1 \(prune until training ends\)",
        ),
        (
            lambda: tfl.ConstantSparsity(1.0, 0),
            r"`target_sparsity`: expected a float in \[0, 1\)\. Received: target_sparsity=1\.0",
        ),
        (lambda: tfl.PolynomialDecay(-0.1, 0.5, 0, 10), r"`initial_sparsity`: expected a float in \[0, 1\)"),
        (lambda: tfl.PolynomialDecay(0.0, 1.0, 0, 10), r"`final_sparsity`: expected a float in \[0, 1\)"),
        (
            lambda: tfl.PolynomialDecay(0.8, 0.5, 0, 10),
            r"`final_sparsity`: expected a float >= initial_sparsity=0\.8 "
            r"\(masks only shrink.*Received: final_sparsity=0\.5\. Swap",
        ),
        (
            lambda: tfl.PolynomialDecay(0.0, 0.5, -1, 10),
            r"`begin_step`: expected an int >= 0\. Received: begin_step=-1",
        ),
        (
            lambda: tfl.ConstantSparsity(0.5, 0, frequency=0),
            r"`frequency`: expected an int >= 1\. Received: frequency=0",
        ),
        (lambda: tfl.PolynomialDecay(0.0, 0.5, 0, 10, power=0), r"`power`: expected a float > 0"),
        (lambda: schedules.deserialize({"class_name": "Cosine"}), r"`schedule`: expected a PruningSchedule"),
    ],
)
def test_bad_arguments_are_refused_with_the_fix(make, message):
    with pytest.raises(ValueError, match=message):
        make()
