"""`RunServices`: what a replicate's plug-ins may use of a run."""

import dataclasses

import pytest
import tensorflow as tf

from tf_lottery.experiments.run_services import RunServices


def _services(progress=None):
    return RunServices(
        store=None,
        data=None,
        log=print,
        progress=progress,
        strategy=tf.distribute.get_strategy(),
        replicate=1,
        seed=8,
        data_seed=8,
    )


def test_advance_tells_the_progress_bar_and_is_silent_without_one():
    told = []

    class Bar:
        def advance(self, steps, trained):
            told.append((steps, trained))

    _services(Bar()).advance(14)
    _services(Bar()).advance(3, trained=False)
    _services(None).advance(5)
    assert told == [(14, True), (3, False)]


def test_services_are_read_only():
    with pytest.raises(dataclasses.FrozenInstanceError):
        _services().seed = 9
