"""The kd_ticket / kd_rewind experiment kinds, their configs and their runner."""

import importlib.util
import pathlib

import numpy as np
import pytest

from tests.testing import TestCase
from tf_lottery.experiments import registry
from tf_lottery.experiments.kinds import kd as kd_experiment
from tf_lottery.experiments.level_loop import Line
from tf_lottery.lottery.ticket import Ticket

CONFIGS = pathlib.Path(__file__).resolve().parents[3] / "configs"


def _config(name, arg=None):
    spec = importlib.util.spec_from_file_location(name, CONFIGS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


class TestKDConfigs(TestCase):
    @pytest.mark.parametrize("name", ["kd_mnist1d_mlp", "kd_resnet20_cifar10"])
    @pytest.mark.parametrize("arg", [None, "smoke"])
    def test_configs_validate(self, name, arg):
        kd_experiment.validate(_config(name, arg))

    def test_resnet20_lines_are_the_papers_setting(self):
        config = _config("kd_resnet20_cifar10")
        assert (config.train.training_steps, config.train.batch_size) == ("182ep", 128)
        assert (config.kd.weight, config.kd.temperature, config.pruning.exclude) == (0.9, 5.0, "output")
        main, arms = kd_experiment.lines(config)
        assert main == Line("kd_ticket", from_init=True, distil=True)
        assert arms == (Line("ticket", from_init=True, distil=False),)
        config.experiment = "kd_rewind"
        main, arms = kd_experiment.lines(config)
        assert main == Line("kd_rewind", from_init=False, distil=True)
        assert arms == (Line("rewind", from_init=False, distil=False),)
        config.kd.arms = "ticket,rewind,kd_ticket,kd_rewind"  # the kind's own arm is the main line
        assert [a.name for a in kd_experiment.lines(config)[1]] == ["ticket", "rewind", "kd_ticket"]

    @pytest.mark.parametrize(
        "key, value, message",
        [
            (
                "kd.weight",
                1.5,
                r"Invalid value for `config.kd.weight`: expected a float in \[0, 1\]. "
                r"Received: kd.weight=1.5.",
            ),
            (
                "kd.temperature",
                0.0,
                r"`config.kd.temperature`: expected a float > 0. Received: kd.temperature=0.0.",
            ),
            (
                "kd.arms",
                "ticket,kd",
                r"`config.kd.arms`: expected comma-separated names from \('ticket', 'rewind'",
            ),
            ("experiment", "lottery", r"`config.experiment`: expected one of \('kd_ticket', 'kd_rewind'\)"),
            ("train.lr", -1.0, r"Invalid value for `config.train.lr`"),
        ],
    )
    def test_bad_options_are_named(self, key, value, message):
        config = _config("kd_mnist1d_mlp")
        group, _, name = key.rpartition(".")
        (config[group] if group else config)[name] = value
        with pytest.raises(ValueError, match=message):
            kd_experiment.validate(config)

    def test_other_retrain_modes_are_refused(self):
        config = _config("kd_mnist1d_mlp")
        config.pruning.retrain = "lr_rewind"
        with pytest.raises(ValueError, match=r"`config.pruning.retrain`: expected 'rewind' for the KD kinds"):
            kd_experiment.validate(config)


def _smoke_config():
    config = _config("kd_mnist1d_mlp", "smoke")
    config.dataset.train_limit = 500
    config.model.hidden = (32,)
    config.kd.arms = "ticket,rewind,kd_ticket,kd_rewind"
    config.run.verbose = 0
    config.run.plots = False
    return config


class TestKDRunner(TestCase):
    def test_smoke_run_trains_every_arm_through_the_level_loop(self, tmp_path):
        config = _smoke_config()
        result = registry.run(config, str(tmp_path))
        rows = result["rows"]
        assert [(r["branch"], r["level"]) for r in rows] == [
            ("kd_ticket", 0),
            ("kd_ticket", 1),
            ("ticket", 1),
            ("rewind", 1),
            ("kd_rewind", 1),
        ]
        for row in rows[1:]:
            assert row["sparsity"] == pytest.approx(0.6, abs=1e-3)
            assert 0.0 < row["early_stop_test_accuracy"] <= 1.0
        (header,) = [line for line in result["table"].splitlines() if line.lstrip().startswith("round")]
        for column in ("kd_ticket (es)", "ticket (es)", "rewind (es)", "kd_rewind (es)"):
            assert column in header
        root = pathlib.Path(result["root"])
        assert root.parent.name == "kd_ticket" and root.name == result["hash"]
        level_1 = {
            arm: Ticket.load(str(root / "replicate_0" / d / "end.npz"))
            for arm, d in (
                ("kd_ticket", "round_1"),
                ("ticket", "branch_ticket/round_1"),
                ("rewind", "branch_rewind/round_1"),
                ("kd_rewind", "branch_kd_rewind/round_1"),
            )
        }
        starts = {
            arm: Ticket.load(str(root / "replicate_0" / d / "start.npz"))
            for arm, d in (
                ("kd_ticket", "round_1"),
                ("ticket", "branch_ticket/round_1"),
                ("rewind", "branch_rewind/round_1"),
            )
        }
        # Level 1 of every arm prunes the same dense network: the same masks.
        for arm, ticket in level_1.items():
            for a, b in zip(ticket.masks, level_1["ticket"].masks):
                np.testing.assert_array_equal(a, b, err_msg=arm)
        # The KD ticket and the ticket start from the same initialisation; the rewind arm does not.
        for a, b in zip(starts["kd_ticket"].weights, starts["ticket"].weights):
            np.testing.assert_array_equal(a, b)
        assert any(
            not np.array_equal(a, b) for a, b in zip(starts["rewind"].weights, starts["ticket"].weights)
        )
        # Only the loss differs between them, and it changes what is learned.
        assert any(
            not np.array_equal(a, b) for a, b in zip(level_1["kd_ticket"].weights, level_1["ticket"].weights)
        )

    def test_a_finished_run_is_read_back_not_retrained(self, tmp_path):
        config = _smoke_config()
        config.kd.arms = ""
        first = registry.run(config, str(tmp_path))
        metrics = sorted(pathlib.Path(first["root"]).rglob("metrics.json"))
        assert len(metrics) == 3  # level 0, kd_ticket level 1, its baseline ticket level 1
        stamps = [path.stat().st_mtime_ns for path in metrics]
        second = registry.run(config, str(tmp_path))
        assert second["rows"] == first["rows"]
        assert [path.stat().st_mtime_ns for path in metrics] == stamps

    def test_the_teacher_runs_in_the_step_when_its_logits_are_not_cached(self, tmp_path):
        config = _smoke_config()
        config.kd.arms = ""
        cached = registry.run(config, str(tmp_path / "cached"))["rows"]
        config.kd.cache_teacher_logits = False
        direct = registry.run(config, str(tmp_path / "direct"))["rows"]
        # The same soft labels either way: the same results, up to float rounding.
        for a, b in zip(cached, direct):
            assert a["branch"] == b["branch"] and a["level"] == b["level"]
            assert a["final_test_accuracy"] == pytest.approx(b["final_test_accuracy"], abs=0.02)
            assert a["final_train_loss"] == pytest.approx(b["final_train_loss"], rel=1e-3)
