"""Trains one level from a data position to another, resumable after any kill.

A level is a range of *data steps* `[start, end)`: data step `s` is batch
`s % steps_per_epoch` of epoch `s // steps_per_epoch`, whose content depends
only on the seed (see `tf_lottery.data.pipeline`). Training goes chunk by
chunk with `model.fit`; chunks end at every evaluation, checkpoint and at
each step whose state is captured (rewind points). A checkpoint holds all model and optimizer values, the data
position and the evaluations so far, so a restarted level continues with the
exact batches, weights and optimizer state it stopped with.

The model may live in any `tf.distribute` strategy's scope (see
`strategy.py`); batch sizes are global, and Keras splits each batch across
the replicas. Under `MultiWorkerMirroredStrategy`, Keras 3.15's `fit()` and
`evaluate()` fail for every model (`Trainer._maybe_symbolic_build` passes a
whole input batch to `strategy.reduce`, which the collective all-reduce
cannot convert; keras-team/keras#20585), so `_MultiWorkerLoop` runs the
model's own `train_step` and `test_step` with `strategy.run` over a
distributed dataset instead: the same step, loss and metrics as `fit()`.
"""

from __future__ import annotations

import math
import os
import time
import warnings
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from tf_lottery.experiments import run_store, xla
from tf_lottery.experiments.strategy import is_multi_worker
from tf_lottery.lottery.rewind import Snapshot
from tf_lottery.utils import atomic_io, failpoints

CHECKPOINT = "checkpoint.npz"


@dataclass
class LevelPlan:
    """What one level trains.

    Attributes:
        start: int. First data step.
        end: int. Data step after the last one.
        steps_per_epoch: int.
        batch_size: int.
        seed: int. Data-order seed.
        eval_every: int. Evaluate at every multiple of this many data steps
            (and at `end`).
        checkpoint_every: int. Checkpoint at every multiple (and at `end`).
        capture_steps: tuple of int. Data steps at which `on_capture` is
            called (the rewind points that level 0 records).
        eval_test: bool. Also evaluate the test set at every evaluation (it
            is always evaluated at `end`).
        eval_train: bool. Also evaluate the whole training set, without
            augmentation, at every evaluation (`train_eval_loss`,
            `train_eval_accuracy`; open_lth's `eval_on_train`).
    """

    start: int
    end: int
    steps_per_epoch: int
    batch_size: int
    seed: int
    eval_every: int
    checkpoint_every: int
    capture_steps: tuple[int, ...] = ()
    eval_test: bool = True
    eval_train: bool = False


def _next_stop(position: int, plan: LevelPlan, hooks=()) -> int:
    stops = [plan.end]
    for every in (plan.eval_every, plan.checkpoint_every):
        stops.append((position // every + 1) * every)
    stops.extend(step for step in plan.capture_steps if step > position)
    stops.extend(step for hook in hooks for step in hook.steps if step > position)
    return min(stops)


def train_stream(data, plan: LevelPlan, start: int, stop: int):
    """The training batches of data steps `[start, stop)`."""
    parts, position = [], start
    while position < stop:
        epoch, batch = divmod(position, plan.steps_per_epoch)
        count = min(stop - position, plan.steps_per_epoch - batch)
        parts.append(data.train_batches(epoch, plan.batch_size, plan.seed, skip=batch).take(count))
        position += count
    dataset = parts[0]
    for part in parts[1:]:
        dataset = dataset.concatenate(part)
    return dataset


class _KerasLoop:
    """One pass of `fit` or `evaluate` over a dataset.

    Evaluation of a small dataset (the batches fit in
    `EVAL_IN_MEMORY_BYTES`) runs the model's own `test_step`, traced once per
    model and kept across levels, over the batches held in memory: the same
    step, batches and metric accumulation as `evaluate()`, without its
    per-call set-up (data adapter, iterator, callbacks), which costs more than
    evaluating a validation set of a few hundred examples. Larger datasets,
    and models under a distribution strategy, go through `evaluate()`.
    """

    def __init__(self, model: keras.Model):
        self.model = model

    def fit(self, dataset) -> float:
        try:
            history = self.model.fit(
                dataset, epochs=1, verbose=0, shuffle=False, callbacks=failpoints.fit_callbacks()
            )
        except Exception as error:  # noqa: BLE001 - only XLA's compile failures are retried.
            # A step XLA cannot compile fails before it runs: nothing was trained, so the same
            # chunk runs again without XLA.
            if not xla.fall_back(self.model, error):
                raise
            history = self.model.fit(
                dataset, epochs=1, verbose=0, shuffle=False, callbacks=failpoints.fit_callbacks()
            )
        return float(history.history["loss"][-1])

    def evaluate(self, dataset) -> dict:
        batches = _in_memory(dataset)
        if batches is None or self.model.distribute_strategy is not tf.distribute.get_strategy():
            return self.model.evaluate(dataset, verbose=0, return_dict=True)
        if self.model not in _TEST_STEPS:
            _TEST_STEPS[self.model] = tf.function(_test_steps(self.model), reduce_retracing=True)
        steps = _TEST_STEPS[self.model]
        groups = range(0, len(batches), EVAL_BATCHES_PER_CALL)
        for start in groups:
            results = steps(
                tuple(batches[start : start + EVAL_BATCHES_PER_CALL]),
                reset=start == groups[0],
                results=start == groups[-1],
            )
        return {key: float(value) for key, value in results.items()}


def _test_steps(model: keras.Model):
    """A function running `model.test_step` on each batch of a tuple, in one graph call.

    With `reset`, the model's metrics are reset first (`Model.reset_metrics`);
    with `results`, their results are returned (`Model.get_metrics_result`,
    as tensors). Run eagerly, those two cost more than the steps themselves on
    a validation set of a few hundred examples.
    """
    model = weakref.ref(model)  # the cache below must not keep the model alive

    def steps(batches, reset: bool, results: bool):
        metrics = model().metrics
        if reset:
            for metric in metrics:
                metric.reset_state()
        for batch in batches:
            model().test_step(batch)
        values = {}
        if results:
            for metric in metrics:
                result = metric.result()
                values.update(result if isinstance(result, dict) else {metric.name: result})
        return values

    return steps


# One traced test function per model, kept across levels, and the batches of each
# evaluation dataset held in memory when they are small (see `_KerasLoop`). The
# function runs up to `EVAL_BATCHES_PER_CALL` batches per call (unrolled: one
# trace for the full groups, one for the rest), resetting the metrics in the first
# call and returning their results from the last: one call per evaluation of up to
# that many batches, instead of one per batch and the eager metric bookkeeping.
_TEST_STEPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
EVAL_BATCHES_PER_CALL = 16
_EVAL_BATCHES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
EVAL_IN_MEMORY_BYTES = 256 * 2**20


def _in_memory(dataset):
    """`dataset`'s batches as eager tensors if they fit in `EVAL_IN_MEMORY_BYTES`, else None."""
    if dataset not in _EVAL_BATCHES:
        batches, size = [], 0
        for batch in dataset:
            size += sum(int(tf.size(t)) * t.dtype.size for t in tf.nest.flatten(batch))
            if size > EVAL_IN_MEMORY_BYTES:
                batches = None
                break
            batches.append(batch)
        _EVAL_BATCHES[dataset] = batches
    return _EVAL_BATCHES[dataset]


class _MultiWorkerLoop:
    """`_KerasLoop` for `MultiWorkerMirroredStrategy`, where `fit()` fails.

    Every worker runs the same calls: each step's global batch is split
    across all replicas of all workers (`AutoShardPolicy.DATA`), gradients
    are all-reduced by the optimizer, and metrics are summed across workers
    when read, so every worker returns the same numbers.
    """

    def __init__(self, model: keras.Model):
        # Weak, so that `_MULTI_WORKER_LOOPS` lets the model go.
        self._model = weakref.ref(model)
        self.strategy = model.distribute_strategy
        self._train_step = tf.function(
            lambda batch: self.strategy.run(self.model.train_step, args=(batch,)), reduce_retracing=True
        )
        self._test_step = tf.function(
            lambda batch: self.strategy.run(self.model.test_step, args=(batch,)), reduce_retracing=True
        )

    @property
    def model(self) -> keras.Model:
        return self._model()

    def _distribute(self, dataset):
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return self.strategy.experimental_distribute_dataset(dataset.with_options(options))

    def fit(self, dataset) -> float:
        callbacks = keras.callbacks.CallbackList(failpoints.fit_callbacks(), model=self.model)
        self.model.reset_metrics()
        for step, batch in enumerate(self._distribute(dataset)):
            self._train_step(batch)
            callbacks.on_train_batch_end(step)
        return float(self.model.get_metrics_result()["loss"])

    def evaluate(self, dataset) -> dict:
        self.model.reset_metrics()
        for batch in self._distribute(dataset):
            self._test_step(batch)
        return self.model.get_metrics_result()


# One loop per model, so that every level reuses its traced steps.
_MULTI_WORKER_LOOPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _loop(model: keras.Model):
    if not is_multi_worker(model.distribute_strategy):
        return _KerasLoop(model)
    if model not in _MULTI_WORKER_LOOPS:
        _MULTI_WORKER_LOOPS[model] = _MultiWorkerLoop(model)
    return _MULTI_WORKER_LOOPS[model]


def _evaluate(loop, dataset, prefix: str) -> dict:
    if dataset is None:
        return {}
    logs = loop.evaluate(dataset)
    return {f"{prefix}_{key}": float(value) for key, value in logs.items()}


def train_level(
    model: keras.Model,
    data,
    plan: LevelPlan,
    level_dir: str,
    on_capture: Callable[[int], None] | None = None,
    progress: Callable[[dict], None] | None = None,
    fit_model: keras.Model | None = None,
    train_data=None,
    on_steps: Callable[[int, bool], None] | None = None,
    hooks: Sequence = (),
) -> dict:
    """Trains `model` (already set to the level's start) through `plan`.

    If `level_dir` holds a checkpoint, training resumes from it instead.

    Args:
        on_capture: Optional `f(step)` called when training reaches each of
            `plan.capture_steps` (before that step's checkpoint).
        fit_model: Optional model that trains `model` in its steps (e.g. a
            `KDDistiller` whose student is `model`, sharing its optimizer).
            Evaluations and checkpoints are of `model`. Defaults to `model`.
        train_data: Optional pipeline for the training batches (e.g. one
            that carries a teacher's cached logits). Defaults to `data`.
        on_steps: Optional `f(steps, trained)` told of the data steps done:
            those restored from a checkpoint (`trained=False`), then each
            trained chunk (`trained=True`). For progress bars.
        hooks: What acts during training at chosen data steps: library
            callbacks through `callback_hook.CallbackHook` (see there for
            the protocol). Their stored state is read before training and
            dropped with a damaged checkpoint; a hook's `end_step` ends the
            level early (`plan.end` is set to it).

    Returns:
        A dict with `evals` (one dict per evaluation: `step`, `train_loss`,
        `val_loss`, `val_accuracy`, `test_loss`, `test_accuracy`, those
        available), `elapsed_s` and `timing`: seconds spent in `train`
        (fit), `evaluate` and `store` (checkpoints written and read), summed
        over every process that worked on the level.
    """
    checkpoint = os.path.join(level_dir, CHECKPOINT)
    position, evals, elapsed, losses = plan.start, [], 0.0, []
    timing = {"train": 0.0, "evaluate": 0.0, "store": 0.0}
    clock = time.perf_counter()
    hooks = list(hooks)
    progress_files = tuple(name for hook in hooks for name in hook.progress_files)
    resumed = read_checkpoint(level_dir, progress_files)
    for hook in hooks:
        try:
            hook.load(level_dir)
        except atomic_io.DamagedFileError as error:
            # The hooks' state and the checkpoint are one in-progress state: both go.
            drop_progress(level_dir, error, progress_files)
            resumed = None
            for each in hooks:
                each.load(level_dir)
            break
    restored, at = (None, None) if resumed is None else (resumed[0], int(resumed[1]["position"]))
    for hook in hooks:
        hook.restore(at, restored)
    if resumed is not None:
        snapshot, info = resumed
        snapshot.restore_weights(model)
        snapshot.restore_optimizer(model)
        position, evals, elapsed = info["position"], list(info["evals"]), float(info["elapsed_s"])
        losses = [tuple(item) for item in info["pending_losses"]]
        timing.update(info.get("timing", {}))
        timing["store"] += time.perf_counter() - clock
        if on_steps is not None:
            on_steps(position - plan.start, False)
    elif on_capture is not None and position in plan.capture_steps:
        on_capture(position)
    for hook in hooks:
        hook.begin(model, plan, position, resumed is not None)
        if resumed is None and position in hook.steps:
            hook.at(position)
        _end_early(plan, hook)
    validation = data.eval_batches("validation")
    test = data.eval_batches("test")
    train_eval = data.eval_batches("train") if plan.eval_train else None
    loop = _loop(model)
    fit_loop = loop if fit_model is None else _loop(fit_model)
    began = time.time()
    while position < plan.end:
        stop = _next_stop(position, plan, hooks)
        clock = time.perf_counter()
        loss = fit_loop.fit(train_stream(train_data or data, plan, position, stop))
        timing["train"] += time.perf_counter() - clock
        if not math.isfinite(loss):
            raise FloatingPointError(
                f"Training diverged in '{level_dir}' (loss={loss} before data step {stop}). "
                "Lower `config.train.lr` or add warmup (`config.train.warmup`), or check the labels and "
                "inputs (e.g. labels out of range for the loss)."
            )
        losses.append((loss, stop - position))
        if on_steps is not None:
            on_steps(stop - position, True)
        position = stop
        if on_capture is not None and position in plan.capture_steps:
            on_capture(position)
        for hook in hooks:
            if position in hook.steps:
                hook.at(position)
                _end_early(plan, hook)
        if position % plan.eval_every == 0 or position == plan.end:
            total = sum(n for _, n in losses)
            record = {"step": position, "train_loss": sum(v * n for v, n in losses) / total}
            losses = []
            clock = time.perf_counter()
            record.update(_evaluate(loop, validation, "val"))
            if plan.eval_test or position == plan.end:
                record.update(_evaluate(loop, test, "test"))
            if plan.eval_train:
                record.update(_evaluate(loop, train_eval, "train_eval"))
            timing["evaluate"] += time.perf_counter() - clock
            evals.append(record)
            if progress is not None:
                progress(record)
        if position % plan.checkpoint_every == 0 or position == plan.end:
            clock = time.perf_counter()
            info = {
                "position": position,
                "evals": evals,
                "pending_losses": losses,
                "elapsed_s": elapsed + time.time() - began,
                "timing": timing,
            }
            run_store.save_state(checkpoint, Snapshot.capture(model, position), info)
            timing["store"] += time.perf_counter() - clock
    for hook in hooks:
        hook.end(position)
    return {"evals": evals, "elapsed_s": elapsed + time.time() - began, "timing": dict(timing)}


def _end_early(plan: LevelPlan, hook) -> None:
    if hook.end_step is not None and hook.end_step < plan.end:
        plan.end = int(hook.end_step)


def read_checkpoint(level_dir: str, progress: tuple[str, ...] = ()) -> tuple[Snapshot, dict] | None:
    """`(snapshot, info)` of the level's last checkpoint; `None` when there is none.

    A damaged checkpoint is dropped (see `drop_progress`), with the level's
    other in-progress files `progress` (names in `level_dir`), and `None`
    returned: the level trains again from its start, to the same result.
    """
    path = os.path.join(level_dir, CHECKPOINT)
    if not atomic_io.exists(path):
        return None
    try:
        snapshot, info = run_store.load_state(path)
        kinds = {"position": int, "evals": list, "elapsed_s": (int, float), "pending_losses": list}
        for key, kind in kinds.items():
            if not isinstance(info.get(key), kind):
                raise atomic_io.DamagedFileError(path, f"its entry 'info' has no valid {key!r}")
    except atomic_io.DamagedFileError as error:
        drop_progress(level_dir, error, progress)
        return None
    return snapshot, info


def drop_progress(level_dir: str, error: atomic_io.DamagedFileError, progress: tuple[str, ...] = ()) -> None:
    """Deletes a level's checkpoint and its in-progress files `progress`, one of which is damaged.

    Warns with `error` (naming the file). Only for a level that is not
    finished: it then trains again from its start, as if it had never
    begun, and ends with the same result.
    """
    names = [CHECKPOINT, *(n for n in progress if n != CHECKPOINT)]
    dropped = [n for n in names if atomic_io.exists(os.path.join(level_dir, n))]
    warnings.warn(
        f"{error} Dropped the level's progress ({', '.join(dropped)}): '{level_dir}' trains again "
        "from its start, to the same result.",
        stacklevel=3,
    )
    for name in dropped:
        atomic_io.remove(os.path.join(level_dir, name))


def summarize(evals: list) -> dict:
    """Final and early-stopping metrics of a level's evaluations.

    The early-stopping iteration is the evaluation with the lowest
    validation loss (training loss without a validation set), as in
    Frankle & Carbin (2019).
    """
    if not evals:
        return {"final": {}, "early_stop": {}}
    monitor = "val_loss" if "val_loss" in evals[0] else "train_loss"
    best = int(np.argmin([e[monitor] for e in evals]))
    return {"final": dict(evals[-1]), "early_stop": {"monitor": monitor, **evals[best]}}
