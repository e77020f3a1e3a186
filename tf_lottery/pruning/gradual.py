"""`GradualPruning`: gradual magnitude pruning inside `model.fit` (Zhu & Gupta 2017)."""

from __future__ import annotations

import bisect
import warnings

import keras
import numpy as np

from tf_lottery.core.walk import get_masks, prune_wrappers
from tf_lottery.pruning import blocks, pruner, schedules, scoring, units_pruning
from tf_lottery.pruning import structure as nm_structure
from tf_lottery.utils import validation


def prune_to_schedule(
    model,
    schedule,
    step: int,
    *,
    scope: str = "layer",
    layer_rates=None,
    scorer="magnitude",
    structure: str | None = None,
) -> dict | None:
    """Prunes `model` to the sparsity of the schedule's latest pruning step up to `step`.

    What `GradualPruning` does at each pruning step, as a function: for
    training loops that are not `fit()` (the experiment engine calls it at
    its own chunk boundaries), and to recover masks after a restart from
    weights alone (the pruned weights are zeros, the lowest magnitudes, so
    the same count of them is chosen again). `layer_rates` map layer names to
    their final sparsity, scaled along the schedule. Masks only shrink: a
    model already at or past the target is left alone.

    Returns:
        `tfl.prune`'s result, or `None` when nothing was pruned.
    """
    schedule = schedules.deserialize(schedule)
    last = schedule.last_pruning_step(0, int(step))
    if last is None:
        return None
    target = schedule(last)[1]
    wrappers = prune_wrappers(model)
    masks = get_masks(wrappers)
    current = 1.0 - sum(int(np.count_nonzero(m)) for m in masks) / sum(m.size for m in masks)
    if isinstance(nm_structure.parse(structure), nm_structure.UnitStructure):
        current = units_pruning.unit_sparsity(model, nm_structure.parse(structure))
    if target <= 0.0 or target <= current:
        return None
    return _prune_to(model, schedule, target, scope, layer_rates, scorer, structure)


def _prune_to(model, schedule, target, scope, layer_rates, scorer, structure) -> dict:
    """`tfl.prune` to `target`, each layer of `layer_rates` scaled from its final sparsity."""
    final = schedule.final_sparsity
    rates = {p: (r * target / final if final > 0 else 0.0) for p, r in dict(layer_rates or {}).items()}
    return pruner.prune(
        model, target_sparsity=target, scope=scope, layer_rates=rates, scorer=scorer, structure=structure
    )


def unreachable_target_message(schedule, start: int, steps: int, epochs: int, sparsity: float) -> str | None:
    """Why `schedule` cannot reach its final sparsity in a fit of `epochs` x `steps` after step `start`.

    `None` when it can (within 1e-3), when the model is already at least that
    sparse, or when the schedule does not say its final sparsity. Steps count
    as in `GradualPruning`: the fit runs steps `start + 1` to `start + epochs
    * steps`, and pruning steps before the fit count too (an earlier `fit()`).
    """
    try:
        final = schedule.final_sparsity
    except NotImplementedError:
        return None
    end = start + epochs * steps
    last = schedule.last_pruning_step(0, end)
    reached = schedule(last)[1] if last is not None else 0.0
    if final - max(reached, sparsity) <= 1e-3:
        return None
    if last is None or last <= start:
        outcome = f"no step of this fit is a pruning step, so the sparsity stays {sparsity:.4g}"
    else:
        outcome = f"its last pruning step in this fit is step {last}, at sparsity {reached:.4g}"
    begin = getattr(schedule, "begin_step", None)
    end_step = getattr(schedule, "end_step", None)
    frequency = getattr(schedule, "frequency", None)
    if None in (begin, end_step, frequency):
        hint = "Train longer, or change the schedule so that a pruning step reaches its final sparsity."
    elif begin > end:
        hint = f"`begin_step={begin}` is after the fit's last step: lower it, or train longer."
    elif end_step > end:
        hint = (
            f"`end_step={end_step}` is after the fit's last step ({end}): set `end_step` to at most "
            f"{end} (steps are batches: ceil(examples / batch_size) * epochs), or train longer."
        )
    elif end_step < 0:
        first = begin + max(0, -(-(start + 1 - begin) // frequency)) * frequency
        first = first if first > start else first + frequency
        hint = (
            f"Only steps begin_step + k * frequency prune (tfmot's rule): the first one in this fit "
            f"would be step {first}, after its last step: lower `frequency` or `begin_step`, or train longer."
        )
    else:
        span = end_step - begin
        divisor = next(d for d in range(max(1, min(frequency, span // 10)), 0, -1) if span % d == 0)
        hint = (
            f"Only steps begin_step + k * frequency prune (tfmot's rule), and "
            f"`frequency={frequency}` leaves none at end_step: pass a `frequency` that divides "
            f"end_step - begin_step = {span}, e.g. `frequency={divisor}`."
        )
    return (
        f"GradualPruning: the schedule {schedule!r} cannot reach its final sparsity {final:.4g} "
        f"in this fit(), which runs steps {start + 1} to {end} ({epochs} epoch(s) of {steps} "
        f"steps): {outcome}. {hint}"
    )


@keras.saving.register_keras_serializable(package="tf_lottery")
class GradualPruning(keras.callbacks.Callback):
    """Prunes a model during training, following a `PruningSchedule`.

    The counterpart of tfmot's `prune_low_magnitude` + `UpdatePruningStep` for
    Keras 3 models wrapped with `tfl.prunable`. Before the batch of each
    pruning step `s` of the schedule (steps count batches from 1, as in
    tfmot), the callback calls `tfl.prune(model, target_sparsity=...)` with
    the schedule's sparsity at `s`: exact counts, global or layer-wise, any
    scorer, optional N:M structure. The masks only shrink (tfmot recomputes
    them from scratch and may let a pruned weight back in).

    Between pruning steps the callback does integer arithmetic only: no
    tensor is read and no op runs, so the compiled train step (XLA,
    `steps_per_execution`, `tf.distribute`) runs as it would without it.

    With `steps_per_execution = k > 1`, Keras hands control back every `k`
    batches; a pruning step that falls inside a block is applied at the first
    block boundary at or after it (at most `k - 1` batches late), at the
    sparsity of the latest pruning step passed; one still pending when
    training ends is applied then. So the final sparsity is the schedule's.

    Steps continue across `fit()` calls: the count starts from the
    optimizer's `iterations` when training begins. When the fit's length is
    known (`params["steps"]`), a schedule whose last pruning step in this
    `fit()` falls short of its final sparsity (e.g. tfmot's guide on a small
    dataset: `end_step` from the data and the default `frequency=100`, so no
    step prunes) is warned about when training begins, with the fix.

    The sparsity of the prunable weights is written into `logs["sparsity"]`
    at the end of every batch and every epoch (so `History` records it).

    Args:
        schedule: A `tfl.ConstantSparsity`, `tfl.PolynomialDecay` (or other
            `PruningSchedule`), or its config (tfmot's `get_config()` form is
            accepted).
        scope: `"layer"` (each layer at the schedule's sparsity, as tfmot's
            `prune_low_magnitude` prunes) or `"global"` (one threshold across
            layers: the same overall sparsity, spread unevenly). Defaults to
            `"layer"`, so a tfmot schedule ported line for line gives tfmot's
            per-layer sparsities.
        layer_rates: Optional mapping from layer name (glob patterns allowed)
            to that layer's own final sparsity; the layer follows the
            schedule's shape scaled to it (sparsity `s(t) * rate / s_final`).
            Defaults to `None`.
        scorer: `"magnitude"`, `"random"` or a callable; see `tfl.scoring`.
            Defaults to `"magnitude"`.
        structure: `None`, `"N:M"`, `"RxC"`, `"channels"` or `"heads"` (see
            `tfl.prune`). Under N:M the schedule's final sparsity may not
            exceed `1 - N/M`, and the pattern holds once it is reached; under
            `"RxC"` (e.g. `"1x4"`) every step prunes whole blocks;
            `"channels"` or `"heads"` prune whole units, the schedule's
            sparsities then counting units. Defaults to `None`.
        verbose: int. `1` prints a line at each pruning step. Defaults to `0`.

    Attributes:
        events: List of `(step, sparsity)`: the step at which each pruning
            happened (as counted above) and the sparsity after it.
        sparsity: Current sparsity of the prunable weights.

    Example:

    ```python
    model = tfl.prunable(make_model())
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    steps = 10 * (len(x) // 32)
    schedule = tfl.PolynomialDecay(0.0, 0.9, begin_step=0,
                                   end_step=int(0.7 * steps), frequency=50)
    model.fit(x, y, batch_size=32, epochs=10,
              callbacks=[tfl.GradualPruning(schedule)])
    ```

    Reference:
        Zhu & Gupta, "To prune, or not to prune: exploring the efficacy of
        pruning for model compression", arXiv:1710.01878.
    """

    # Only `on_train_batch_end` runs asynchronously; it writes a float into
    # `logs` and reads state that the synchronous hooks set beforehand.
    async_safe = True

    def __init__(
        self,
        schedule,
        *,
        scope: str = "layer",
        layer_rates=None,
        scorer="magnitude",
        structure: str | None = None,
        verbose: int = 0,
    ):
        super().__init__()
        self.schedule = schedules.deserialize(schedule)
        self.scope = validation.check_choice("scope", scope, pruner.SCOPES)
        self.layer_rates = dict(layer_rates or {})
        for pattern, value in self.layer_rates.items():
            validation.check_fraction(f"layer_rates[{pattern!r}]", value)
        self.scorer = scorer
        parsed = nm_structure.parse(structure)
        if isinstance(parsed, nm_structure.UnitStructure):
            # Unit scorers ('l1', 'l2', 'bn_gamma') are resolved by `tfl.prune` itself.
            # 'magnitude' under units is the unit's L1 norm, as `tfl.prune` takes it by name.
            by_name = (*units_pruning.UNIT_SCORERS, "magnitude")
            self._score_fn = scorer if isinstance(scorer, str) and scorer in by_name else scoring.get(scorer)
        else:
            self._score_fn = scoring.get(scorer)
        nm = parsed if isinstance(parsed, nm_structure.NMStructure) else None
        if nm is not None and self.schedule.final_sparsity > nm.max_sparsity + 1e-12:
            raise ValueError(
                f"Invalid value for argument `schedule`: final sparsity "
                f"{self.schedule.final_sparsity} is above {nm.max_sparsity:.4g}, the most "
                f"structure '{nm}' allows. Received: schedule={self.schedule!r}. Lower "
                "the final sparsity to 1 - N/M."
            )
        self.structure = None if parsed is None else str(parsed)
        self.verbose = validation.check_int("verbose", verbose, minimum=0)
        self.events: list[tuple[int, float]] = []
        self.sparsity = 0.0

    def get_config(self) -> dict:
        return {
            "schedule": keras.saving.serialize_keras_object(self.schedule),
            "scope": self.scope,
            "layer_rates": self.layer_rates,
            "scorer": self.scorer if isinstance(self.scorer, str) else None,
            "structure": self.structure,
            "verbose": self.verbose,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["schedule"] = keras.saving.deserialize_keras_object(config["schedule"])
        if config.get("scorer") is None:
            config["scorer"] = "magnitude"
        return cls(**config)

    # -- Keras hooks ----------------------------------------------------------

    def on_train_begin(self, logs=None):
        model = self.model
        if getattr(getattr(model, "optimizer", None), "use_ema", False):
            raise ValueError(
                "GradualPruning cannot keep pruned weights at zero with an optimizer "
                "that uses `use_ema=True`: Keras copies the moving average, which "
                "ignores the masks, into the weights when fit() ends. Compile with "
                "`use_ema=False`."
            )
        wrappers = prune_wrappers(model)
        if not wrappers:
            raise ValueError(
                f"GradualPruning: model '{model.name}' has no PruneWrapper layers. "
                "Wrap it first: `model = tfl.prunable(model)`."
            )
        parsed = nm_structure.parse(self.structure)
        if isinstance(parsed, nm_structure.UnitStructure):
            units_pruning.groups_for(model, parsed)  # refuses a model without units
        elif isinstance(parsed, nm_structure.BlockStructure):
            blocks.check_layers(wrappers, parsed)
        elif self.structure is not None:
            nm_structure.check_layers(wrappers, nm_structure.parse_nm(self.structure))
        masks = get_masks(wrappers)
        self.sparsity = 1.0 - sum(int(np.count_nonzero(m)) for m in masks) / sum(m.size for m in masks)
        self.events = []
        self._applied = None  # schedule sparsity of the last pruning, if any
        self._checked = None  # last step number whose pruning was decided
        self._epoch_base = None
        self._epoch_batches = 0
        self._changes: list[tuple[int, float]] = [(0, self.sparsity)]

    def on_epoch_begin(self, epoch, logs=None):
        if self._epoch_base is None:
            # Read once per fit(), after every on_train_begin has run (so after
            # `BackupAndRestore` restored the optimizer).
            self._epoch_base = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
            self._checked = self._epoch_base
            steps, epochs = (self.params or {}).get("steps"), (self.params or {}).get("epochs")
            if steps and epochs:
                message = unreachable_target_message(
                    self.schedule, self._epoch_base, int(steps), int(epochs) - int(epoch), self.sparsity
                )
                if message:
                    warnings.warn(message, stacklevel=2)
        else:
            self._epoch_base += self._epoch_batches
        self._epoch_batches = 0

    def on_train_batch_begin(self, batch, logs=None):
        upcoming = self._epoch_base + batch + 1  # the step about to run
        step = self.schedule.last_pruning_step(self._checked, upcoming)
        self._checked = upcoming
        if step is not None:
            self._prune(step, upcoming)

    def on_train_batch_end(self, batch, logs=None):
        self._epoch_batches = max(self._epoch_batches, batch + 1)
        if logs is not None:
            # The sparsity the last batch of this block trained at.
            step = self._epoch_base + batch + 1
            logs["sparsity"] = self._changes[bisect.bisect_right(self._changes, (step, np.inf)) - 1][1]

    def on_epoch_end(self, epoch, logs=None):
        steps = self.params.get("steps")
        if steps:
            self._epoch_batches = min(self._epoch_batches, steps)
        if logs is not None:
            logs["sparsity"] = self.sparsity

    def on_train_end(self, logs=None):
        if self._epoch_base is None:
            return
        done = self._epoch_base + self._epoch_batches
        # A pruning step inside the last block of `steps_per_execution`.
        step = self.schedule.last_pruning_step(self._checked, done)
        if step is not None:
            self._prune(step, done + 1)
        self._checked = max(self._checked, done)

    # -- state, for training loops that stop and resume ------------------------------

    def get_state(self) -> dict:
        """Where the schedule stands: `checked` (the last step decided) and `applied` (its sparsity).

        With `set_state` after `on_train_begin` and `on_epoch_begin`, a
        training stopped at a checkpoint continues as if it had not stopped
        (the masks themselves are the model's).
        """
        return {"checked": self._checked, "applied": self._applied}

    def set_state(self, state: dict) -> None:
        """Continues from the state `get_state` returned (or `state_at` computed)."""
        self._checked = int(state["checked"])
        self._applied = None if state.get("applied") is None else float(state["applied"])

    def state_at(self, step: int) -> dict:
        """The state after the pruning decided before step `step + 1` (`prune_to_schedule(model, ..., step + 1)`)."""
        last = self.schedule.last_pruning_step(0, int(step) + 1)
        applied = self.schedule(last)[1] if last is not None else None
        return {"checked": int(step) + 1, "applied": applied if applied and applied > 0.0 else None}

    # -- pruning ----------------------------------------------------------------

    def _prune(self, step: int, applied_before: int) -> None:
        target = self.schedule(step)[1]
        if target <= 0.0 or (self._applied is not None and target <= self._applied):
            return
        result = _prune_to(
            self.model, self.schedule, target, self.scope, self.layer_rates, self._score_fn, self.structure
        )
        self._applied = target
        self.sparsity = result["sparsity"]
        self.events.append((step, self.sparsity))
        self._changes.append((applied_before, self.sparsity))
        if self.verbose:
            print(f"[GradualPruning] step {step}: sparsity {self.sparsity:.4f}")
