"""What the three one-shot methods share: checks first, prune step by step, commit or restore.

Every argument is checked, and the model probed with one calibration batch,
before any weight changes. Pruning then writes each step's pruned weights into
the kernels right away (the next steps' calibration inputs must come from
the pruned layers before them) but keeps the new masks aside; at the end all
masks are set at once. If anything fails (an error, a KeyboardInterrupt),
the kernels and masks are put back as they were: each kernel's old value is
saved to a temporary file just before it is first written (`_Snapshot`), so
that a copy of the model's weights never sits in memory beside it.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import keras
import numpy as np

from tf_lottery import _keras_compat
from tf_lottery.core.walk import prune_wrappers
from tf_lottery.pruning import structure as nm
from tf_lottery.pruning.oneshot import blockwise, calibration
from tf_lottery.pruning.oneshot.linear_view import LinearView, linear_view
from tf_lottery.utils import validation


@dataclass
class Target:
    """One pruned weight of one wrapper, with the linear layer that owns it (if any)."""

    wrapper: object
    index: int  # position in `wrapper.pruned_weights`
    weight: object
    layer: object | None  # the Dense / EinsumDense whose kernel this is
    view: LinearView | None
    skip: str | None = None  # why the method leaves it as it is


@dataclass
class OneShotReport:
    """What a one-shot method did.

    Attributes:
        method: `"magnitude"`, `"wanda"` or `"sparsegpt"`.
        sparsity: The requested fraction.
        structure: `"N:M"` or None.
        pruned: Weight path -> its sparsity afterwards, for every weight pruned.
        skipped: Weight path -> why it was left as it was.
        seconds: Wall time.
        calibration: How the calibration data ran: block by block, or the whole
            model rerun for every step (and why its blocks could not be
            isolated); None without calibration data.
    """

    method: str
    sparsity: float
    structure: str | None
    pruned: dict = field(default_factory=dict)
    skipped: dict = field(default_factory=dict)
    seconds: float = 0.0
    calibration: str | None = None

    def __str__(self) -> str:
        lines = [
            f"{self.method}: sparsity {self.sparsity}{f' ({self.structure})' if self.structure else ''}, "
            f"{len(self.pruned)} weights pruned in {self.seconds:.1f}s"
            + (f", calibration {self.calibration}" if self.calibration else "")
        ]
        lines += [f"  {path}: {value:.3f}" for path, value in self.pruned.items()]
        lines += [f"  {path}: skipped ({why})" for path, why in self.skipped.items()]
        return "\n".join(lines)


def _owner(wrapper, weight):
    for layer in _keras_compat.flatten_layers(wrapper.layer):
        if isinstance(layer, (keras.layers.Dense, keras.layers.EinsumDense)) and layer.kernel is weight:
            return layer
    return None


def targets(model, needs_calibration: bool) -> list[Target]:
    if not isinstance(model, keras.layers.Layer):
        raise validation.invalid_argument("model", model, "a Keras model")
    wrappers = prune_wrappers(model)
    if not wrappers:
        raise ValueError(
            f"Invalid value for argument `model`: '{model.name}' has no prunable layer "
            "(no PruneWrapper). Wrap it first: `model = tfl.prunable(model)`."
        )
    result = []
    for wrapper in wrappers:
        for index, weight in enumerate(wrapper.pruned_weights):
            layer = _owner(wrapper, weight)
            view = linear_view(layer, weight) if layer is not None else None
            skip = None
            if view is None and needs_calibration:
                skip = (
                    f"a {type(wrapper.layer).__name__} weight, not the kernel of a Dense or "
                    "EinsumDense layer, has no calibration inputs of its own"
                )
            result.append(Target(wrapper, index, weight, layer, view, skip))
    return result


def check_common(sparsity, structure):
    sparsity = validation.check_fraction("sparsity", sparsity)
    structure = nm.parse_nm(structure)
    if structure is not None and abs(sparsity - structure.max_sparsity) > 1e-9:
        raise ValueError(
            f"Invalid value for argument `sparsity`: structure '{structure}' keeps {structure.n} of "
            f"every {structure.m} weights, a sparsity of {structure.max_sparsity}. Received: "
            f"sparsity={sparsity}. Pass sparsity={structure.max_sparsity}."
        )
    return sparsity, structure


def check_structure_fits(items: list[Target], structure) -> None:
    if structure is None:
        return
    for t in items:
        if t.skip is None and t.view is not None and t.view.inputs % structure.m:
            raise ValueError(
                f"Invalid value for argument `structure`: '{structure}' needs the input dimension of "
                f"every pruned kernel to be a multiple of {structure.m}. Received layer "
                f"'{t.layer.name}' with {t.view.inputs} inputs (weight '{t.weight.path}'). Leave it "
                f"dense: `tfl.prunable(model, exclude=[{t.layer.name!r}])`, or choose an M that divides it."
            )


class _Snapshot:
    """Old values of the weights written so far, in a temporary directory, to put back on failure."""

    def __init__(self):
        self._directory = None
        self._saved = []

    def save(self, weight) -> None:
        if any(w is weight for w, _ in self._saved):
            return
        if self._directory is None:
            self._directory = tempfile.TemporaryDirectory(prefix="tf_lottery_oneshot_")
        path = os.path.join(self._directory.name, f"{len(self._saved)}.npy")
        np.save(path, keras.ops.convert_to_numpy(weight.value))
        self._saved.append((weight, path))

    def restore(self) -> None:
        for weight, path in self._saved:
            weight.assign(np.load(path))

    def close(self) -> None:
        if self._directory is not None:
            self._directory.cleanup()


def _alive(t: Target) -> np.ndarray:
    return np.asarray(t.wrapper.get_masks()[t.index], dtype=bool)


def run(
    model,
    items: list[Target],
    method: str,
    sparsity: float,
    structure,
    prune_step: Callable,
    calibration_data=None,
    batch_size: int = 32,
    gram: bool = False,
    verbose: int = 0,
    true_sequential: bool = False,
) -> OneShotReport:
    """Prunes every target not skipped, one wrapper (step) at a time, then commits the masks.

    `prune_step(target, hook)` returns `(new kernel value, pruned positions)` in the kernel's
    shape; `hook` holds the step's calibration statistics (None without calibration data).
    """
    verbose = validation.check_int("verbose", verbose, minimum=0)
    start = time.perf_counter()
    report = OneShotReport(method, sparsity, None if structure is None else str(structure))
    for t in items:
        if t.skip is not None:
            report.skipped[t.weight.path] = t.skip
    work = [t for t in items if t.skip is None]
    if not work:
        raise ValueError(
            f"Invalid value for argument `model`: {method} can prune none of the prunable weights of "
            f"'{model.name}': {report.skipped}. Use `tfl.oneshot.magnitude`, or wrap Dense / "
            "EinsumDense layers."
        )
    data = None
    expected = {}
    if calibration_data is not None:
        data = calibration.batches(calibration_data, batch_size)
        calls, first_called = calibration.probe(model, data[0], [t.layer for t in work])
        unreached = sorted({t.wrapper.name for t, c in zip(work, calls) if c == 0})
        if unreached:
            raise ValueError(
                f"Invalid value for argument `model`: the prunable layer(s) {unreached} of "
                f"'{model.name}' were never called when the model ran on the calibration data, "
                f"so {method} has no inputs to calibrate them. Leave them dense: "
                f"`tfl.prunable(model, exclude=[...])`, or pass inputs that reach them."
            )
        expected = {id(t): c for t, c in zip(work, calls)}
        work = [work[i] for i in first_called]
    # Steps: one per wrapper, in the order the forward pass reaches them.
    by_wrapper: dict[int, list[Target]] = {}
    for t in work:
        by_wrapper.setdefault(id(t.wrapper), []).append(t)
    steps = list(by_wrapper.values())
    snapshot = _Snapshot()
    old_masks = {id(t.wrapper): (t.wrapper, t.wrapper.get_masks()) for t in work}
    new_masks = {key: list(masks) for key, (_, masks) in old_masks.items()}  # entries replaced, never written
    committed = []

    def prune(number: int, hooks: list) -> None:
        step = steps[number - 1]
        tick = time.perf_counter()
        for t, hook in zip(step, hooks):
            value, pruned = prune_step(t, hook)
            alive = _alive(t) & ~pruned
            snapshot.save(t.weight)
            t.weight.assign(np.where(alive, value, 0).astype(_keras_compat.stored_dtype(t.weight)))
            new_masks[id(t.wrapper)][t.index] = alive
            report.pruned[t.weight.path] = float(1.0 - alive.mean())
        if verbose:
            names = ", ".join(f"{t.weight.path} {tuple(t.weight.shape)}" for t in step)
            print(
                f"{method} [{number}/{len(steps)}] {step[0].wrapper.name}: {names} "
                f"({time.perf_counter() - tick:.2f}s)"
            )

    def calibrate(indices: list[int], forwards: list) -> None:
        # One pass captures the inputs of every step in `indices`, then each is pruned in order.
        chosen = [t for index in indices for t in steps[index]]
        hooks = calibration.capture(
            forwards,
            [t.layer for t in chosen],
            [t.view for t in chosen],
            [expected[id(t)] for t in chosen],
            gram,
        )
        for index in indices:
            prune(index + 1, hooks[: len(steps[index])])
            hooks = hooks[len(steps[index]) :]

    try:
        if data is None:
            for number, step in enumerate(steps, 1):
                prune(number, [None] * len(step))
        else:
            walk = blockwise.plan(model, [step[0].wrapper for step in steps])
            if isinstance(walk, blockwise.Plan):
                report.calibration = f"block by block ({walk.blocks} blocks)"
            else:
                report.calibration = f"the whole model rerun for every step: {walk}"
            if verbose:
                print(f"{method}: calibration {report.calibration}")
            if isinstance(walk, blockwise.Plan):
                say = (lambda line: print(f"{method} {line}")) if verbose else None
                blockwise.run(walk, data, steps, calibrate, say, true_sequential=true_sequential)
            else:
                forwards = calibration.model_forwards(model, data)
                for index in range(len(steps)):
                    calibrate([index], forwards)
        for key, (wrapper, _) in old_masks.items():
            wrapper.set_masks(new_masks[key])
            committed.append(key)
    except BaseException:
        for key in committed:
            wrapper, masks = old_masks[key]
            wrapper.set_masks(masks)
        snapshot.restore()
        raise
    finally:
        snapshot.close()
    report.seconds = time.perf_counter() - start
    return report
