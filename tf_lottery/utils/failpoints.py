"""Named points where a test can make this process kill itself (SIGKILL).

Used by the fault tests to prove that a run killed at any moment resumes
with nothing lost: set `TF_LOTTERY_FAILPOINT=<name>:<n>` and the process
sends itself SIGKILL the n-th time it reaches the point `<name>` (n defaults
to 1). Points:

- `train_batch`: after a training batch inside `model.fit` (mid-epoch);
- `after_prune`: a level's masks were pruned, its weights not yet rewound;
- `atomic_write`: an artifact's bytes are in its temporary file, not yet
  renamed into place; `atomic_write/<file name>` counts only writes of that
  file (e.g. `atomic_write/end.npz:2`, the second ticket of a level's end).

Unset (always, outside tests), `reach()` is one comparison.
"""

from __future__ import annotations

import os
import signal

import keras

POINTS = ("train_batch", "after_prune", "atomic_write")


def _parse(spec: str):
    if not spec:
        return None, 0
    name, _, count = spec.partition(":")
    if name.split("/")[0] not in POINTS or (count and not count.isdigit()):
        raise ValueError(
            f"Invalid value for TF_LOTTERY_FAILPOINT: expected '<point>[:<n>]' with a point in "
            f"{POINTS}. Received: {spec!r}."
        )
    return name, int(count or 1)


_NAME, _AT = _parse(os.environ.get("TF_LOTTERY_FAILPOINT", ""))
_SEEN = {"count": 0}


def active(name: str) -> bool:
    return name == _NAME


def reach(name: str, detail: str | None = None) -> None:
    """Kills this process if `name` (or `name/detail`) is armed and its count is reached."""
    if _NAME is None or (name != _NAME and f"{name}/{detail}" != _NAME):
        return
    _SEEN["count"] += 1
    if _SEEN["count"] == _AT:
        os.kill(os.getpid(), signal.SIGKILL)


class _BatchFailpoint(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        reach("train_batch")


def fit_callbacks() -> list:
    """Callbacks to pass to `fit` (empty unless `train_batch` is armed)."""
    return [_BatchFailpoint()] if active("train_batch") else []
