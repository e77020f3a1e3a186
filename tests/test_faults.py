"""Kill a run with SIGKILL at chosen points, restart it, and check nothing is lost.

Each case arms one failpoint (`tf_lottery/utils/failpoints.py`): mid-epoch, between
pruning and rewinding, and while a ticket or a checkpoint is being written.
The killed run must leave only complete artifacts; the restarted run must
finish, recompute nothing already finished, and end with exactly the masks,
weights and metrics of an uninterrupted run with the same seed.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import tf_lottery as tfl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Each kind's smoke run, made small enough to be killed and rerun several times.
KINDS = {
    "lottery": (
        "--config=configs/default.py:smoke",
        "--config.run.steps_per_execution=5",
        "--config.run.checkpoint_every=1ep",
    ),
    "kd_ticket": (
        "--config=configs/kd_mnist1d_mlp.py:smoke",
        "--config.dataset.train_limit=1000",
        "--config.run.levels=2",
        "--config.kd.arms=ticket,kd_rewind",
        "--config.run.steps_per_execution=5",
        "--config.run.checkpoint_every=1ep",
    ),
}

pytestmark = pytest.mark.slow


def _run(workdir, kind, failpoint=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("TF_LOTTERY_FAILPOINT", None)
    if failpoint:
        env["TF_LOTTERY_FAILPOINT"] = failpoint
    command = [sys.executable, "-m", "tf_lottery.main", f"--workdir={workdir}", *KINDS[kind]]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def _artifacts(workdir):
    found = {}
    for directory, _, files in os.walk(workdir):
        for name in files:
            found[os.path.relpath(os.path.join(directory, name), workdir)] = os.path.join(directory, name)
    return found


def _state(workdir):
    """Masks, weights and metrics (minus wall times) of every finished level."""
    state = {}
    for rel, path in _artifacts(workdir).items():
        if rel.endswith("end.npz"):
            ticket = tfl.Ticket.load(path)
            state[rel] = (ticket.masks, ticket.weights)
        elif rel.endswith("metrics.json"):
            with open(path) as handle:
                metrics = json.load(handle)
            metrics.pop("elapsed_s")
            state[rel] = metrics
    return state


def _assert_complete(workdir):
    """Every artifact under `workdir` is whole: it parses completely."""
    for rel, path in _artifacts(workdir).items():
        name = os.path.basename(rel)
        if name.startswith(".") and name.endswith(".tmp"):
            continue  # an unfinished write's temporary file, never read
        if name.endswith(".npz"):
            with np.load(path, allow_pickle=False) as archive:
                for key in archive.files:
                    archive[key]
        elif name.endswith(".json"):
            with open(path) as handle:
                json.load(handle)


_REFERENCES = {}


@pytest.fixture
def reference(tmp_path_factory):
    def get(kind):
        if kind not in _REFERENCES:
            workdir = tmp_path_factory.mktemp(f"reference_{kind}")
            result = _run(workdir, kind)
            assert result.returncode == 0, result.stderr[-3000:]
            _REFERENCES[kind] = _state(workdir)
        return _REFERENCES[kind]

    return get


@pytest.mark.parametrize(
    "kind, failpoint",
    [
        ("lottery", "train_batch:30"),  # mid-epoch of level 1 (21 fit calls a level with 5 steps per call)
        ("lottery", "after_prune:2"),  # level 2 pruned, not yet rewound
        ("lottery", "atomic_write/end.npz:2"),  # while level 1's final ticket is written
        ("lottery", "atomic_write/checkpoint.npz:5"),  # while a mid-level checkpoint is written
        ("kd_ticket", "train_batch:6"),  # mid-way through the distilled level 1 (4 fit batches a level)
        ("kd_ticket", "after_prune:3"),  # the kd_rewind arm's level 1 pruned, not yet rewound
        ("kd_ticket", "atomic_write/metrics.json:4"),  # between levels: level 1's last metrics written
    ],
)
def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path, reference, kind, failpoint):
    reference = reference(kind)
    killed = _run(tmp_path, kind, failpoint)
    assert killed.returncode == -9, f"expected SIGKILL, got {killed.returncode}: {killed.stderr[-2000:]}"
    _assert_complete(tmp_path)
    # A level is finished once its metrics.json (written last) exists.
    finished = {
        rel: os.stat(path).st_mtime_ns
        for rel, path in _artifacts(tmp_path).items()
        if rel.endswith(("metrics.json", "end.npz"))
        and os.path.exists(os.path.join(os.path.dirname(path), "metrics.json"))
    }
    assert 0 < len(finished) < len([k for k in reference if k.endswith("metrics.json")]) * 2

    resumed = _run(tmp_path, kind)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = _artifacts(tmp_path)
    assert not [rel for rel in after if os.path.basename(rel).endswith(".tmp")]
    for rel, mtime in finished.items():  # nothing finished was recomputed
        assert os.stat(after[rel]).st_mtime_ns == mtime, rel
    state = _state(tmp_path)
    assert sorted(state) == sorted(reference)
    for key, expected in reference.items():
        if key.endswith("metrics.json"):
            assert state[key] == expected, key
        else:
            for a, b in zip(expected[0] + expected[1], state[key][0] + state[key][1]):
                np.testing.assert_array_equal(a, b, err_msg=key)
