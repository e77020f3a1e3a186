"""Faults that are not kills: divergence, a full disk, an unwritable workdir."""

import errno
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.testing import TestCase
from tf_lottery.experiments import run_experiment
from tf_lottery.experiments.default_config import get_config
from tf_lottery.utils import atomic_io

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cli(*flags):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    command = [sys.executable, "-m", "tf_lottery.main", "--config=configs/default.py:smoke", *flags]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def _smoke(**train):
    config = get_config("smoke")
    config.run.branches = ""
    config.run.verbose = 0
    for key, value in train.items():
        config.train[key] = value
    return config


def _files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files)


class TestFaultErrors(TestCase):
    def test_diverging_training_stops_the_round_and_records_nothing(self, tmp_path):
        with pytest.raises(
            FloatingPointError,
            match=r"Training diverged in '.*round_0' \(loss=nan.*or check the labels and inputs "
            r"\(e.g. labels out of range for the loss\)",
        ):
            run_experiment(_smoke(lr=1e9), str(tmp_path), log=lambda line: None)
        metrics = [f for f in _files(tmp_path) if f.endswith("metrics.json")]
        assert metrics == []  # the diverged round is not recorded as valid

    def test_full_disk_gives_a_clear_error_and_leaves_the_store_intact(self, tmp_path, monkeypatch):
        real = atomic_io.write_npz
        calls = {"end": 0}

        def full_disk_at_second_level_end(path, arrays):
            if path.endswith("end.npz"):
                calls["end"] += 1
                if calls["end"] == 2:
                    raise OSError(errno.ENOSPC, "No space left on device", path)
            return real(path, arrays)

        monkeypatch.setattr(atomic_io, "write_npz", full_disk_at_second_level_end)
        with pytest.raises(OSError, match="No space left on device"):
            run_experiment(_smoke(), str(tmp_path), log=lambda line: None)
        files = _files(tmp_path)
        assert not [f for f in files if f.endswith(".tmp")]
        assert any(f.endswith("round_0/metrics.json") for f in files)
        assert not any(f.endswith("round_1/metrics.json") for f in files)
        for name in files:  # everything written is whole
            path = os.path.join(tmp_path, name)
            if name.endswith(".npz"):
                with np.load(path, allow_pickle=False) as archive:
                    [archive[k] for k in archive.files]
            elif name.endswith(".json"):
                json.load(open(path))
        monkeypatch.setattr(atomic_io, "write_npz", real)
        round0 = [f for f in files if f.endswith("round_0/metrics.json")][0]
        before = os.stat(os.path.join(tmp_path, round0)).st_mtime_ns
        run_experiment(_smoke(), str(tmp_path), log=lambda line: None)  # resumes once space is back
        assert os.stat(os.path.join(tmp_path, round0)).st_mtime_ns == before
        assert any(f.endswith("round_2/metrics.json") for f in _files(tmp_path))


def test_cli_unwritable_workdir_is_a_clear_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    result = _cli(f"--workdir={blocker / 'runs'}")
    assert result.returncode != 0
    assert "tf_lottery: error:" in result.stderr and "Not a directory" in result.stderr
    assert "--workdir" in result.stderr and "Traceback" not in result.stderr
    assert blocker.read_text() == "not a directory"


def test_cli_divergence_is_a_clear_error(tmp_path):
    result = _cli(f"--workdir={tmp_path}", "--config.train.lr=1e9")
    assert result.returncode != 0
    assert "tf_lottery: error: Training diverged" in result.stderr and "Traceback" not in result.stderr
    assert "Lower `config.train.lr`" in result.stderr
