"""Rewind points: when to snapshot, what a snapshot holds, how to restore it.

A rewind point is written `"<N>it"` (after N optimizer steps) or `"<N>ep"`
(after N epochs); `"0it"` is the initialisation, as in Frankle & Carbin
(2019). Rewinding to an early iteration k > 0 is "late resetting" (Frankle
et al. 2019, "Stabilizing the Lottery Ticket Hypothesis", arXiv:1903.01611).

A `Snapshot` holds every model variable (kernels, biases, normalization
statistics; not the masks) and every optimizer variable (slots, learning
rate, iteration counter), so that rewinding also rewinds learning-rate
schedules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import keras
import numpy as np

from tf_lottery import _keras_compat
from tf_lottery.core import optimizer_slots
from tf_lottery.core.walk import model_variables, prune_wrappers
from tf_lottery.utils import atomic_io

_SPEC = re.compile(r"^\s*(\d+)\s*(it|ep)\s*$")


@dataclass(frozen=True)
class RewindPoint:
    """Where to rewind to: `amount` iterations (`unit="it"`) or epochs (`"ep"`)."""

    amount: int
    unit: str

    @classmethod
    def parse(cls, value) -> RewindPoint:
        """Parses `"500it"`, `"2ep"`, `"0it"`, or an int (iterations)."""
        if isinstance(value, RewindPoint):
            return value
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 0:
            return cls(int(value), "it")
        match = _SPEC.match(value) if isinstance(value, str) else None
        if match is None:
            raise ValueError(
                "Invalid value for argument `rewind_to`: expected '<N>it' "
                "(after N optimizer steps, e.g. '0it' or '500it') or '<N>ep' "
                f"(after N epochs, e.g. '2ep'). Received: rewind_to={value!r}."
            )
        return cls(int(match.group(1)), match.group(2))

    def step(self, steps_per_epoch: int | None) -> int | None:
        """The optimizer step of this point (None if it needs an unknown epoch size)."""
        if self.unit == "it":
            return self.amount
        return None if steps_per_epoch is None else self.amount * steps_per_epoch

    def __str__(self) -> str:
        return f"{self.amount}{self.unit}"


@dataclass
class Snapshot:
    """Copies of a model's and its optimizer's variables at one step."""

    model_values: list
    optimizer_values: list
    step: int

    @classmethod
    def capture(cls, model: keras.Model, step: int) -> Snapshot:
        optimizer = getattr(model, "optimizer", None)
        optimizer_values = []
        if optimizer is not None and not optimizer.built:
            # At step 0 (on_train_begin) Keras has not built the optimizer
            # yet; its initial state is part of the rewind point.
            optimizer.build(model.trainable_variables)
        if optimizer is not None:
            optimizer_values = [np.array(v.numpy(), copy=True) for v in optimizer.variables]
        return cls(
            model_values=[np.array(v.numpy(), copy=True) for v in model_variables(model)],
            optimizer_values=optimizer_values,
            step=int(step),
        )

    def save(self, path: str, info: dict | None = None) -> None:
        """Writes the snapshot to the `.npz` file `path`, atomically: the one snapshot format.

        The archive holds the model values as `m00000`, `m00001`, ..., the
        optimizer values as `o00000`, ..., and `info`: a JSON object with
        `step` and the keys of `info` (e.g. the run that wrote it). Read it
        back with `Snapshot.load`; every stored snapshot of the package (the
        run store's rewind points and checkpoints, `LotteryCallback`'s
        `state_dir`) is this file.

        Example:

        ```python
        snapshot = tfl.Snapshot.capture(model, step=0)
        snapshot.save("/tmp/init.npz", {"note": "initialisation"})
        restored, info = tfl.Snapshot.load("/tmp/init.npz")
        ```
        """
        arrays = {f"m{i:05d}": np.asarray(v) for i, v in enumerate(self.model_values)}
        arrays.update({f"o{i:05d}": np.asarray(v) for i, v in enumerate(self.optimizer_values)})
        arrays["info"] = atomic_io.json_array({"step": self.step, **(info or {})})
        atomic_io.write_npz(path, arrays)

    @classmethod
    def load(cls, path: str) -> tuple[Snapshot, dict]:
        """Reads what `save` wrote: `(snapshot, info)`, `info` with `step` and the saved keys.

        Raises:
            atomic_io.DamagedFileError: `path` is truncated, garbled or holds
                no snapshot; the message names it.
            FileNotFoundError, OSError: `path` cannot be read.
        """
        return cls.from_arrays(atomic_io.load_npz(path), path)

    @classmethod
    def from_arrays(cls, archive: dict, path: str) -> tuple[Snapshot, dict]:
        """`(snapshot, info)` from the arrays of a file that `save` wrote (`path` names it in errors)."""
        info = atomic_io.json_entry(archive, "info", path, expect=dict)
        if not isinstance(info.get("step"), int):
            raise atomic_io.DamagedFileError(path, f"its entry 'info' has no step: {info!r:.80}")
        model = [archive[k] for k in sorted(k for k in archive if k.startswith("m"))]
        optimizer = [archive[k] for k in sorted(k for k in archive if k.startswith("o"))]
        return cls(model_values=model, optimizer_values=optimizer, step=info["step"]), info

    def restore_weights(self, model: keras.Model) -> None:
        """Sets every model variable back (masked variables stay masked)."""
        variables = model_variables(model)
        _check_same(variables, self.model_values, "model")
        for variable, value in zip(variables, self.model_values):
            variable.assign(value)

    def restore_optimizer(self, model: keras.Model) -> None:
        """Sets the optimizer's slots, learning rate and iteration counter back."""
        if not self.optimizer_values:
            return
        variables = model.optimizer.variables
        _check_same(variables, self.optimizer_values, "optimizer")
        for variable, value in zip(variables, self.optimizer_values):
            variable.assign(value)
        # Slots saved before pruning hold values at positions pruned since;
        # sparse-equivalent training keeps every slot at 0 there.
        for wrapper in prune_wrappers(model):
            for weight, mask in zip(wrapper.pruned_weights, wrapper.get_masks()):
                if wrapper.mask_gradients:
                    optimizer_slots.reset_slots(model.optimizer, weight, ~mask)


def _check_same(variables, values, what):
    if len(variables) != len(values) or any(tuple(v.shape) != np.shape(a) for v, a in zip(variables, values)):
        raise ValueError(
            f"The rewind snapshot does not fit this {what}: it holds "
            f"{len(values)} variables, the {what} has {len(variables)} (or "
            "their shapes differ). A snapshot only restores into the model "
            "(and optimizer) it was taken from."
        )


def _initializer_for(layer, variable):
    names = [f"{variable.name}_initializer"]
    if variable.name == "kernel":
        names.append("depthwise_initializer")
    if len(layer.weights) == 1:
        # A layer with one weight may name its initializer plainly (keras_hub's PositionEmbedding).
        names.append("initializer")
    for name in names:
        initializer = getattr(layer, name, None)
        if initializer is not None:
            return keras.initializers.get(initializer)
    return None


def reinitialize(model: keras.Model, seed: int) -> None:
    """Draws every model variable afresh from its layer's own initializer.

    This is the random-reinitialisation control of Frankle & Carbin (2019):
    the masks are kept, the weights are new. A variable named `x` is drawn
    from the layer attribute `x_initializer` (`kernel_initializer`,
    `bias_initializer`, `gamma_initializer`, `moving_mean_initializer`, ...),
    or, for a layer with a single weight, `initializer` (keras_hub's
    `PositionEmbedding`).
    Seeded initializers get a new seed derived from `seed`, so the draw
    differs from the original initialisation and is reproducible.

    Args:
        model: The model to reinitialize in place.
        seed: int. Seed of the fresh draw.
    """
    rng = np.random.default_rng(seed)
    owners = {}
    for layer in _keras_compat.flatten_layers(model, include_self=True, recursive=True):
        for variable in _keras_compat.own_variables(layer):
            owners.setdefault(id(variable), layer)
    for variable in model_variables(model):
        layer = owners.get(id(variable))
        initializer = _initializer_for(layer, variable) if layer is not None else None
        if initializer is None:
            raise ValueError(
                f"Cannot reinitialize '{variable.path}': its layer has no "
                f"`{variable.name}_initializer` attribute. Give the layer that "
                "attribute (a Keras initializer) to use the reinit control."
            )
        config = initializer.get_config()
        if "seed" in config:
            config["seed"] = int(rng.integers(0, 2**31 - 1))
            initializer = initializer.__class__.from_config(config)
        variable.assign(initializer(tuple(variable.shape), dtype=variable.dtype))


RETRAIN_MODES = ("rewind", "lr_rewind", "finetune", "reinit")


def reset_for_retrain(
    model: keras.Model,
    mode: str,
    rewind_point: Snapshot,
    *,
    trained: Snapshot | None = None,
    seed: int | None = None,
) -> None:
    """Resets a just-pruned model for its next round of training.

    The one implementation of the four ways a pruned network restarts; the
    callback, the experiment runner, its controls and the KD kinds all call
    it. Masks are left as they are: every weight written here passes through
    its mask, so pruned weights stay exactly zero.

    - `"rewind"`: weights (normalization statistics included) and optimizer
      (slots, learning rate, iteration counter) back to `rewind_point`
      (Frankle & Carbin 2019; late resetting when the point is step k > 0,
      Frankle et al. 2019).
    - `"lr_rewind"`: the trained weights are kept, the optimizer and so the
      learning-rate schedule go back to `rewind_point` (Renda et al. 2020).
    - `"finetune"`: the trained weights and the optimizer's final state
      (final learning rate) are kept (Renda et al. 2020's baseline).
    - `"reinit"`: the random-reinitialisation control: every weight drawn
      afresh from its layer's initializer (see `reinitialize`), optimizer
      back to `rewind_point`.

    Args:
        model: keras.Model. The pruned model, reset in place.
        mode: str. One of `RETRAIN_MODES`.
        rewind_point: Snapshot. The state at the rewind step.
        trained: Optional Snapshot. The state at the end of the training the
            model was pruned after. `None` means the model still holds it;
            pass it when the model's weights or optimizer were changed since
            (e.g. a run resumed from files). Used by `lr_rewind` (weights)
            and `finetune` (weights and optimizer).
        seed: int. Seed of the fresh draw; required by `"reinit"`.

    Example:

    ```python
    point = tfl.Snapshot.capture(model, 0)
    model.fit(x, y, epochs=10)
    tfl.prune(model, 0.2)
    reset_for_retrain(model, "rewind", point)
    ```

    Reference:
        Frankle & Carbin, ICLR 2019, arXiv:1803.03635; Frankle et al. 2019,
        arXiv:1903.01611; Renda et al., ICLR 2020, arXiv:2003.02389.
    """
    if mode not in RETRAIN_MODES:
        raise ValueError(
            f"Invalid value for argument `retrain`: expected one of {RETRAIN_MODES}. Received: retrain={mode!r}."
        )
    if mode == "rewind":
        rewind_point.restore_weights(model)
        rewind_point.restore_optimizer(model)
    elif mode == "lr_rewind":
        if trained is not None:
            trained.restore_weights(model)
        rewind_point.restore_optimizer(model)
    elif mode == "finetune":
        if trained is not None:
            trained.restore_weights(model)
            trained.restore_optimizer(model)
    else:
        if seed is None:
            raise ValueError(
                "Invalid value for argument `seed`: `retrain='reinit'` needs an int seed. Received: seed=None."
            )
        reinitialize(model, seed=seed)
        rewind_point.restore_optimizer(model)
