"""The registry of experiment kinds: one place, every kind, clear errors."""

from __future__ import annotations

import pytest

from tests.testing import TestCase, op_determinism_enabled
from tf_lottery.experiments import registry, schema
from tf_lottery.experiments.default_config import get_config

KINDS = (
    "early_bird",
    "gradual",
    "instability",
    "kd_rewind",
    "kd_ticket",
    "lottery",
    "oneshot",
    "rigl",
    "set",
    "static",
    "transfer",
)


def test_every_kind_is_registered():
    assert registry.names() == KINDS


@pytest.mark.parametrize("name", KINDS)
def test_each_kind_validates_its_own_defaults(name):
    kind = registry.get(name)
    config = kind.defaults()
    config.experiment = name
    assert registry.validate(config) is kind


def test_an_unknown_kind_lists_every_kind():
    config = get_config()
    config.experiment = "instabilty"
    with pytest.raises(ValueError) as error:
        registry.validate(config)
    message = str(error.value)
    assert "`config.experiment`" in message and "Received: experiment='instabilty'" in message
    for name in KINDS:
        assert repr(name) in message


def test_the_shared_schema_refuses_an_unknown_kind_too():
    config = schema.defaults()
    config.experiment = "lotery"
    with pytest.raises(ValueError, match=r"expected one of \('early_bird', .*'transfer'\)"):
        schema.validate(config)


def test_a_name_is_registered_once():
    kind = registry.get("lottery")
    assert registry.register(kind) is kind  # the same kind again is harmless
    other = registry.Kind(
        "lottery", run=lambda *a, **k: {}, defaults=schema.defaults, validate=print, summary=""
    )
    with pytest.raises(ValueError, match="registered twice"):
        registry.register(other)
    assert registry.get("lottery") is kind


class TestProcessSwitches(TestCase):
    def test_a_library_run_leaves_op_determinism_off(self, tmp_path):
        config = get_config("smoke")
        config.run.levels = 1
        config.run.branches = ""
        config.run.plots = False
        config.run.verbose = 0
        config.train.training_steps = "1ep"
        assert config.run.deterministic  # asked for, but only the CLI may switch it on
        summary = registry.run(config, str(tmp_path))
        assert [row["level"] for row in summary["rows"]] == [0, 1]
        assert not op_determinism_enabled()
