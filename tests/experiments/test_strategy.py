"""The runner under `tf.distribute` (`config.run.strategy`).

The comparisons use the smoke lottery config (3 levels of 3 epochs on
MNIST-1D) with SGD + momentum instead of its Adam: with Adam, a ReLU
pre-activation within ~1e-8 of zero flips between the 1-replica and the
2-replica summation order early in level 1, and Adam's normalised first
steps turn that into weight differences of ~lr (measured: 7e-3 at the end
of level 1, then 200 of 78,336 level-2 mask entries differ). With SGD the
runs stay within float rounding: the 2-replica run (mirrored, or two
workers) ends every level with the 1-replica masks, weights within 2e-7,
losses within 1e-6 and the same accuracies (measured).
"""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from tests.testing import (
    TestCase,
    compile_classifier,
    free_ports,
    mlp,
    pruned_weights_are_zero,
    run_workers,
    toy_data,
    two_replica_strategy,
)
from tf_lottery.experiments import default_config, run_experiment, schema, trainer
from tf_lottery.experiments import strategy as strategy_lib
from tf_lottery.lottery.ticket import Ticket

ROOT = str(pathlib.Path(__file__).resolve().parents[2])
LEVELS = 2
# Measured: <= 1.7e-7 (weights), <= 7.2e-7 (losses), 0 (accuracies). An
# accuracy may still differ by one example of its split.
WEIGHT_ATOL = 1e-5
LOSS_ATOL = 1e-5
SPLIT_SIZES = {"val": 500, "test": 1000}
WORKERS = 2
TIMEOUT_S = 600

OVERRIDES = {
    "train.optimizer": "sgd",
    "train.lr": 0.05,
    "train.momentum": 0.9,
    "run.branches": "",
    "run.plots": False,
    "run.verbose": 0,
}
if "deterministic" in schema.defaults().run:
    OVERRIDES["run.deterministic"] = False


def _smoke_config(strategy: str):
    config = default_config.get_config("smoke")
    for key, value in {**OVERRIDES, "run.strategy": strategy}.items():
        group, name = key.split(".")
        config[group][name] = value
    return config


def _level(root: str, level: int) -> tuple:
    directory = os.path.join(root, "replicate_0", f"round_{level}")
    with open(os.path.join(directory, "metrics.json")) as file:
        metrics = json.load(file)
    return Ticket.load(os.path.join(directory, "end.npz")), metrics


def _assert_same_run(reference: str, other: str) -> None:
    """Every level ends with exactly the reference masks, weights and metrics within tolerance."""
    for level in range(LEVELS + 1):
        (ticket, metrics), (expected, expected_metrics) = _level(other, level), _level(reference, level)
        assert len(ticket.masks) == len(expected.masks) == 3
        for mask, expected_mask in zip(ticket.masks, expected.masks):
            np.testing.assert_array_equal(mask, expected_mask, err_msg=f"level {level}")
        for weight, expected_weight in zip(ticket.weights, expected.weights):
            np.testing.assert_allclose(weight, expected_weight, rtol=0, atol=WEIGHT_ATOL)
        assert len(metrics["evals"]) == len(expected_metrics["evals"]) == 3
        for record, expected_record in zip(metrics["evals"], expected_metrics["evals"]):
            assert record.keys() == expected_record.keys()
            for key, value in record.items():
                split = key.split("_")[0]
                atol = 1.0 / SPLIT_SIZES[split] if key.endswith("accuracy") else LOSS_ATOL
                assert value == pytest.approx(expected_record[key], abs=atol), (level, key)
    assert metrics["percent_remaining"] < 70.0  # level 2 really is pruned


class TestStrategyChoice(TestCase):
    def test_default_config_validates_every_strategy(self):
        for name in schema.STRATEGIES:
            config = _smoke_config(name)
            schema.validate(config)

    def test_unknown_strategy_is_rejected_by_name(self):
        config = _smoke_config("gpu")
        with pytest.raises(ValueError, match=r"`config\.run\.strategy`.*Received: run\.strategy='gpu'"):
            schema.validate(config)

    def test_default_is_the_current_strategy(self):
        import tensorflow as tf

        assert strategy_lib.make_strategy("default") is tf.distribute.get_strategy()

    def test_multi_worker_without_tf_config_says_what_to_set(self, monkeypatch):
        monkeypatch.delenv("TF_CONFIG", raising=False)
        with pytest.raises(ValueError, match=r"'multi_worker' needs the TF_CONFIG environment variable"):
            strategy_lib.make_strategy("multi_worker")

    def test_multi_worker_after_the_first_op_says_when_to_make_it(self):
        script = (
            "import tensorflow as tf\n"
            "tf.constant(1.0)\n"
            "from tf_lottery.experiments.strategy import make_strategy\n"
            "make_strategy('multi_worker')\n"
        )
        cluster = {"worker": [f"127.0.0.1:{free_ports(1)[0]}"]}
        env = dict(
            os.environ,
            TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}}),
            TF_CPP_MIN_LOG_LEVEL="2",
            CUDA_VISIBLE_DEVICES="",
        )
        result = subprocess.run(
            [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode != 0
        assert "must be set up before TensorFlow runs its first op" in result.stderr, result.stderr[-2000:]

    def test_mirrored_and_multi_worker_run_one_step_per_execution(self):
        with pytest.warns(UserWarning, match="steps_per_execution=35"):
            assert strategy_lib.steps_per_execution("mirrored", 35) == 1
        assert strategy_lib.steps_per_execution("default", 35) == 35
        assert strategy_lib.steps_per_execution("tpu", 35) == 35

    def test_tpu_on_a_machine_without_one_fails_clearly_before_training(self, tmp_path):
        with pytest.raises(
            ValueError, match=r"`config\.run\.strategy`: 'tpu' needs a TPU.*--config\.run\.strategy"
        ):
            strategy_lib.make_strategy("tpu")
        with pytest.raises(ValueError, match="'tpu' needs a TPU"):
            run_experiment(_smoke_config("tpu"), str(tmp_path))
        written = [path.name for path in tmp_path.rglob("*") if path.is_file()]
        assert not [name for name in written if name.endswith(".npz") or name == "metrics.json"], written


class TestMultiWorkerLoop(TestCase):
    """The multi-worker step loop, run on the default strategy, is `fit()` and `evaluate()`."""

    def _model(self):
        import keras

        from tf_lottery.core.prunable import prunable
        from tf_lottery.pruning.pruner import prune

        keras.utils.set_random_seed(0)
        model = compile_classifier(prunable(mlp()), keras.optimizers.SGD(0.05, momentum=0.9))
        prune(model, 0.5)
        return model

    def test_matches_fit_and_keeps_pruned_weights_at_zero(self):
        import tensorflow as tf

        x, y = toy_data(256, seed=1)
        data = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
        reference, model = self._model(), self._model()
        expected_loss = trainer._KerasLoop(reference).fit(data)
        loop = trainer._loop(model)
        assert isinstance(loop, trainer._KerasLoop)
        loop = trainer._MultiWorkerLoop(model)
        assert loop.fit(data) == pytest.approx(expected_loss, abs=1e-6)
        for weight, expected in zip(model.weights, reference.weights):
            np.testing.assert_allclose(weight.numpy(), expected.numpy(), rtol=0, atol=1e-6)
        assert pruned_weights_are_zero(model)
        logs, expected_logs = loop.evaluate(data), trainer._KerasLoop(reference).evaluate(data)
        assert logs.keys() == expected_logs.keys() == {"loss", "accuracy"}
        for key in logs:
            assert float(logs[key]) == pytest.approx(expected_logs[key], abs=1e-6)


# A 2-replica end-to-end run of the runner (~40 s): slow, like the multi-worker one below.
@pytest.mark.slow
class TestMirroredRunner(TestCase):
    def test_two_replicas_end_every_level_with_the_one_replica_masks(self, tmp_path, monkeypatch):
        # One MirroredStrategy per test process (see `two_replica_strategy`).
        monkeypatch.setitem(strategy_lib._STRATEGIES, "mirrored", two_replica_strategy())
        one = run_experiment(_smoke_config("default"), str(tmp_path / "default"))
        # The smoke config's steps_per_execution=35 is forced to 1 with a warning.
        with pytest.warns(UserWarning, match="steps_per_execution"):
            two = run_experiment(_smoke_config("mirrored"), str(tmp_path / "mirrored"))
        assert one["hash"] == two["hash"]
        _assert_same_run(one["root"], two["root"])


@pytest.mark.slow
class TestMultiWorkerRunner(TestCase):
    def test_two_workers_finish_smoke_imp_with_identical_masks(self, tmp_path):
        flags = [f"--config={ROOT}/configs/default.py:smoke", "--config.run.strategy=multi_worker"]
        flags += [f"--config.{key}={value}" for key, value in OVERRIDES.items()]
        # The command line makes the strategy before any TensorFlow op, as TF requires.
        command = [sys.executable, "-m", "tf_lottery.main", *flags]
        run_workers(
            [[*command, f"--workdir={tmp_path / f'worker{i}'}"] for i in range(WORKERS)],
            cwd=ROOT,
            timeout_s=TIMEOUT_S,
        )

        config = _smoke_config("multi_worker")
        roots = [str(tmp_path / f"worker{index}" / "lottery") for index in range(WORKERS)]
        roots = [os.path.join(root, os.listdir(root)[0]) for root in roots]
        for level in range(LEVELS + 1):
            first, first_metrics = _level(roots[0], level)
            second, second_metrics = _level(roots[1], level)
            for a, b in zip(first.masks + first.weights, second.masks + second.weights):
                np.testing.assert_array_equal(a, b, err_msg=f"level {level}")
            assert first_metrics["evals"] == second_metrics["evals"]
        # Global batches: the 2-worker run is the 1-process run up to float rounding.
        config.run.strategy = "default"
        single = run_experiment(config, str(tmp_path / "single"))
        _assert_same_run(single["root"], roots[0])
