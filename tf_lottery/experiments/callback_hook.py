"""`CallbackHook`: a library callback inside the trainer's resumable, chunked level.

The methods that act during training (`tfl.GradualPruning`, `tfl.EarlyBird`,
`DynamicSparseTraining`) exist once, as Keras callbacks for `fit()`. The
trainer (`trainer.train_level`) trains a level in chunks of `fit()` that end
at evaluations, checkpoints and the data steps a hook asks for, and may be
killed and resumed from any checkpoint. A `CallbackHook` runs one callback
there as a single `fit()` over the level would: `on_train_begin` and
`on_epoch_begin(0)` when the level (re)starts at a data position, then at
each of its `steps` (where the trainer stops), `on_train_batch_end` of the
batch that brought training there and `on_train_batch_begin` of the next
one, and `on_epoch_end(0)` and `on_train_end` when the level ends. Batch
indices count from the position the level (re)started at, as in a `fit()`
that began there.

A hook's state lives in the run store: the level's checkpoint (weights,
optimizer, data position) and the files named in `progress_files`, which a
kind's subclass writes when the state changes (`load` reads them back;
damaged, they are dropped with the checkpoint and the level trains again from
its start). On a resume, `restore` sets what the weights need before the
checkpoint is restored (masks: setting them zeroes the optimizer slots where
they change), and `state` gives the callback's `set_state` argument after its
`on_train_begin`.

The trainer's protocol (duck-typed, so kinds may plug in other hooks):

- `steps`: data steps where the trainer stops and calls `at`.
- `progress_files`: names, in the level directory, of the hook's stored state.
- `load(level_dir)`: reads the stored state (raises `DamagedFileError`).
- `restore(position, snapshot)`: before the trainer restores the checkpoint
  `snapshot` taken at `position` (both `None`: the level starts afresh).
- `begin(model, plan, position, resumed)`: the level (re)starts at `position`.
- `at(position)`: training reached `position` (one of `steps`).
- `end_step`: `None`, or the data step at which the level ends early.
- `end(position)`: the level ended at `position`.
"""

from __future__ import annotations

import keras


class CallbackHook:
    """Runs `callback` (a `keras.callbacks.Callback`) inside `trainer.train_level`.

    Args:
        callback: The library callback.
        steps: Data steps at which it must see the model (pruning steps,
            mask checks or updates); chunks end there.
        steps_per_epoch: int or None. `params["steps"]` of the callback (for
            rewind points counted in epochs). Defaults to the level's length.
    """

    progress_files: tuple[str, ...] = ()

    def __init__(self, callback: keras.callbacks.Callback, steps=(), steps_per_epoch: int | None = None):
        self.callback = callback
        self.steps = tuple(sorted(set(int(s) for s in steps)))
        self.steps_per_epoch = steps_per_epoch
        self.end_step: int | None = None
        self._begin = 0
        self._end = 0

    # -- stored state (a kind's subclass) ---------------------------------------

    def load(self, level_dir: str) -> None:
        """Reads the hook's stored state from `level_dir`."""

    def restore(self, position: int | None, snapshot=None) -> None:
        """Sets what must be set before the trainer restores the checkpoint at `position`.

        `snapshot` is that checkpoint's `Snapshot` (both `None`: the level
        starts afresh).
        """

    def state(self, position: int) -> dict | None:
        """The callback's state at `position` after a resume (`set_state`'s argument), or None."""
        return None

    # -- the trainer's calls --------------------------------------------------------

    def begin(self, model: keras.Model, plan, position: int, resumed: bool) -> None:
        callback = self.callback
        self._begin, self._end = int(position), int(plan.end)
        callback.set_model(model)
        callback.set_params({"epochs": 1, "steps": self.steps_per_epoch or plan.end - position, "verbose": 0})
        callback.on_train_begin()
        callback.on_epoch_begin(0)
        state = self.state(position) if resumed else None
        if state is not None:
            callback.set_state(state)

    def at(self, position: int) -> None:
        callback = self.callback
        if position > self._begin:
            callback.on_train_batch_end(position - 1 - self._begin)
        if position < self._end:
            callback.on_train_batch_begin(position - self._begin)
        if getattr(callback.model, "stop_training", False):  # e.g. EarlyBird found its ticket
            callback.model.stop_training = False
            self.end_step = int(position)

    def end(self, position: int) -> None:
        self.callback.on_epoch_end(0)
        self.callback.on_train_end()
