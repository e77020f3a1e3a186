"""Trains one level from a data position to another, resumable after any kill.

A level is a range of *data steps* `[start, end)`: data step `s` is batch
`s % steps_per_epoch` of epoch `s // steps_per_epoch`, whose content depends
only on the seed (see `tf_lottery.data.pipeline`). Training goes chunk by
chunk with `model.fit`; chunks end at every evaluation, checkpoint and at the
rewind step. A checkpoint holds all model and optimizer values, the data
position and the evaluations so far, so a restarted level continues with the
exact batches, weights and optimizer state it stopped with.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np

from tf_lottery.experiments import run_store
from tf_lottery.lottery.rewind import Snapshot
from tf_lottery.utils import failpoints

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
        rewind_step: int or None. Data step at which `on_rewind` is called.
        eval_test: bool. Also evaluate the test set at every evaluation (it
            is always evaluated at `end`).
    """

    start: int
    end: int
    steps_per_epoch: int
    batch_size: int
    seed: int
    eval_every: int
    checkpoint_every: int
    rewind_step: int | None = None
    eval_test: bool = True


def _next_stop(position: int, plan: LevelPlan) -> int:
    stops = [plan.end]
    for every in (plan.eval_every, plan.checkpoint_every):
        stops.append((position // every + 1) * every)
    if plan.rewind_step is not None and plan.rewind_step > position:
        stops.append(plan.rewind_step)
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


def _evaluate(model: keras.Model, dataset, prefix: str) -> dict:
    if dataset is None:
        return {}
    logs = model.evaluate(dataset, verbose=0, return_dict=True)
    return {f"{prefix}_{key}": float(value) for key, value in logs.items()}


def train_level(
    model: keras.Model,
    data,
    plan: LevelPlan,
    level_dir: str,
    on_rewind: Callable[[int], None] | None = None,
    progress: Callable[[dict], None] | None = None,
) -> dict:
    """Trains `model` (already set to the level's start) through `plan`.

    If `level_dir` holds a checkpoint, training resumes from it instead.

    Returns:
        A dict with `evals` (one dict per evaluation: `step`, `train_loss`,
        `val_loss`, `val_accuracy`, `test_loss`, `test_accuracy`, those
        available) and `elapsed_s`.
    """
    checkpoint = os.path.join(level_dir, CHECKPOINT)
    position, evals, elapsed, losses = plan.start, [], 0.0, []
    if os.path.exists(checkpoint):
        snapshot, info = run_store.load_state(checkpoint)
        snapshot.restore_weights(model)
        snapshot.restore_optimizer(model)
        position, evals, elapsed = int(info["position"]), list(info["evals"]), float(info["elapsed_s"])
        losses = [tuple(item) for item in info["pending_losses"]]
    elif on_rewind is not None and plan.rewind_step == position:
        on_rewind(position)
    validation = data.eval_batches("validation")
    test = data.eval_batches("test")
    began = time.time()
    while position < plan.end:
        stop = _next_stop(position, plan)
        history = model.fit(
            train_stream(data, plan, position, stop),
            epochs=1,
            verbose=0,
            shuffle=False,
            callbacks=failpoints.fit_callbacks(),
        )
        loss = float(history.history["loss"][-1])
        if not math.isfinite(loss):
            raise FloatingPointError(
                f"Training diverged in '{level_dir}' (loss={loss} before data step {stop}). "
                "Lower `config.train.lr` or add warmup (`config.train.warmup`)."
            )
        losses.append((loss, stop - position))
        position = stop
        if on_rewind is not None and plan.rewind_step == position:
            on_rewind(position)
        if position % plan.eval_every == 0 or position == plan.end:
            total = sum(n for _, n in losses)
            record = {"step": position, "train_loss": sum(v * n for v, n in losses) / total}
            losses = []
            record.update(_evaluate(model, validation, "val"))
            if plan.eval_test or position == plan.end:
                record.update(_evaluate(model, test, "test"))
            evals.append(record)
            if progress is not None:
                progress(record)
        if position % plan.checkpoint_every == 0 or position == plan.end:
            info = {
                "position": position,
                "evals": evals,
                "pending_losses": losses,
                "elapsed_s": elapsed + time.time() - began,
            }
            run_store.save_state(checkpoint, Snapshot.capture(model, position), info)
    return {"evals": evals, "elapsed_s": elapsed + time.time() - began}


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
