"""Where a run's files live, and how training states are written and read.

```
<workdir>/<experiment>/<hash>/
    hparams.json            the non-default options that the hash names
    config.json             the full config of the last invocation
    replicate_<r>/
        rewind.npz          the rewind point (model + optimizer values)
        rewind_<step>.npz   another line's restart point, if a kind has one
        round_<k>/          level k of the main (lottery or oneshot) run
            start.npz       masks + start weights (a `tfl.Ticket` file)
            checkpoint.npz  latest training state (model + optimizer values,
                            position, evaluations); at the end, the final one
            end.npz         masks + trained weights (a `tfl.Ticket` file)
            metrics.json    written last: the level is done
        branch_<name>/round_<k>/   a control, or another line's level k
        <analysis>/         a kind's analysis (e.g. `instability_<line>/`)
    <part>/                 a second set of replicates on other data (e.g. the
                            `transfer` kind's target task), laid out the same
    results/                rounds.csv, rounds.json, *.png, a kind's summary
```

Every file is written atomically (`tf_lottery.utils.atomic_io`), so a run killed
at any moment leaves complete files only, and `metrics.json` marks a level
finished. `workdir` is a local directory or any `tf.io.gfile` path
(`gs://bucket/runs`, `ram://runs`); processes that share one finish a level
once: the first `metrics.json` written is kept.

A file damaged after it was written (a truncated copy, a disk error) is never
used silently: reading it raises `atomic_io.DamagedFileError` naming it and the
files to delete so that exactly its level is recomputed (`recompute_fix`); a
damaged checkpoint of an unfinished level is dropped with a warning, and the
level trains again from its start (`trainer.read_checkpoint`). A level marked
finished without its `end.npz` is an error too (`is_done`).
"""

from __future__ import annotations

import json
import os

import ml_collections

from tf_lottery.experiments import config_hash
from tf_lottery.lottery.rewind import Snapshot
from tf_lottery.utils import atomic_io

STORE_FORMAT = "tf_lottery.run_store/1"


class RunStore:
    """Paths of one experiment (one config hash) under `workdir`.

    Args:
        workdir: str. Root directory of all runs.
        config: ConfigDict. The experiment config.
        part: str or None. A part of the run with replicates of its own
            (`<run>/<part>/replicate_<r>/...`, its own `results/`), e.g. the
            `transfer` kind's target task. Defaults to `None`, the run itself.
    """

    def __init__(self, workdir: str, config: ml_collections.ConfigDict, part: str | None = None):
        if not workdir:
            raise ValueError(
                f"Invalid value for argument `workdir`: expected a directory. Received: {workdir!r}."
            )
        self.workdir = workdir
        self.config = config
        self.part = part
        self.hash = config_hash.config_hash(config)
        self.run_root = os.path.join(workdir, config.experiment, self.hash)
        self.root = os.path.join(self.run_root, part) if part else self.run_root

    def replicate_dir(self, replicate: int) -> str:
        return os.path.join(self.root, f"replicate_{replicate}")

    def rewind_path(self, replicate: int, step: int | None = None) -> str:
        """The rewind point (`step=None`), or the state captured at data step `step`."""
        name = "rewind.npz" if step is None else f"rewind_{int(step)}.npz"
        return os.path.join(self.replicate_dir(replicate), name)

    def level_dir(self, replicate: int, level: int, branch: str | None = None) -> str:
        parent = self.replicate_dir(replicate)
        if branch is not None:
            parent = os.path.join(parent, f"branch_{branch}")
        return os.path.join(parent, f"round_{level}")

    @property
    def results_dir(self) -> str:
        return os.path.join(self.root, "results")

    def initialize(self) -> None:
        """Creates the run directory; refuses one that holds another config's run.

        Also removes the temporary files of writes that a killed run left
        unfinished (complete artifacts are never temporary files).
        """
        if atomic_io.isdir(self.root):
            atomic_io.remove_temporaries(self.root)
        atomic_io.makedirs(self.results_dir)
        hparams = {"format": STORE_FORMAT, "hparams": config_hash.hparams(self.config)}
        path = os.path.join(self.run_root, "hparams.json")
        if atomic_io.exists(path):
            try:
                stored = atomic_io.read_json(path, expect=dict)
            except atomic_io.DamagedFileError as error:
                raise error.with_fix(
                    f"Delete '{path}' and run the same command again: it is written anew from this "
                    "config (it records the options that the run directory's name hashes); the levels "
                    "are kept."
                ) from error
            if stored != json.loads(json.dumps(hparams)):
                raise ValueError(
                    f"The run directory '{self.run_root}' holds a run with other options "
                    f"({stored}) than this config ({hparams}): its hash was computed differently. "
                    "Move it away or use another `--workdir`."
                )
        else:
            atomic_io.write_json(path, hparams)
        atomic_io.write_json(os.path.join(self.run_root, "config.json"), self.config.to_dict())


def is_done(level_dir: str, outputs: tuple[str, ...] = ("end.npz",)) -> bool:
    """Whether the level in `level_dir` finished (its metrics.json exists).

    Args:
        level_dir: str. The level's directory.
        outputs: File names that a finished level holds besides metrics.json
            (its result, written before it). Defaults to the trained ticket,
            `end.npz`.

    Raises:
        FileNotFoundError: the level is marked finished but one of `outputs`
            is missing; the message says which file to delete to recompute it.
    """
    if not atomic_io.isfile(os.path.join(level_dir, "metrics.json")):
        return False
    for name in outputs:
        if not atomic_io.isfile(os.path.join(level_dir, name)):
            raise FileNotFoundError(
                f"The level '{level_dir}' is marked finished (metrics.json) but its '{name}' is missing. "
                + recompute_fix(level_dir)
            )
    return True


def recompute_fix(level_dir: str, *damaged: str) -> str:
    """What to delete so that the next run recomputes exactly the level in `level_dir`.

    Args:
        level_dir: str. The level's directory.
        *damaged: Paths of the level's damaged files, deleted as well.
    """
    paths = list(dict.fromkeys([*damaged, os.path.join(level_dir, "metrics.json")]))
    how = (
        "trains again from its start"
        if os.path.join(level_dir, "checkpoint.npz") in paths
        else "is recomputed from its last checkpoint (from its start if that is damaged too)"
    )
    return (
        f"Delete {' and '.join(repr(p) for p in paths)} and run the same command again: "
        f"this level ('{level_dir}') {how}; the other levels are kept."
    )


def finished_time(level_dir: str) -> float:
    """When a finished level's `metrics.json` (its done marker) was written, in seconds since the epoch (0 if unknown)."""
    path = os.path.join(level_dir, "metrics.json")
    try:
        if atomic_io.is_local(path):
            return os.stat(path).st_mtime
        import tensorflow as tf

        return tf.io.gfile.stat(path).mtime_nsec / 1e9
    except Exception:  # noqa: BLE001 - a time for a message only; the level is done either way
        return 0.0


def read_metrics(level_dir: str) -> dict:
    """The metrics of the finished level in `level_dir`.

    Raises:
        atomic_io.DamagedFileError: metrics.json is damaged; the message
            says what to delete to recompute the level.
    """
    path = os.path.join(level_dir, "metrics.json")
    try:
        return atomic_io.read_json(path, expect=dict)
    except atomic_io.DamagedFileError as error:
        raise error.with_fix(recompute_fix(level_dir, path)) from error


def write_metrics(level_dir: str, metrics: dict) -> bool:
    """Marks the level in `level_dir` done with `metrics`; the first finished result wins.

    When another process sharing the workdir finished the same level first,
    its metrics.json is kept and this one is discarded: both trained the same
    level from the same stored start, and readers never see it change.

    Returns:
        Whether this process wrote metrics.json.
    """
    return atomic_io.write_json(os.path.join(level_dir, "metrics.json"), metrics, overwrite=False)


def save_state(path: str, snapshot: Snapshot, info: dict | None = None) -> None:
    """Writes a `Snapshot` (model + optimizer values, step) and JSON `info` atomically (`Snapshot.save`)."""
    snapshot.save(path, info)


def load_state(path: str) -> tuple[Snapshot, dict]:
    """Reads what `save_state` wrote: `(snapshot, info)` (`Snapshot.load`).

    Raises:
        atomic_io.DamagedFileError: `path` is truncated, garbled or holds
            no state; the message names it.
    """
    return Snapshot.load(path)
