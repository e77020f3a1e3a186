"""Damaged files in the run store: an error naming the file and what to delete, or exact recomputation.

Each case damages one file of a finished tiny run (a copy of it), in one of three
ways: truncated, bytes overwritten in the middle (garbled), or valid JSON of another
type where an object belongs. Resuming must then either stop with an error that
names the file and the files to delete, after which deleting exactly those and
resuming again ends with the uninterrupted run's files; or, for a level's
in-progress checkpoint, drop it with a warning naming it and retrain that level
to the identical result.
"""

import json
import os
import re
import shutil
import warnings

import numpy as np
import pytest

from tests.testing import tiny_run_config
from tf_lottery.experiments import run_experiment
from tf_lottery.utils import atomic_io

ROUND_0, ROUND_1 = os.path.join("replicate_0", "round_0"), os.path.join("replicate_0", "round_1")


def _config():
    return tiny_run_config(branches="")


def _run(workdir):
    return run_experiment(_config(), str(workdir), log=lambda line: None)


def _without_wall_time(data):
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k not in ("elapsed_s", "timing")}
    return data


def _state(root):
    """Every stored array and JSON value under the run directory `root` (minus wall times)."""
    state = {}
    for directory, _, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            rel = os.path.relpath(path, root)
            if rel.startswith("results") or name == "config.json":
                continue
            if name.endswith(".npz"):
                state[rel] = {
                    key: _without_wall_time(atomic_io.array_json(value))
                    if key in ("info", "header")
                    else value
                    for key, value in atomic_io.load_npz(path).items()
                }
            else:
                state[rel] = _without_wall_time(atomic_io.read_json(path))
    return state


def _assert_same_state(root, reference):
    state = _state(root)
    assert sorted(state) == sorted(reference)
    for rel, expected in reference.items():
        if isinstance(expected, dict) and rel.endswith(".npz"):
            assert sorted(state[rel]) == sorted(expected), rel
            for key, value in expected.items():
                np.testing.assert_equal(state[rel][key], value, err_msg=f"{rel}:{key}")
        else:
            assert state[rel] == expected, rel


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """`(workdir, run directory relative to it, its state)` of one finished tiny run."""
    workdir = tmp_path_factory.mktemp("finished")
    root = _run(workdir)["root"]
    return str(workdir), os.path.relpath(root, workdir), _state(root)


@pytest.fixture
def copy(finished, tmp_path):
    """`(workdir, run directory)`: a copy of the finished run to damage."""
    workdir, rel, _ = finished
    shutil.copytree(workdir, tmp_path / "w")
    return str(tmp_path / "w"), str(tmp_path / "w" / rel)


def _truncate(path):
    data = open(path, "rb").read()
    with open(path, "wb") as handle:
        handle.write(data[: len(data) // 2])


def _garble(path):
    data = open(path, "rb").read()
    middle = len(data) // 2
    with open(path, "wb") as handle:
        handle.write(data[:middle] + b"\xff" * 16 + data[middle + 16 :])


def _wrong_type(path):
    """Valid JSON of the wrong type: a list where an object belongs (in an npz: its JSON entry)."""
    if path.endswith(".json"):
        with open(path, "w") as handle:
            json.dump([1, 2], handle)
        return
    arrays = atomic_io.load_npz(path)
    key = "header" if "header" in arrays else "info"
    arrays[key] = atomic_io.json_array([atomic_io.array_json(arrays[key])])
    atomic_io.write_npz(path, arrays)


DAMAGES = {"truncated": _truncate, "garbled": _garble, "wrong_type": _wrong_type}


def _unfinish(root, level):
    """Makes `level` an unfinished level (as killed mid-training after its last checkpoint)."""
    for name in ("metrics.json", "end.npz"):
        os.remove(os.path.join(root, level, name))


def _delete_what_the_error_says(message):
    """Deletes the files that the error's fix names ("Delete '<a>' and '<b>' and run ...")."""
    fix = message[message.index("Delete ") :]
    paths = re.findall(r"'([^']+)'", fix[: fix.index(" run ")])
    assert paths
    for path in paths:
        os.remove(path)
    return paths


# (the file, relative to the run directory; the level left unfinished before damaging it)
STOPS = {
    "hparams.json": ("hparams.json", None),
    "metrics.json": (os.path.join(ROUND_1, "metrics.json"), None),
    "rewind.npz": (os.path.join("replicate_0", "rewind.npz"), ROUND_1),
    "end.npz": (os.path.join(ROUND_0, "end.npz"), ROUND_1),
    "start.npz": (os.path.join(ROUND_1, "start.npz"), ROUND_1),
}


@pytest.mark.parametrize("damage", DAMAGES)
@pytest.mark.parametrize("kind", STOPS)
def test_a_damaged_file_stops_the_run_naming_it_and_what_to_delete(finished, copy, kind, damage):
    workdir, root = copy
    rel, unfinished = STOPS[kind]
    if unfinished:
        _unfinish(root, unfinished)
    path = os.path.join(root, rel)
    DAMAGES[damage](path)
    with pytest.raises(atomic_io.DamagedFileError) as caught:
        _run(workdir)
    message = str(caught.value)
    assert message.startswith(f"Cannot read '{path}': ") and "Traceback" not in message
    assert caught.value.path == path
    assert "and run the same command again" in message
    if damage != "truncated":  # the fix works: the message is checked, deletion and resuming below
        return
    deleted = _delete_what_the_error_says(message)
    assert path in deleted
    _run(workdir)
    _assert_same_state(root, finished[2])


def test_the_fix_for_a_damaged_level_file_recomputes_exactly_that_level(copy):
    workdir, root = copy
    _unfinish(root, ROUND_1)
    _truncate(os.path.join(root, ROUND_0, "end.npz"))
    with pytest.raises(atomic_io.DamagedFileError) as caught:
        _run(workdir)
    assert _delete_what_the_error_says(str(caught.value)) == [
        os.path.join(root, ROUND_0, "end.npz"),
        os.path.join(root, ROUND_0, "metrics.json"),
    ]
    assert "this level ('" + os.path.join(root, ROUND_0) + "') is recomputed from its last checkpoint" in str(
        caught.value
    )


@pytest.mark.parametrize(
    "damage",
    # Each retrains a level (~5 s); load_npz's own test covers every way of damaging an archive.
    [
        "truncated",
        pytest.param("garbled", marks=pytest.mark.slow),
        pytest.param("wrong_type", marks=pytest.mark.slow),
    ],
)
def test_a_damaged_checkpoint_of_an_unfinished_level_is_dropped_and_the_level_retrained(
    finished, copy, damage
):
    workdir, root = copy
    _unfinish(root, ROUND_1)
    path = os.path.join(root, ROUND_1, "checkpoint.npz")
    DAMAGES[damage](path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _run(workdir)
    messages = [str(w.message) for w in caught if "Dropped the level's progress" in str(w.message)]
    assert len(messages) == 1 and messages[0].startswith(f"Cannot read '{path}': ")
    assert f"'{os.path.join(root, ROUND_1)}' trains again from its start" in messages[0]
    _assert_same_state(root, finished[2])


def test_a_finished_level_without_its_end_ticket_is_noticed(finished, copy):
    workdir, root = copy
    os.remove(os.path.join(root, ROUND_1, "end.npz"))
    with pytest.raises(FileNotFoundError) as caught:
        _run(workdir)
    message = str(caught.value)
    level = os.path.join(root, ROUND_1)
    assert message.startswith(
        f"The level '{level}' is marked finished (metrics.json) but its 'end.npz' is missing."
    )
    assert _delete_what_the_error_says(message) == [os.path.join(level, "metrics.json")]
    _run(workdir)
    _assert_same_state(root, finished[2])
