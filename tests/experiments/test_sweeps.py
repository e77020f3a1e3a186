"""Several processes share one workdir: split by replicate, or racing on the same levels.

Each process is a real `python -m tf_lottery.main`; the result must equal a
single-process run exactly (masks, weights, metrics), with every level
written once and the summary built from whatever has finished.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tf_lottery.lottery.ticket import Ticket

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FLAGS = (
    "--config=configs/default.py:smoke",
    "--config.run.replicates=2",
    "--config.run.levels=1",
    "--config.train.training_steps=2ep",
    "--config.run.plots=False",
    # What is tested is the sharing of one workdir; XLA's compile was ~3.5 s of each process.
    "--config.run.jit_compile=False",
)


def _command(workdir, *extra):
    return [sys.executable, "-m", "tf_lottery.main", f"--workdir={workdir}", *FLAGS, *extra]


def _env():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("TF_LOTTERY_FAILPOINT", None)
    return env


def _run_together(*commands):
    processes = [
        subprocess.Popen(c, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for c in commands
    ]
    outputs = [p.communicate(timeout=600) for p in processes]
    for process, (_, err) in zip(processes, outputs):
        assert process.returncode == 0, err[-3000:]
    return [out for out, _ in outputs]


def _state(workdir):
    state = {}
    for directory, _, files in os.walk(workdir):
        for name in files:
            path = os.path.join(directory, name)
            rel = os.path.relpath(path, workdir)
            if name == "end.npz":
                ticket = Ticket.load(path)
                state[rel] = [*ticket.masks, *ticket.weights]
            elif name == "metrics.json":
                with open(path) as handle:
                    metrics = json.load(handle)
                metrics.pop("elapsed_s")
                metrics.pop("timing")  # wall-clock seconds
                state[rel] = metrics
    return state


def _assert_same(state, reference):
    assert sorted(state) == sorted(reference)
    for key, expected in reference.items():
        if key.endswith("metrics.json"):
            assert state[key] == expected, key
        else:
            for a, b in zip(expected, state[key]):
                np.testing.assert_array_equal(a, b, err_msg=key)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("single")
    _run_together(_command(workdir))
    return _state(workdir)


@pytest.mark.slow
def test_two_processes_split_the_replicates_of_one_workdir(tmp_path, reference):
    outputs = _run_together(
        _command(tmp_path, "--config.run.only_replicates=0"),
        _command(tmp_path, "--config.run.only_replicates=1"),
    )
    _assert_same(_state(tmp_path), reference)
    for output in outputs:  # each summary covers what had finished when it was written
        assert "over 1 replicate(s)" in output or "over 2 replicate(s)" in output
    # A pass over everything trains nothing more and summarises both replicates.
    stamps = {rel: os.stat(os.path.join(tmp_path, rel)).st_mtime_ns for rel in reference}
    (final,) = _run_together(_command(tmp_path))
    assert "over 2 replicate(s)" in final
    assert {rel: os.stat(os.path.join(tmp_path, rel)).st_mtime_ns for rel in reference} == stamps


@pytest.mark.slow
def test_two_processes_racing_on_the_same_levels_agree(tmp_path, reference):
    _run_together(_command(tmp_path), _command(tmp_path))
    _assert_same(_state(tmp_path), reference)
    leftovers = [name for _, _, files in os.walk(tmp_path) for name in files if name.endswith(".tmp")]
    assert not leftovers


class TestGfileWorkdir:
    def test_a_run_lives_entirely_on_a_tf_io_gfile_path(self, tmp_path, monkeypatch):
        """`ram://` stands for gs:// here: nothing is written locally, and a rerun reads everything back."""
        import uuid

        from tf_lottery.experiments import registry
        from tf_lottery.experiments.default_config import get_config
        from tf_lottery.utils import atomic_io

        monkeypatch.chdir(tmp_path)
        config = get_config("smoke")
        config.run.levels = 1
        config.train.training_steps = "1ep"
        config.run.verbose = 0
        workdir = f"ram://{uuid.uuid4().hex}/runs"
        first = registry.run(config, workdir)
        assert first["root"].startswith(workdir)
        assert [(r["branch"], r["level"]) for r in first["rows"]] == [
            ("ticket", 0),
            ("ticket", 1),
            ("reinit", 1),
        ]
        for name in (
            "hparams.json",
            "replicate_0/rewind.npz",
            "replicate_0/round_1/end.npz",
            "results/rounds.csv",
        ):
            assert atomic_io.exists(f"{first['root']}/{name}"), name
        assert atomic_io.exists(f"{first['root']}/results/accuracy.png")
        assert list(tmp_path.iterdir()) == []  # no local `ram:` folder
        again = registry.run(config, workdir)
        assert again["rows"] == first["rows"]
