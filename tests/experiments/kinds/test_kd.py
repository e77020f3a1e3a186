"""The kd_ticket / kd_rewind experiment kinds, their configs and their runner."""

import importlib.util
import json
import os
import pathlib

import pytest

from tests.testing import TestCase
from tf_lottery.experiments.kinds import kd as kd_experiment

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

    def test_resnet20_plan_is_the_papers_setting(self):
        config = _config("kd_resnet20_cifar10")
        plan = kd_experiment.plan_from_config(config, steps_per_epoch=390)
        assert (plan.epochs, plan.batch_size, plan.kd_weight, plan.temperature) == (182, 128, 0.9, 5.0)
        assert plan.arms == ("ticket", "kd_ticket") and plan.rewind_epoch == 0
        assert plan.scope == "global" and plan.exclude == ("output",)
        config.experiment = "kd_rewind"
        plan = kd_experiment.plan_from_config(config, steps_per_epoch=390)
        assert plan.arms == ("rewind", "kd_rewind") and plan.rewind_epoch == 33

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

    def test_rewind_point_must_be_whole_epochs(self):
        config = _config("kd_mnist1d_mlp")
        config.experiment = "kd_rewind"
        config.pruning.rewind_to = "50it"
        with pytest.raises(ValueError, match=r"`config.pruning.rewind_to`: expected whole epochs"):
            kd_experiment.plan_from_config(config, steps_per_epoch=35)


class TestKDRunner(TestCase):
    def test_smoke_run_trains_every_arm_at_the_exact_sparsity(self, tmp_path):
        config = _config("kd_mnist1d_mlp", "smoke")
        config.dataset.train_limit = 500
        config.model.hidden = (32,)
        config.kd.arms = "ticket,rewind,kd_ticket,kd_rewind"
        config.run.verbose = 0
        config.run.deterministic = False  # process-wide: would outlive this test
        result = kd_experiment.run_kd_experiment(config, str(tmp_path))
        rows = result["rows"]
        assert [(r["arm"], r["level"]) for r in rows] == [
            ("dense", 0),
            ("ticket", 1),
            ("rewind", 1),
            ("kd_ticket", 1),
            ("kd_rewind", 1),
        ]
        for row in rows[1:]:
            assert row["sparsity"] == pytest.approx(0.6, abs=1e-3)
            assert 0.0 <= row["final_test_accuracy"] <= 1.0 and row["best_val_test_accuracy"] is not None
        assert "| level | % remaining | ticket | rewind | kd_ticket | kd_rewind |" in result["table"]
        saved = json.loads((tmp_path / "kd_ticket" / "results.json").read_text())
        assert saved["rows"] == rows and saved["config"]["kd"]["weight"] == 0.9
        assert os.path.exists(tmp_path / "kd_ticket" / "summary.md")

    def test_summary_averages_over_seeds(self):
        rows = [
            {
                "seed": s,
                "arm": arm,
                "level": level,
                "percent_remaining": 100 * 0.5**level,
                "final_test_accuracy": acc,
            }
            for s, offset in ((0, 0.0), (1, 0.1))
            for arm, level, acc in (("dense", 0, 0.6 + offset), ("kd_ticket", 1, 0.5 + offset))
        ]
        table = kd_experiment.summarize(rows)
        assert table.startswith(
            "`final_test_accuracy` (%), mean ± std over 2 seed(s); dense network: 65.0 ± 5.0."
        )
        assert "| 1 | 50.0 | 55.0 ± 5.0 |" in table
