"""`config.pretrain`: IMP starting from a network pretrained on another task."""

import os

import numpy as np
import pytest

import tf_lottery as tfl
from tests.testing import tiny_run_config
from tf_lottery.experiments import config_hash, pretrain, run_store, schema, trainer
from tf_lottery.experiments.runner import run_levels


def tiny_config():
    return tiny_run_config(training_steps="2ep", branches="")


def _start(root, level=0):
    return tfl.Ticket.load(os.path.join(root, "replicate_0", f"round_{level}", "start.npz"))


def test_imp_starts_from_the_pretrained_network_with_a_fresh_output_layer(tmp_path):
    fresh_config = tiny_config()
    fresh_config.run.levels = 0
    plain = run_levels(fresh_config, str(tmp_path / "plain"))
    config = tiny_config()
    config.pretrain.training_steps = "3ep"
    config.pretrain.classes = "0-5"
    run = run_levels(config, str(tmp_path / "pretrained"))
    folder = os.path.join(run["root"], "replicate_0", "pretrain")
    metrics = run_store.read_metrics(folder)
    # Digits 0-5 of the 900 training sequences, batch 50: 3 epochs of its own length.
    assert metrics["num_classes"] == 6 and metrics["end_step"] == 3 * (metrics["evals"][0]["step"])
    pretrained, _ = run_store.load_state(os.path.join(folder, trainer.CHECKPOINT))
    start, fresh = _start(run["root"]), _start(plain["root"])
    # fc1, fc2 kernels and biases come from pretraining; the 10-class output layer is the fresh one.
    for index in range(4):
        np.testing.assert_array_equal(start.weights[index], pretrained.model_values[index])
        assert not np.array_equal(start.weights[index], fresh.weights[index])
    for index in (4, 5):
        np.testing.assert_array_equal(start.weights[index], fresh.weights[index])
    # Level 1 rewinds to the pretrained weights (rewind_to=0it), under its mask.
    level1 = _start(run["root"], 1)
    for index, mask in zip((0, 2, 4), level1.masks):
        np.testing.assert_array_equal(level1.weights[index], start.weights[index] * mask)
    assert run["hash"] != plain["hash"]
    assert config_hash.hparams(config)["pretrain.classes"] == "0-5"
    # Resuming reads the pretrained network back instead of training it again.
    again = run_levels(config, str(tmp_path / "pretrained"))
    assert run_store.read_metrics(folder) == metrics and again["rows"] == run["rows"]


def test_pretraining_on_the_same_classes_keeps_the_output_layer(tmp_path):
    config = tiny_config()
    config.run.levels = 0
    config.pretrain.training_steps = "1ep"
    root = run_levels(config, str(tmp_path))["root"]
    pretrained, _ = run_store.load_state(os.path.join(root, "replicate_0", "pretrain", trainer.CHECKPOINT))
    for a, b in zip(_start(root).weights, pretrained.model_values):
        np.testing.assert_array_equal(a, b)


def test_the_dataset_table_matches_the_pipelines():
    from tf_lottery.data.registry import SHAPES, load_dataset

    data = load_dataset(tiny_config().dataset)
    assert SHAPES["mnist1d"] == (tuple(data.input_shape), data.num_classes)


def test_no_pretraining_by_default():
    assert not pretrain.enabled(schema.defaults())
    config = schema.defaults()
    config.pretrain.training_steps = "0ep"
    assert not pretrain.enabled(config)
    config.pretrain.training_steps = "1it"
    assert pretrain.enabled(config)


@pytest.mark.parametrize(
    "key, value, message",
    [
        (
            "training_steps",
            "5x",
            r"`config.pretrain.training_steps`: expected '<N>it'.*Received: pretrain.training_steps='5x'",
        ),
        (
            "dataset_name",
            "mnist3d",
            r"`config.pretrain.dataset_name`: expected one of \('mnist1d'.*Received: pretrain.dataset_name='mnist3d'",
        ),
        (
            "classes",
            "0-3,2",
            r"`config.pretrain.classes`: expected distinct class indices.*Received: '0-3,2'",
        ),
        (
            "classes",
            "8-10",
            r"`config.pretrain.classes`: expected classes of 'mnist1d', 0..9. Received: pretrain.classes='8-10'",
        ),
        (
            "dataset_name",
            "cifar10",
            r"`config.pretrain.dataset_name`: expected a dataset with examples of shape \(40,\) like "
            r"`config.dataset.name`='mnist1d'.*not \(32, 32, 3\). Received: pretrain.dataset_name='cifar10'",
        ),
    ],
)
def test_bad_pretrain_options_are_named(key, value, message):
    config = tiny_config()
    config.pretrain[key] = value
    with pytest.raises(ValueError, match=message):
        schema.validate(config)


@pytest.mark.slow
def test_a_run_killed_while_pretraining_resumes_to_the_uninterrupted_result(tmp_path):
    import json
    import pathlib
    import subprocess
    import sys

    root = pathlib.Path(__file__).resolve().parents[2]
    flags = [
        "--config=configs/default.py:smoke",
        "--config.dataset.train_limit=1000",
        "--config.pretrain.training_steps=3ep",
        "--config.pretrain.classes=0-5",
        "--config.run.levels=1",
        "--config.run.branches=",
        "--config.run.steps_per_execution=1",
        "--config.run.checkpoint_every=1ep",
        "--config.run.plots=False",
        "--config.run.jit_compile=False",  # a kill's resume, not XLA, is tested (its compile: ~3.5 s a run)
    ]

    def run(workdir, failpoint=None):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        env.pop("TF_LOTTERY_FAILPOINT", None)
        if failpoint:
            env["TF_LOTTERY_FAILPOINT"] = failpoint
        command = [sys.executable, "-m", "tf_lottery.main", f"--workdir={workdir}", *flags]
        return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=600)

    # Digits 0-5 of the first 1,000 sequences (about 600), batch 100: 6 steps an epoch; batch 14 is in epoch 3.
    killed = run(tmp_path / "killed", "train_batch:14")
    assert killed.returncode == -9, killed.stderr[-2000:]
    (pretrain_dir,) = (tmp_path / "killed").glob("lottery/*/replicate_0/pretrain")
    assert (pretrain_dir / "checkpoint.npz").exists() and not (pretrain_dir / "metrics.json").exists()
    for workdir in ("killed", "reference"):
        finished = run(tmp_path / workdir)
        assert finished.returncode == 0, finished.stderr[-2000:]
    for path in sorted((tmp_path / "reference").rglob("*.npz")):
        other = tmp_path / "killed" / path.relative_to(tmp_path / "reference")
        with np.load(path) as a, np.load(other) as b:
            for key in a.files:
                if key != "info":  # wall times
                    np.testing.assert_array_equal(a[key], b[key], err_msg=f"{path}:{key}")
    for path in sorted((tmp_path / "reference").rglob("metrics.json")):
        other = tmp_path / "killed" / path.relative_to(tmp_path / "reference")
        a, b = json.loads(path.read_text()), json.loads(other.read_text())
        assert a["evals"] == b["evals"], path
