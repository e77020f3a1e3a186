"""The files of `LotteryCallback(state_dir=...)`: written atomically, read back with checks.

- `lottery_state.json`: one record per finished epoch (its round, steps and
  scalar logs), the round history, and the id of the run that wrote it.
- `rewind_point.npz`: the rewind snapshot (model and optimizer values).
- `masks_round_<r>.npz`: the masks round `r` trains with (round 0's too).

Every file carries the run id, so a file left by an earlier run in the same
directory is never taken for this run's. A damaged file is reported by path
with the fix, never as a raw `BadZipFile` / `EOFError` / `KeyError`.
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib

import numpy as np

from tf_lottery.lottery import rewind
from tf_lottery.utils import atomic_io

FORMAT = "tf_lottery.lottery_state/2"
STATE_FILE = "lottery_state.json"
REWIND_FILE = "rewind_point.npz"
# What a truncated, garbled or foreign file raises while it is read.
_READ_ERRORS = (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile, zlib.error)


def masks_file(round_index: int) -> str:
    return f"masks_round_{round_index}.npz"


def damaged(path: str, problem: str) -> atomic_io.DamagedFileError:
    """The error for a damaged state file: `atomic_io.DamagedFileError` (a `ValueError`) with the fix."""
    directory = os.path.dirname(path)
    return atomic_io.DamagedFileError(
        path,
        f"the LotteryCallback state file is damaged ({problem}), so the run cannot resume from it",
        f"Delete '{directory}' and the BackupAndRestore backup directory to run again from the start, "
        "or restart fit() without `state_dir` and without BackupAndRestore.",
    )


def _load_npz(path: str) -> dict:
    try:
        return atomic_io.load_npz(path)
    except _READ_ERRORS as error:
        raise damaged(path, f"{type(error).__name__}: {error}") from error


def _run_of(archive: dict, path: str) -> str:
    run = archive.get("run")
    if run is None or run.dtype.kind != "U" or run.ndim != 0:
        raise damaged(path, "it holds no run id")
    return str(run)


def write_rewind_point(state_dir: str, snapshot: rewind.Snapshot, run: str) -> None:
    atomic_io.makedirs(state_dir)
    snapshot.save(os.path.join(state_dir, REWIND_FILE), {"run": run})


def _legacy_snapshot(archive: dict, path: str) -> tuple[rewind.Snapshot, dict]:
    """A rewind point that tf_lottery 0.1.0 wrote: `step` and `run` as arrays beside the values."""
    if "step" not in archive:
        raise damaged(path, "it holds no step")
    info = {"step": int(archive["step"]), "run": _run_of(archive, path)}
    return rewind.Snapshot.from_arrays({**archive, "info": atomic_io.json_array(info)}, path)


def read_rewind_point(state_dir: str, run: str, model_shapes: list) -> rewind.Snapshot | None:
    """The run's rewind point, or `None` when there is none or it belongs to another run."""
    path = os.path.join(state_dir, REWIND_FILE)
    if not atomic_io.exists(path):
        return None
    archive = _load_npz(path)
    if "info" in archive:
        try:
            snapshot, info = rewind.Snapshot.from_arrays(archive, path)
        except atomic_io.DamagedFileError as error:
            raise damaged(path, error.reason) from error
    else:
        snapshot, info = _legacy_snapshot(archive, path)
    if not isinstance(info.get("run"), str):
        raise damaged(path, "it holds no run id")
    if info["run"] != run:
        return None
    model_values = snapshot.model_values
    if [tuple(v.shape) for v in model_values] != [tuple(s) for s in model_shapes]:
        raise damaged(
            path,
            f"it holds {len(model_values)} model arrays with shapes {[v.shape for v in model_values]}; "
            f"the model has {len(model_shapes)} variables with shapes {model_shapes}",
        )
    return snapshot


def write_masks(state_dir: str, round_index: int, masks: list, run: str) -> None:
    arrays = {f"m{i:05d}": np.asarray(m, dtype=bool) for i, m in enumerate(masks)}
    arrays["run"] = np.asarray(run)
    atomic_io.makedirs(state_dir)
    atomic_io.write_npz(os.path.join(state_dir, masks_file(round_index)), arrays)


def read_masks(state_dir: str, round_index: int, run: str, shapes: list) -> list:
    path = os.path.join(state_dir, masks_file(round_index))
    if not atomic_io.exists(path):
        raise damaged(path, "it is missing")
    archive = _load_npz(path)
    if _run_of(archive, path) != run:
        raise damaged(path, f"it was written by another run than '{STATE_FILE}'")
    masks = [archive[k] for k in sorted(k for k in archive if k.startswith("m"))]
    if [tuple(m.shape) for m in masks] != [tuple(s) for s in shapes] or any(m.dtype != bool for m in masks):
        raise damaged(
            path,
            f"it holds masks of shapes {[m.shape for m in masks]}; the model's pruned weights have {shapes}",
        )
    return masks


def write_state(state_dir: str, state: dict) -> None:
    atomic_io.makedirs(state_dir)
    atomic_io.write_json(os.path.join(state_dir, STATE_FILE), {"format": FORMAT, **state})


def read_state(state_dir: str) -> dict | None:
    """The checked contents of `lottery_state.json`, or `None` if there is none."""
    path = os.path.join(state_dir, STATE_FILE)
    if not atomic_io.exists(path):
        return None
    try:
        state = json.loads(atomic_io.read_text(path))
    except _READ_ERRORS as error:
        raise damaged(path, f"{type(error).__name__}: {error}") from error
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise damaged(path, f"expected a JSON object of format {FORMAT!r}, found {found!r}")
    fields = {"run": str, "rounds": int, "epochs_per_round": int, "epochs": list, "history": list}
    for name, kind in fields.items():
        if not isinstance(state.get(name), kind):
            raise damaged(path, f"field {name!r} is not a {kind.__name__}: {state.get(name)!r}")
    for record in state["epochs"]:
        if not (
            isinstance(record, dict)
            and all(isinstance(record.get(k), int) for k in ("epoch", "round", "steps"))
            and isinstance(record.get("logs"), dict)
        ):
            raise damaged(path, f"an epoch record is malformed: {record!r}")
    if not all(isinstance(record, dict) for record in state["history"]):
        raise damaged(path, "a round record of 'history' is not a JSON object")
    return state
