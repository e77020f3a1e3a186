"""Kill a run with SIGKILL at chosen points, restart it, and check nothing is lost.

Each kill arms one failpoint (`tf_lottery/utils/failpoints.py`): mid-epoch, between
pruning and rewinding, between levels or analyses, and while a ticket, a
checkpoint or an analysis is being written. A kind's run is killed at each of
its points in turn, each restart running on from what the last kill left. Every
killed run must leave only complete artifacts; the restarts must recompute
nothing already finished (levels, analyses, trainings at their end), and the
last one ends with exactly the masks, weights, training states, metrics and
analyses of an uninterrupted run with the same seed.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tf_lottery.utils import atomic_io

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
    # 10 data steps an epoch, 30 a level; lines restart at steps 0 and 10.
    "instability": (
        "--config=configs/instability_mnist1d.py:smoke",
        "--config.dataset.train_limit=1000",
        "--config.instability.rewind_points=0it,10it",
        "--config.instability.points=3",
        "--config.run.steps_per_execution=5",
        "--config.run.checkpoint_every=1ep",
    ),
    # 10 data steps an epoch, 30 a run; pruning before steps 5, 10, 15, 20.
    "gradual": (
        "--config=configs/gradual_mnist1d.py:smoke",
        "--config.dataset.train_limit=1000",
        "--config.gradual.frequency=5",
        "--config.run.steps_per_execution=5",
        "--config.run.checkpoint_every=1ep",
    ),
    # 10 data steps an epoch, a mask drawn after each; the search runs the 30 steps.
    "early_bird": (
        "--config=configs/early_bird_mnist1d.py:smoke",
        "--config.dataset.train_limit=1000",
        "--config.run.steps_per_execution=5",
        "--config.run.checkpoint_every=1ep",
    ),
    # 10 data steps an epoch, 30 a run; masks rewired after steps 5, 10, 15 and 20.
    "rigl": (
        "--config=configs/rigl_mnist1d.py:smoke",
        "--config.dataset.train_limit=1000",
        "--config.sparse.update_every=5it",
        "--config.run.steps_per_execution=5",
        "--config.run.checkpoint_every=1ep",
    ),
    # Source task 6 data steps an epoch (18 a level), target task 3 (9 a level).
    "transfer": (
        "--config=configs/transfer_mnist1d.py:smoke",
        "--config.dataset.train_limit=1000",
        "--config.run.steps_per_execution=2",
        "--config.run.checkpoint_every=1ep",
    ),
}
# The analyses a kind stores beside its levels (one JSON file each, written last).
ANALYSES = ("instability.json", "transfer.json")
# The kinds whose runs compile with XLA, the default. The others turn it off: XLA's compile was
# about 3.5 s of each 11-18 s process (the seven chains: 575 s of test time with it, 404 s
# without it in the six, measured on the 2-core machine), and what a kill
# tests (artifacts written whole, nothing finished redone, the exact end) does not depend on
# it. XLA-compiled runs resuming exactly: this lottery chain and the externally killed run of
# tests/cli/test_main.py; XLA twice bit-identical: tests/experiments/test_xla.py.
XLA_KINDS = ("lottery",)

pytestmark = pytest.mark.slow


def _run(workdir, kind, failpoint=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("TF_LOTTERY_FAILPOINT", None)
    if failpoint:
        env["TF_LOTTERY_FAILPOINT"] = failpoint
    # Plots are rebuilt by every run under `results/`, which the comparison leaves out.
    command = [
        sys.executable,
        "-m",
        "tf_lottery.main",
        f"--workdir={workdir}",
        *KINDS[kind],
        "--config.run.plots=False",
        f"--config.run.jit_compile={kind in XLA_KINDS}",
    ]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def _artifacts(workdir):
    found = {}
    for directory, _, files in os.walk(workdir):
        for name in files:
            found[os.path.relpath(os.path.join(directory, name), workdir)] = os.path.join(directory, name)
    return found


def _without_wall_time(data):
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k not in ("elapsed_s", "timing")}
    return data


def _stored(rel):
    """Whether `rel` is a stored result (the summaries under `results/` are rebuilt by each run)."""
    return "results" not in rel.split(os.sep)


def _state(workdir):
    """Masks, weights, training states, metrics and analyses (minus wall times) of a run."""
    state = {}
    for rel, path in _artifacts(workdir).items():
        if not _stored(rel) or os.path.basename(rel).startswith("."):
            continue
        if rel.endswith(".npz"):
            with np.load(path, allow_pickle=False) as archive:
                state[rel] = {
                    key: _without_wall_time(atomic_io.array_json(archive[key]))
                    if key in ("info", "header")
                    else archive[key]
                    for key in archive.files
                }
        elif rel.endswith(".json"):
            with open(path) as handle:
                state[rel] = _without_wall_time(json.load(handle))
    return state


def _finished(workdir, reference):
    """`{rel: mtime}` of what a run finished: levels, analyses and trainings at their end."""
    found = {}
    for rel, path in _artifacts(workdir).items():
        name = os.path.basename(rel)
        done = os.path.exists(os.path.join(os.path.dirname(path), "metrics.json"))
        if name in ("metrics.json", "end.npz") and done or name in ANALYSES and _stored(rel):
            found[rel] = os.stat(path).st_mtime_ns
        elif name == "checkpoint.npz" and rel in reference:
            with np.load(path, allow_pickle=False) as archive:
                position = atomic_io.array_json(archive["info"])["position"]
            if position == reference[rel]["info"]["position"]:
                found[rel] = os.stat(path).st_mtime_ns
    return found


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


# Each kind's run is killed several times in a row, each restart killed again further on, and
# the last restart runs to the end: one uninterrupted reference and one chain of restarts per
# kind, instead of a reference and a killed run plus its restart per kill point. A point is
# `<failpoint>:<n>` counted from the start of the process it kills (see
# `tf_lottery/utils/failpoints.py`); each comment says where the chain then stands. Each kind is
# killed mid-training and between levels, and while each kind of file it alone writes (tickets,
# checkpoints, analyses, search states, masks) is being written; a kill point whose category
# another point of the same kind covers is left out (the instability and transfer kinds' second
# mid-training and ticket-write points: the ticket write is the lottery kind's).
CHAINS = {
    # 21 fit calls a training (5 steps each), checkpoints every 7; levels 0-2 and the reinit
    # branch of levels 1 and 2: 5 trainings.
    "lottery": (
        "train_batch:30",  # mid-epoch of level 1, after its checkpoint at call 28
        "atomic_write/checkpoint.npz:1",  # restarted at 28: the checkpoint at 35 being written
        "atomic_write/end.npz:1",  # restarted at 28 again: level 1's final ticket being written
        "after_prune:2",  # level 1 finished; after its reinit branch, level 2 pruned, not rewound
    ),
    # 4 fit calls a distilled level; the ticket and kd_rewind arms after each level.
    "kd_ticket": (
        "train_batch:6",  # mid-way through the distilled level 1
        "after_prune:3",  # the kd_rewind arm's level 1 pruned, not yet rewound
        "atomic_write/metrics.json:1",  # between levels: that arm's level 1's metrics written
    ),
    # 6 fit calls a level (4 for the line from step 10): level 0, then per level the lines 0it,
    # 10it; then 6 copies of 6 fit calls from step 0 (dense, dense, imp, imp, ...).
    "instability": (
        "atomic_write/metrics.json:3",  # between levels: line 10it's level 1 finishing
        "train_batch:25",  # the first IMP copy from step 0, after its first checkpoint
        "atomic_write/instability.json:2",  # the first analysis stored, the second written
    ),
    # 9 fit calls a source level (27), 6 a target level (18), then 6 a target-task training.
    "transfer": (
        "atomic_write/metrics.json:2",  # between levels: source level 1 finishing
        "train_batch:30",  # the transferred level-1 ticket, after its first checkpoint
        "atomic_write/transfer.json:2",  # level 1's analysis stored, level 2's written
    ),
    # 8 fit calls a replicate (chunks end at each pruning step).
    "gradual": (
        "train_batch:11",  # replicate 1, after its first pruning
        "atomic_write/checkpoint.npz:2",  # restarted in replicate 1: its second checkpoint written
    ),
    # 6 fit calls a round: the search (round 0), then the ticket (round 1).
    "early_bird": (
        "train_batch:8",  # replicate 0's ticket retraining, mid-epoch
        "atomic_write/search_state.npz:2",  # replicate 1's second search mask being stored
    ),
    # 6 fit calls a replicate (chunks end at each update and each epoch).
    "rigl": (
        "atomic_write/masks.npz:6",  # replicate 1's masks after step 10 being stored
        "train_batch:4",  # restarted in replicate 1: before its update at 20, after the checkpoint at 10
    ),
}


def _reference(tmp_path_factory, kind):
    workdir = tmp_path_factory.mktemp(f"reference_{kind}")
    result = _run(workdir, kind)
    assert result.returncode == 0, result.stderr[-3000:]
    return _state(workdir)


@pytest.mark.parametrize("kind", list(CHAINS))
def test_killed_runs_resume_to_the_uninterrupted_result(tmp_path, tmp_path_factory, kind):
    reference = _reference(tmp_path_factory, kind)
    finished = {}
    for failpoint in CHAINS[kind]:
        killed = _run(tmp_path, kind, failpoint)
        assert killed.returncode == -9, (
            f"{failpoint}: expected SIGKILL, got {killed.returncode}: {killed.stderr[-2000:]}"
        )
        _assert_complete(tmp_path)
        now = _finished(tmp_path, reference)
        done = [rel for rel in now if not rel.endswith("checkpoint.npz")]
        assert 0 < len(done) < len(_finished_markers(reference)), failpoint
        for rel, mtime in finished.items():  # nothing finished before this kill was redone
            assert now.get(rel) == mtime, (failpoint, rel)
        finished.update(now)

    resumed = _run(tmp_path, kind)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = _artifacts(tmp_path)
    assert not [rel for rel in after if os.path.basename(rel).endswith(".tmp")]
    for rel, mtime in finished.items():  # nothing finished was recomputed
        assert os.stat(after[rel]).st_mtime_ns == mtime, rel
    state = _state(tmp_path)
    assert sorted(state) == sorted(reference)
    for key, expected in reference.items():
        if isinstance(expected, dict) and key.endswith(".npz"):
            assert sorted(state[key]) == sorted(expected), key
            for name, value in expected.items():
                if isinstance(value, np.ndarray):
                    np.testing.assert_array_equal(value, state[key][name], err_msg=f"{key}:{name}")
                else:
                    assert state[key][name] == value, f"{key}:{name}"
        else:
            assert state[key] == expected, key


def _finished_markers(state):
    """What marks a level or an analysis finished in a state (`_state`)."""
    return [
        rel
        for rel in state
        if os.path.basename(rel) == "metrics.json"
        or os.path.basename(rel) == "end.npz"
        or os.path.basename(rel) in ANALYSES
    ]
