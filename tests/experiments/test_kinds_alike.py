"""Every kind runs through the one level loop: progress, the `Time:` line, plots and TensorBoard events."""

import glob
import io
import os

import pytest
import tensorflow as tf

from tf_lottery.experiments import registry, schema
from tf_lottery.experiments.progress import RunProgress


def tiny_config(kind: str):
    config = registry.get(kind).defaults()
    config.experiment = kind
    config.dataset.num_samples = 1000
    config.dataset.validation = 100
    config.model.hidden = (32, 32)
    config.train.lr = 3e-3
    config.train.batch_size = 50
    config.train.training_steps = "2ep"  # 14 steps an epoch (700 examples), 28 in all
    config.run.deterministic = False  # process-wide; the CLI tests cover it
    config.run.plots = False
    config.run.verbose = 0
    if kind == "lottery":
        config.run.levels, config.run.branches = 1, ""
    if kind == "gradual":
        config.gradual.frequency = 7
    if kind == "early_bird":
        config.early_bird.every = "7it"
    if kind in ("rigl", "set"):
        config.sparse.update_every = "7it"
    return config


def _scalars(directory):
    """`{tag: [step, ...]}` of the event files in `directory`."""
    found = {}
    for path in sorted(glob.glob(os.path.join(directory, "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                found.setdefault(value.tag, []).append(event.step)
    return found


def test_tensorboard_is_off_by_default_and_unhashed():
    from tf_lottery.experiments import config_hash
    from tf_lottery.experiments.default_config import get_config

    assert schema.defaults().run.tensorboard is False
    config = get_config()
    assert config_hash.config_hash(config) == "57c99b1ad12605c4"
    config.run.tensorboard = True
    assert config_hash.config_hash(config) == "57c99b1ad12605c4"
    with config.unlocked():
        del config.run["tensorboard"]
        config.run.tensorboard = "yes"
    with pytest.raises(ValueError, match=r"run.tensorboard.*True or False.*'yes'"):
        schema.validate(config)


@pytest.mark.parametrize(
    "kind, levels",
    [
        ("gradual", [0]),
        ("early_bird", [0, 1]),
        ("rigl", [0]),
        pytest.param("set", [0], marks=pytest.mark.slow),
        ("static", [0]),
        pytest.param("lottery", [0, 1], marks=pytest.mark.slow),
    ],
)
def test_every_kind_writes_tensorboard_events_per_replicate_and_level(tmp_path, kind, levels):
    config = tiny_config(kind)
    config.run.tensorboard = True
    summary = registry.run(config, str(tmp_path), log=lambda line: None)
    root = os.path.join(summary["root"], "tensorboard")
    assert sorted(os.listdir(root)) == ["replicate_0"]
    assert sorted(os.listdir(os.path.join(root, "replicate_0"))) == [f"level_{k}" for k in levels]
    for level in levels:
        metrics = summary["rows"][level]
        scalars = _scalars(os.path.join(root, "replicate_0", f"level_{level}"))
        expected = {"train/loss", "val/loss", "val/accuracy", "test/loss", "test/accuracy", "sparsity"}
        assert set(scalars) == expected, scalars.keys()
        # One point per evaluation (every epoch and at the end), at its data step.
        evals = [e["step"] for e in _metrics(summary, level)["evals"]]
        assert scalars["val/accuracy"] == evals == scalars["sparsity"]
        assert evals[-1] == _metrics(summary, level)["end_step"], metrics


def _metrics(summary, level):
    from tf_lottery.experiments import run_store

    return run_store.read_metrics(os.path.join(summary["root"], "replicate_0", f"round_{level}"))


def test_gradual_shows_the_run_progress_replicate_lines_time_and_plots(tmp_path):
    config = tiny_config("gradual")
    config.run.replicates = 2
    config.run.verbose = 1
    config.run.plots = True
    config.train.training_steps = "1ep"
    lines, bar = [], io.StringIO()
    with RunProgress("on", stream=bar, print_line=lines.append, interval=0.0) as log:
        summary = registry.run(config, str(tmp_path), log=log)
    assert [line.startswith("[") and "replicate" in line for line in lines].count(True) == 2
    assert any(line.startswith("Time: train") for line in lines)
    progress = [line for line in bar.getvalue().splitlines() if line.startswith("progress:")]
    assert progress and progress[-1].endswith(tuple("0123456789s")) and "28/28 steps" in progress[-1]
    assert summary["files"]["plots"] and all(os.path.exists(p) for p in summary["files"]["plots"])
    assert summary["timing"]["total_s"]["train"] > 0
