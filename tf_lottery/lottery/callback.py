"""`LotteryCallback`: iterative magnitude pruning inside `model.fit`."""

from __future__ import annotations

import os
import uuid
import warnings
import weakref

import keras
import numpy as np

from tf_lottery import _keras_compat
from tf_lottery.core.report import sparsity_report
from tf_lottery.core.walk import get_masks, model_variables, prune_wrappers, set_masks
from tf_lottery.lottery import callback_state, rewind
from tf_lottery.lottery.ticket import Ticket
from tf_lottery.pruning import blocks, units_pruning
from tf_lottery.pruning import pruner as pruning
from tf_lottery.pruning import structure as nm_structure
from tf_lottery.utils import validation

# `reinit` is Frankle & Carbin's control (the ticket's masks, fresh weights);
# `reinit_imp` runs IMP on the reinitialised networks (its masks drift away
# from the ticket's).
RETRAIN_MODES = (*rewind.RETRAIN_MODES, "reinit_imp")
MODES = ("auto", "min", "max")
# Keys this callback adds to every epoch's `logs` (so History, CSVLogger, TensorBoard show them).
LOG_KEYS = ("lottery_round", "lottery_sparsity", "lottery_weights_remaining")
# In mode "auto", metrics whose name contains one of these are maximised (as keras.callbacks.EarlyStopping).
_HIGHER_IS_BETTER = ("acc", "auc", "precision", "recall", "f1", "iou")


def monitor_direction(monitor: str, mode: str) -> str:
    """`"min"` or `"max"`: which way `monitor` improves under `mode` (`"auto"`: guessed from its name).

    In `"auto"` mode a name ending in `loss` is minimised; accuracy-, AUC-,
    precision-, recall-, F1- and IoU-like names are maximised; anything else
    is minimised.
    """
    if mode != "auto":
        return mode
    name = monitor.lower()
    if name.endswith("loss"):
        return "min"
    return "max" if any(part in name for part in _HIGHER_IS_BETTER) else "min"


@keras.saving.register_keras_serializable(package="tf_lottery")
class LotteryCallback(keras.callbacks.Callback):
    """Finds a lottery ticket by iterative magnitude pruning (IMP) in `fit()`.

    Training is split into `rounds` rounds of `epochs_per_round` epochs. At
    the end of every round but the last, the callback records the round,
    prunes (globally by default) and resets the network for the next round
    according to `retrain`:

    - `"rewind"`: weights (biases and normalization statistics included) go
      back to the rewind point times the mask, and so do the optimizer's
      slots, learning rate and iteration counter, so schedules rewind too.
      With `rewind_to="0it"` this is Frankle & Carbin (2019); with a later
      point it is late resetting (Frankle et al. 2019).
    - `"lr_rewind"`: learning-rate rewinding (Renda et al. 2020): the trained
      weights are kept; only the optimizer state (and so the schedule) goes
      back to the rewind point.
    - `"finetune"`: fine-tuning: weights and optimizer (final learning rate)
      are kept.
    - `"reinit"`: Frankle & Carbin's random-reinitialisation control: round
      `r` trains the winning ticket's round-`r` masks (from a rewind IMP run,
      `ticket_masks`) with every weight drawn afresh from its layer's
      initializer. Nothing is pruned by this run's own weights.
    - `"reinit_imp"`: IMP on reinitialised networks: each round prunes this
      run's own trained (reinitialised) weights and draws fresh weights
      again. Its masks drift from the ticket's (after 4 rounds of 20% on
      LeNet-300-100 it keeps 41% of the ticket's first-layer survivors);
      it is not the paper's control.

    Round `r` trains at sparsity `1 - (1 - pruning_rate)**r`, so `rounds=5`
    trains the dense network and 4 pruned levels. The masks are enforced in
    the compiled train step, so this works with `jit_compile`,
    `steps_per_execution`, mixed precision and `tf.distribute`.

    Args:
        rounds: int >= 1. Number of training rounds (pruning happens between
            them).
        pruning_rate: float in [0, 1). Fraction of surviving weights pruned
            after each round. Give this or `target_sparsity`.
        target_sparsity: float in [0, 1). Sparsity of the last round; the
            per-round rate is derived (from the sparsity the masks have when
            `fit()` starts, e.g. one-shot masks seeding IMP; a target below
            it is refused then) and the last pruning step lands exactly on it.
        rewind_to: str. `"<N>it"` or `"<N>ep"`: the step to rewind to
            (snapshot taken at exactly that optimizer step). Defaults to
            `"0it"` (initialisation).
        retrain: One of `"rewind"`, `"lr_rewind"`, `"finetune"`, `"reinit"`,
            `"reinit_imp"`. Defaults to `"rewind"`.
        ticket_masks: The winning ticket's masks, required by (and only
            for) `retrain="reinit"`: the `LotteryCallback` of a finished
            rewind run (its `round_masks`), or a list whose item `r - 1`
            holds round `r`'s mask arrays (one per pruned weight, in
            `tfl.prune_wrappers` order) for `r = 1 .. rounds - 1`.
        scope: `"global"` or `"layer"`. Defaults to `"global"`.
        layer_rates: Optional per-layer rates, see `tfl.prune`: each layer's
            own rate per round, also with `target_sparsity` (such a layer
            ends at `1 - (1 - r)**(rounds - 1)`).
        scorer: `"magnitude"`, `"random"` or a callable; see `tfl.scoring`.
        structure: `None`, `"N:M"` (e.g. `"2:4"`), `"RxC"` (e.g. `"1x4"`),
            `"channels"` or `"heads"`, see `tfl.prune`. Under N:M each round
            prunes within the pattern, which allows at most `1 - N/M`
            sparsity: use `target_sparsity` (at most that) rather than a rate
            that would pass it. Under `"RxC"` each round prunes whole blocks,
            at any amount. `"channels"` or `"heads"` prune whole units, the
            rates then counting units. Defaults to `None`.
        epochs_per_round: int. Defaults to `fit(epochs=...) // rounds`.
        one_round_per_fit: bool. If `True`, each `fit()` call trains one
            round and the pruning happens when it ends; state carries over
            between calls (use `reset()` to start over). Defaults to `False`:
            the whole IMP run happens in one `fit()`.
        monitor: str. The epoch-log key whose best value marks each round's
            early-stopping iteration, among the epochs whose logs hold it
            (with `fit(validation_freq=k)`, the validated ones). Defaults to
            `"val_loss"`. If no epoch of a round has it (no validation data),
            the callback warns once and uses the minimum of `"loss"`.
        mode: One of `"auto"`, `"min"`, `"max"`, as in
            `keras.callbacks.EarlyStopping`: whether the best `monitor`
            value is the lowest or the highest. `"auto"` maximises
            accuracy-, AUC-, precision- and recall-like names and minimises
            the rest (losses). Defaults to `"auto"`.
        state_dir: Optional directory where the rewind point, each round's
            masks and a record of every epoch are saved atomically, so that a
            job restarted with `keras.callbacks.BackupAndRestore` (listed
            before or after this callback, `save_freq="epoch"`) resumes
            exactly as if never stopped. Pass the same directory in every
            restart; a fit() that starts at epoch 0 begins a new run there.
        seed: int >= 0. Seed for the `"random"` scorer and the `"reinit"` /
            `"reinit_imp"` draws. Defaults to `0`.
        verbose: int. `1` prints one line per round. Defaults to `1`.

    Every epoch's `logs` get `lottery_round` (the round it trained in),
    `lottery_sparsity` (the fraction of prunable weights that are pruned)
    and `lottery_weights_remaining` (how many are not), so `History`,
    `ProgbarLogger` and, listed after this callback, `CSVLogger` and
    `TensorBoard` record them.

    Beside Keras callbacks: `EarlyStopping` and `ReduceLROnPlateau` are reset
    at each round start (their `on_train_begin`), so they act per round; if
    one ends `fit()` before the last round, `on_train_end` warns with the
    rounds finished and asked. A second `fit()` of the same callback on the
    same model is refused until `reset()`.

    Attributes:
        round_masks: List with, for each pruning so far, the masks round
            `r` (1, 2, ...) trained with: what `ticket_masks` takes.
        history: List of dicts, one per finished round: `round`, `sparsity`,
            `percent_remaining`, `metrics` (last epoch's logs), `best`
            (best value of `monitor`), `early_stop_step` (steps into the
            round of the best epoch), `best_metrics` (that epoch's logs),
            `layers`.
        ticket: The current `Ticket` (masks + rewind weights + metadata);
            `ticket_at(r)` gives finished round `r`'s.

    Example:

    ```python
    model = tfl.prunable(make_model())
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    lottery = tfl.LotteryCallback(rounds=5, pruning_rate=0.2, rewind_to="0it")
    model.fit(x, y, validation_split=0.1, epochs=5 * 10, callbacks=[lottery])
    lottery.ticket.save("ticket.npz")
    ```

    Reference:
        Frankle & Carbin, ICLR 2019, arXiv:1803.03635; Frankle et al.,
        arXiv:1903.01611 (late resetting); Renda et al., ICLR 2020,
        arXiv:2003.02389 (learning-rate rewinding, fine-tuning).
    """

    def __init__(
        self,
        rounds: int,
        pruning_rate: float | None = None,
        *,
        target_sparsity: float | None = None,
        rewind_to="0it",
        retrain: str = "rewind",
        scope: str = "global",
        layer_rates=None,
        scorer="magnitude",
        structure: str | None = None,
        epochs_per_round: int | None = None,
        one_round_per_fit: bool = False,
        monitor: str = "val_loss",
        mode: str = "auto",
        state_dir: str | None = None,
        seed: int = 0,
        verbose: int = 1,
        ticket_masks=None,
    ):
        super().__init__()
        rounds = validation.check_int("rounds", rounds, minimum=1)
        if (pruning_rate is None) == (target_sparsity is None):
            raise ValueError(
                "Pass exactly one of `pruning_rate` (fraction of surviving weights "
                "pruned per round) and `target_sparsity` (sparsity of the last "
                f"round). Received: pruning_rate={pruning_rate!r}, "
                f"target_sparsity={target_sparsity!r}."
            )
        if pruning_rate is not None:
            validation.check_fraction("pruning_rate", pruning_rate)
        else:
            validation.check_fraction("target_sparsity", target_sparsity)
        validation.check_choice("retrain", retrain, RETRAIN_MODES)
        ticket_masks = _check_ticket_masks(ticket_masks, retrain)
        validation.check_choice("scope", scope, pruning.SCOPES)
        if epochs_per_round is not None:
            epochs_per_round = validation.check_int("epochs_per_round", epochs_per_round, minimum=1)
        seed = validation.check_seed("seed", seed)
        validation.check_choice("mode", mode, MODES)
        if not isinstance(monitor, str) or not monitor:
            raise validation.invalid_argument(
                "monitor", monitor, "the name of a key of the epoch logs, e.g. 'val_loss'"
            )
        unit_scorer = scorer in units_pruning.UNIT_SCORERS and isinstance(
            nm_structure.parse(structure), nm_structure.UnitStructure
        )
        if not (callable(scorer) or scorer in ("magnitude", "random") or unit_scorer):
            raise validation.invalid_argument(
                "scorer",
                scorer,
                "'magnitude', 'random' or a callable `scorer(wrappers) -> list of arrays` "
                "(and 'l1', 'l2', 'bn_gamma' with structure='channels' or 'heads')",
            )
        self.rounds = rounds
        self.pruning_rate = pruning_rate
        self.target_sparsity = target_sparsity
        self.rewind_to = str(rewind.RewindPoint.parse(rewind_to))
        self.retrain = retrain
        self.ticket_masks = ticket_masks
        self.scope = scope
        self.layer_rates = dict(layer_rates or {})
        self.scorer = scorer
        parsed = nm_structure.parse(structure)
        # Blocks and whole units ("channels", "heads") have no pattern limit.
        nm = parsed if isinstance(parsed, nm_structure.NMStructure) else None
        if nm is not None and target_sparsity is not None and target_sparsity > nm.max_sparsity:
            raise ValueError(
                f"Invalid value for argument `target_sparsity`: expected at most "
                f"{nm.max_sparsity:.4g}, the most structure '{nm}' allows. Received: "
                f"target_sparsity={target_sparsity!r}. Lower it to 1 - N/M."
            )
        self.structure = None if parsed is None else str(parsed)
        self.epochs_per_round = epochs_per_round
        self.one_round_per_fit = one_round_per_fit
        self.monitor = monitor
        self.mode = mode
        self.state_dir = state_dir
        self.seed = seed
        self.verbose = verbose
        self._rewind_point = rewind.RewindPoint.parse(rewind_to)
        self.reset()

    def get_config(self) -> dict:
        """Every constructor argument; a callable `scorer` cannot be serialised and is refused."""
        if not isinstance(self.scorer, str):
            raise ValueError(
                "LotteryCallback.get_config(): argument `scorer` is a callable, which a config cannot "
                f"hold. Received: scorer={self.scorer!r}. Serialise a callback built with "
                "scorer='magnitude' or 'random', or rebuild this one in code instead of from its config."
            )
        if self.ticket_masks is not None:
            raise ValueError(
                "LotteryCallback.get_config(): argument `ticket_masks` holds mask arrays, which a "
                "config cannot hold. Rebuild a retrain='reinit' callback in code with the ticket's masks."
            )
        return {
            "rounds": self.rounds,
            "pruning_rate": self.pruning_rate,
            "target_sparsity": self.target_sparsity,
            "rewind_to": self.rewind_to,
            "retrain": self.retrain,
            "scope": self.scope,
            "layer_rates": self.layer_rates,
            "scorer": self.scorer,
            "ticket_masks": None,  # refused above unless None
            "structure": self.structure,
            "epochs_per_round": self.epochs_per_round,
            "one_round_per_fit": self.one_round_per_fit,
            "monitor": self.monitor,
            "mode": self.mode,
            "state_dir": self.state_dir,
            "seed": self.seed,
            "verbose": self.verbose,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    # -- state ----------------------------------------------------------------

    def reset(self) -> None:
        """Forgets all rounds, the rewind point and the ticket: the next `fit()` starts a new IMP run.

        That run starts from the model's weights and masks as they are then
        (after a finished run: pruned and trained), which is allowed only
        after `reset()`; see `on_train_begin`.
        """
        self._start_over()
        self._fitted_model = None  # weak reference to the model the run trains

    def _start_over(self) -> None:
        self.history: list[dict] = []
        self.round_masks: list[list[np.ndarray]] = []
        self.snapshot: rewind.Snapshot | None = None
        self._round = 0
        self._step = 0  # optimizer steps taken in round 0 (Python-side count)
        self._epoch_steps = 0
        self._round_epoch = 0
        self._epochs: list[dict] = []  # one record per finished epoch: epoch, round, steps, logs
        self._round0_masks: list[np.ndarray] | None = None
        self._run_id: str | None = None  # marks this run's files in `state_dir`
        self._started = False  # the first epoch of this fit() began
        self._done = False
        self._last_batch_end = 0
        self._round_report = None  # sparsity of the current round, for the logs
        self._warned_missing_monitor = False
        self._siblings: list = []

    @property
    def current_round(self) -> int:
        return self._round

    @property
    def ticket(self) -> Ticket | None:
        """Masks of the current round with the rewind weights (None before training)."""
        if self.model is None or self.snapshot is None:
            return None
        return Ticket.from_model(
            self.model,
            weights=self.snapshot.model_values,
            metadata={
                "round": self._round,
                "rounds": self.rounds,
                "rewind_to": self.rewind_to,
                "rewind_step": self.snapshot.step,
                "retrain": self.retrain,
                "pruning_rate": self.pruning_rate,
                "target_sparsity": self.target_sparsity,
                "scope": self.scope,
                "layer_rates": self.layer_rates,
            },
        )

    def ticket_at(self, round_index: int) -> Ticket:
        """The ticket of finished round `round_index`: the masks it trained with and the rewind weights.

        Args:
            round_index: int. A finished round, `0` (the dense start) to
                `len(history) - 1`.
        """
        round_index = validation.check_int("round_index", round_index, minimum=0)
        finished = len(self.history)
        if round_index >= finished or self.ticket is None:
            expected = (
                f"a finished round, 0 to {finished - 1}" if finished else "a finished round (none has yet)"
            )
            raise validation.invalid_argument("round_index", round_index, expected)
        current = self.ticket
        masks = self._round0_masks if round_index == 0 else self.round_masks[round_index - 1]
        ticket = Ticket(
            masks=[np.asarray(m, dtype=bool) for m in masks],
            mask_names=current.mask_names,
            weights=current.weights,
            weight_names=current.weight_names,
            metadata={**current.metadata, "round": round_index},
        )
        ticket.metadata["sparsity"] = ticket.sparsity
        return ticket

    def _rate_for(self, round_index: int):
        """(rate, target) for the pruning that follows `round_index`."""
        if self.pruning_rate is not None:
            return self.pruning_rate, None
        if round_index == self.rounds - 2:
            return None, self.target_sparsity
        # From a sparse start (e.g. one-shot masks seeding IMP) the rounds share what is left to prune.
        start = self._start_sparsity()
        return pruning.rate_per_round(self.target_sparsity, self.rounds - 1, start_sparsity=start), None

    def _start_sparsity(self) -> float:
        """The weight sparsity of the masks the run started from (0 for units: their rates count units)."""
        if self._round0_masks is None or isinstance(
            nm_structure.parse(self.structure), nm_structure.UnitStructure
        ):
            return 0.0
        total = sum(m.size for m in self._round0_masks)
        alive = sum(int(np.count_nonzero(m)) for m in self._round0_masks)
        return 1.0 - alive / total if total else 0.0

    def _check_target_above_start(self) -> None:
        """A target below the starting sparsity would fail only after round 0 trained: refuse it now."""
        if self.target_sparsity is None or self.retrain == "reinit":
            return
        start = self._start_sparsity()
        if self.target_sparsity < start:
            raise ValueError(
                f"Invalid value for argument `target_sparsity`: expected at least {start:.4g}, the "
                f"sparsity of model '{self.model.name}' when fit() started (masks only shrink). "
                f"Received: target_sparsity={self.target_sparsity!r}. Pass a larger target, or "
                "start from denser masks."
            )

    # -- Keras hooks ----------------------------------------------------------

    def on_train_begin(self, logs=None):
        model = self.model
        optimizer = getattr(model, "optimizer", None)
        if getattr(optimizer, "use_ema", False):
            raise ValueError(
                "LotteryCallback cannot keep pruned weights at zero with an "
                "optimizer that uses `use_ema=True`: Keras updates the moving "
                "average outside the masks and copies it into the weights when "
                "fit() ends. Compile with `use_ema=False`."
            )
        wrappers = prune_wrappers(model)
        if not wrappers:
            raise ValueError(
                f"LotteryCallback: model '{model.name}' has no PruneWrapper layers. "
                "Wrap it first: `model = tfl.prunable(model)`."
            )
        pruning.check_layer_rates(wrappers, self.layer_rates)
        parsed = nm_structure.parse(self.structure)
        if isinstance(parsed, nm_structure.BlockStructure):
            blocks.check_layers(wrappers, parsed)  # before a round trains, not when it ends
        elif isinstance(parsed, nm_structure.UnitStructure):
            units_pruning.groups_for(model, parsed)  # refuses a model without such units, as early
        if not self.one_round_per_fit:
            self._previous_rounds = len(self.history)  # for the message if this fit() is refused
            self._start_over()
        elif self._done:
            raise ValueError(
                f"LotteryCallback already finished its {self.rounds} rounds. Call `reset()` to start a new run."
            )
        self._started = False
        self._round_report = None  # masks may have been set between fit() calls
        self._warned_missing_monitor = False
        self._siblings = _keras_compat.sibling_callbacks(self)
        self._check_backup()
        epochs = self.params.get("epochs")
        if self.one_round_per_fit:
            self._epochs_per_round = self.epochs_per_round or epochs
            self._round_epoch = 0
        else:
            if self.epochs_per_round is not None:
                self._epochs_per_round = self.epochs_per_round
                if epochs is not None and epochs < self.rounds * self.epochs_per_round:
                    warnings.warn(
                        f"fit(epochs={epochs}) is fewer than rounds * epochs_per_round = "
                        f"{self.rounds * self.epochs_per_round}; the last rounds will not run.",
                        stacklevel=2,
                    )
            else:
                if epochs is None or epochs % self.rounds:
                    raise ValueError(
                        f"LotteryCallback: fit(epochs={epochs}) is not a multiple of "
                        f"rounds={self.rounds}. Pass epochs = rounds * epochs_per_round, "
                        "or set `epochs_per_round`."
                    )
                self._epochs_per_round = epochs // self.rounds
        self._steps_per_epoch = self.params.get("steps")
        self._rewind_step = self._rewind_point.step(self._steps_per_epoch)
        if self._rewind_point.unit == "ep" and self._rewind_point.amount >= self._epochs_per_round:
            raise ValueError(
                f"Invalid value for argument `rewind_to`: '{self.rewind_to}' is not "
                f"inside the first round ({self._epochs_per_round} epochs)."
            )
        if (
            self._rewind_step is not None
            and self._steps_per_epoch
            and self._rewind_step >= self._epochs_per_round * self._steps_per_epoch
        ):
            raise ValueError(
                f"Invalid value for argument `rewind_to`: '{self.rewind_to}' is not "
                f"inside the first round ({self._epochs_per_round * self._steps_per_epoch} steps)."
            )

    def on_epoch_begin(self, epoch, logs=None):
        # The run starts (or resumes) here, after every callback's on_train_begin:
        # BackupAndRestore has restored the weights and the epoch, in either order.
        if not self._started:
            self._started = True
            self._begin_fit(epoch)
        if self._round_epoch == 0 and self._round > 0:
            self._reset_monitors()
        self._epoch_steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self._epoch_steps = batch + 1
        if self.snapshot is not None or self._round != 0 or self._rewind_point.unit != "it":
            return
        step = self._step + batch + 1
        if step == self._rewind_step:
            self._capture(step)
        elif step > self._rewind_step:
            raise ValueError(
                f"LotteryCallback could not take the rewind point '{self.rewind_to}': "
                f"training jumped from step {self._step + self._last_batch_end} to {step} "
                "(steps_per_execution > 1). Use a rewind step that is a multiple of "
                "steps_per_execution."
            )
        self._last_batch_end = batch + 1

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            # The same dict goes to the callbacks after this one (History, ProgbarLogger, ...).
            logs.update(self._round_logs())
        logs = dict(logs or {})
        if self._epoch_steps == 0:
            self.model.stop_training = True
            raise ValueError(
                f"LotteryCallback: epoch {epoch} of round {self._round} ran no training step: the "
                "training data gave no batch (an empty dataset?). A round without training would "
                "prune untrained weights. Pass fit() data with at least one batch per epoch (check "
                "its size, filters and `steps_per_epoch`)."
            )
        loss = logs.get("loss")
        if loss is not None and not np.isfinite(loss):
            self.model.stop_training = True
            raise FloatingPointError(
                f"LotteryCallback: training diverged in round {self._round} "
                f"(loss={loss} at epoch {epoch}). The round is not recorded. "
                "Lower the learning rate or add gradient clipping, or check the labels and inputs "
                "(e.g. labels out of range for the loss)."
            )
        self._step += self._epoch_steps
        self._last_batch_end = 0
        if self._round == 0 and self.snapshot is None and self._rewind_point.unit == "ep":
            if epoch + 1 == self._rewind_point.amount:
                self._capture(self._step)
        self._round_epoch += 1
        scalars = {k: float(v) for k, v in logs.items() if np.ndim(v) == 0}
        self._epochs.append(
            {"epoch": int(epoch), "round": self._round, "steps": self._epoch_steps, "logs": scalars}
        )
        if not self.one_round_per_fit and self._round_epoch == self._epochs_per_round:
            self._end_round()
        else:
            self._save_state()

    def on_train_end(self, logs=None):
        if self.one_round_per_fit:
            if self._round_epoch > 0:
                self._end_round()
            return
        epochs = self.params.get("epochs")
        if not self._started and self.state_dir is not None and epochs:
            # BackupAndRestore resumed after the last epoch: no epoch ran, the state is on disk.
            self._started = True
            self._begin_fit(epochs)
        finished = len(self.history)
        if finished < self.rounds:
            if self.model.stop_training:
                why = (
                    "A callback stopped training (model.stop_training): EarlyStopping, which "
                    "LotteryCallback resets at each round start, saw no improvement for `patience` "
                    "epochs of one round, or TerminateOnNaN. Raise its patience or leave it out: each "
                    "round's best epoch is recorded anyway (history[r]['best_metrics'])."
                )
            else:
                why = f"Pass fit(epochs={self.rounds * self._epochs_per_round}) to run them all."
            warnings.warn(
                f"LotteryCallback: only {finished} of the {self.rounds} rounds asked for finished: fit() "
                f"ended after {len(self._epochs)} of {self.rounds * self._epochs_per_round} epochs, in "
                f"round {self._round}. {why} `lottery.ticket` holds round {self._round}'s masks; "
                "`lottery.ticket_at(r)` those of a finished round.",
                stacklevel=2,
            )

    def _begin_fit(self, epoch: int) -> None:
        if self.one_round_per_fit:
            if self._run_id is None:
                self._run_id = uuid.uuid4().hex
                self._round0_masks = get_masks(self.model)
                self._check_target_above_start()
            if self.snapshot is None and self._round == 0 and self._rewind_step == 0:
                self._capture(0)
            return
        previous = self._fitted_model() if self._fitted_model is not None else None
        if epoch == 0 and previous is self.model:
            raise ValueError(
                f"LotteryCallback: this callback already ran IMP on model '{self.model.name}' "
                f"({self._previous_rounds} of {self.rounds} rounds; the model now holds their pruned, "
                "trained weights). A second fit() would silently start IMP again from them. To "
                "repeat the run, build a fresh model (e.g. `tfl.prunable(make_model())`); to start "
                "a new run from this model on purpose, call `lottery.reset()` first; to train "
                "round by round, use `one_round_per_fit=True`."
            )
        self._fitted_model = weakref.ref(self.model)
        if epoch > 0:
            if self.state_dir is None:
                raise ValueError(
                    f"LotteryCallback: fit() starts at epoch {epoch} (BackupAndRestore or "
                    "`initial_epoch`), but the callback has no `state_dir` holding the rounds before "
                    "it. Pass the same `state_dir=` to every run of the job, or start at epoch 0."
                )
            self._resume(epoch)
            return
        self._run_id = uuid.uuid4().hex
        self._round0_masks = get_masks(self.model)
        self._check_target_above_start()
        if self.state_dir is not None:
            callback_state.write_masks(self.state_dir, 0, self._round0_masks, self._run_id)
        if self._rewind_step == 0:
            self._capture(0)
        self._save_state()

    def _check_backup(self) -> None:
        for callback in self._siblings:
            if isinstance(callback, keras.callbacks.BackupAndRestore) and callback.save_freq != "epoch":
                warnings.warn(
                    f"LotteryCallback beside BackupAndRestore(save_freq={callback.save_freq!r}): a "
                    "backup taken inside an epoch resumes at the start of that epoch with the "
                    "weights of the middle of it (Keras' behaviour), so the resumed run is not the "
                    "uninterrupted one. Use save_freq='epoch' for exact resumption.",
                    stacklevel=3,
                )

    def _reset_monitors(self) -> None:
        """EarlyStopping and ReduceLROnPlateau act per round: a rewind is a new start for them."""
        for callback in self._siblings:
            if isinstance(callback, (keras.callbacks.EarlyStopping, keras.callbacks.ReduceLROnPlateau)):
                callback.on_train_begin()
                # Keras 3.15.1's on_train_begin also forgets the best value; 3.12.0's keeps it,
                # which stopped round 1 at the rewind's jump. `best` is their public attribute.
                callback.best = None

    def _round_logs(self) -> dict:
        if self._round_report is None:
            self._round_report = sparsity_report(self.model)
        return {
            "lottery_round": self._round,
            "lottery_sparsity": self._round_report.sparsity,
            "lottery_weights_remaining": self._round_report.alive,
        }

    def _best_epoch(self, epochs: list[dict]):
        """`(value, step, logs)` of the round's best epoch among those whose logs hold `monitor`.

        Without `monitor` in any of them (no validation data), the minimum of
        `loss`, with a warning (once per fit). Epochs without the key (e.g.
        `fit(validation_freq=2)`) are skipped, never compared by their `loss`.
        """
        key, direction = self.monitor, monitor_direction(self.monitor, self.mode)
        if not any(key in e["logs"] for e in epochs):
            if not self._warned_missing_monitor:
                self._warned_missing_monitor = True
                available = sorted({k for e in epochs for k in e["logs"]} - set(LOG_KEYS))
                warnings.warn(
                    f"LotteryCallback: argument `monitor`={self.monitor!r} is not in the epoch logs "
                    f"(they hold {available}), so the early-stopping point is the minimum of 'loss'. "
                    "Pass validation data to fit() or set `monitor` to one of those keys.",
                    stacklevel=3,
                )
            key, direction = "loss", "min"
        best = (None, None, None)
        step = 0
        for record in epochs:
            step += record["steps"]
            value = record["logs"].get(key)
            if value is not None and (
                best[0] is None or (value < best[0] if direction == "min" else value > best[0])
            ):
                best = (value, step, record["logs"])
        return best

    # -- rounds -----------------------------------------------------------------

    def _capture(self, step: int) -> None:
        self.snapshot = rewind.Snapshot.capture(self.model, step)
        if self.state_dir is not None:
            callback_state.write_rewind_point(self.state_dir, self.snapshot, self._run_id)

    def _end_round(self, lost_last_epoch: bool = False) -> None:
        if self.snapshot is None:
            raise ValueError(
                f"LotteryCallback: round {self._round} ended before the rewind point "
                f"'{self.rewind_to}' was reached. Use an earlier rewind point or longer rounds."
            )
        epochs = [e for e in self._epochs if e["round"] == self._round]
        best, best_step, best_logs = self._best_epoch(epochs)
        report = sparsity_report(self.model)
        record = {
            "round": self._round,
            "sparsity": report.sparsity,
            "percent_remaining": report.percent_remaining,
            "metrics": dict(epochs[-1]["logs"]) if epochs else {},
            "best": best,
            "early_stop_step": best_step,
            "best_metrics": best_logs,
            "layers": {e.name: e.sparsity for e in report.layers},
        }
        if lost_last_epoch:
            record["resumed"] = True
        self.history.append(record)
        if self.verbose:
            metrics = ", ".join(f"{k}={v:.4f}" for k, v in record["metrics"].items())
            print(
                # 0-based, as `history[r]["round"]`, `lottery_round` and the command line count.
                f"[LotteryCallback] round {self._round} of 0..{self.rounds - 1}: "
                f"{record['percent_remaining']:.1f}% weights remaining; {metrics}"
            )
        if self._round < self.rounds - 1:
            self._prune_and_reset()
        else:
            self._done = True
        self._round_epoch = 0
        self._save_state()

    def _prune_and_reset(self) -> None:
        if self.retrain == "reinit":
            self._set_ticket_masks(self._round + 1)
        else:
            self._prune()
        masks = get_masks(self.model)
        self.round_masks.append(masks)
        if self.state_dir is not None:
            callback_state.write_masks(self.state_dir, self._round + 1, masks, self._run_id)
        mode = "reinit" if self.retrain == "reinit_imp" else self.retrain
        rewind.reset_for_retrain(self.model, mode, self.snapshot, seed=self.seed + 1000 + self._round)
        self._round += 1
        self._round_report = None

    def _set_ticket_masks(self, round_index: int) -> None:
        source = self.ticket_masks
        masks = source.round_masks if isinstance(source, LotteryCallback) else source
        wrappers = prune_wrappers(self.model)
        if round_index > len(masks):
            raise ValueError(
                f"Invalid value for argument `ticket_masks`: round {round_index} needs the ticket's "
                f"round-{round_index} masks, but it holds {len(masks)} round(s). Pass the masks of a "
                f"rewind run with at least {self.rounds} rounds."
            )
        flat = list(masks[round_index - 1])
        expected = [tuple(m.shape) for w in wrappers for m in w.masks]
        if [tuple(np.shape(m)) for m in flat] != expected:
            raise ValueError(
                f"Invalid value for argument `ticket_masks`: round {round_index}'s masks have shapes "
                f"{[tuple(np.shape(m)) for m in flat]}, but this model's pruned weights have {expected}. "
                "Pass the masks of a rewind run on the same architecture."
            )
        set_masks(self.model, flat)

    def _prune(self) -> None:
        rate, target = self._rate_for(self._round)
        scorer = self.scorer
        if scorer == "random":
            from tf_lottery.pruning.scoring import RandomScorer

            scorer = RandomScorer(self.seed + self._round)
        layer_rates = self.layer_rates
        if target is not None:
            # The last round lands on `target_sparsity`; `tfl.prune` then reads `layer_rates` as
            # the layers' own targets. They are rates per round in every round, so each layer
            # lands where its rate takes it after `rounds - 1` prunings.
            layer_rates = {p: 1.0 - (1.0 - r) ** (self.rounds - 1) for p, r in layer_rates.items()}
        pruning.prune(
            self.model,
            rate,
            target_sparsity=target,
            scope=self.scope,
            layer_rates=layer_rates,
            scorer=scorer,
            structure=self.structure,
        )

    # -- persistence ------------------------------------------------------------

    def _save_state(self) -> None:
        if self.state_dir is None:
            return
        callback_state.write_state(
            self.state_dir,
            {
                "run": self._run_id,
                "rounds": self.rounds,
                "epochs_per_round": self._epochs_per_round,
                "rounds_completed": len(self.history),
                "round": self._round,
                "history": self.history,
                "epochs": self._epochs,
            },
        )

    def _resume(self, epoch: int) -> None:
        """Brings the round state to `epoch`, where BackupAndRestore resumes, whatever the callback order.

        The state on disk may be one epoch ahead of the backup (LotteryCallback
        listed first: a crash between the two callbacks' epoch ends): the
        extra epoch is dropped and trained again. It may be one epoch behind
        (BackupAndRestore listed first, a crash in the same place): that
        epoch's logs are lost, the rest is exact. At a round start the masks
        of the round and the reset (rewind) are applied again, so the backup
        may hold the weights from before or after the pruning.
        """
        state = callback_state.read_state(self.state_dir)
        state_path = os.path.join(self.state_dir, callback_state.STATE_FILE)
        if state is None:
            raise ValueError(
                f"LotteryCallback: fit() resumes at epoch {epoch} (BackupAndRestore or `initial_epoch`), "
                f"but '{state_path}' does not exist. Resume with the `state_dir` the run started with, "
                "or delete the BackupAndRestore backup directory to run again from the start."
            )
        if (state["rounds"], state["epochs_per_round"]) != (self.rounds, self._epochs_per_round):
            raise ValueError(
                f"LotteryCallback: '{state_path}' belongs to a run of {state['rounds']} rounds of "
                f"{state['epochs_per_round']} epochs; this one has {self.rounds} of {self._epochs_per_round}. "
                "Resume with the arguments the run started with, or delete the state and backup "
                "directories to run again from the start."
            )
        self._run_id = state["run"]
        epochs = [e for e in state["epochs"] if e["epoch"] < epoch]
        if [e["epoch"] for e in epochs] != list(range(len(epochs))) or len(epochs) < epoch - 1:
            raise callback_state.damaged(
                state_path,
                f"it records epochs {[e['epoch'] for e in epochs]}, but the backup resumes at epoch {epoch}",
            )
        if len(epochs) == epoch - 1:
            warnings.warn(
                f"LotteryCallback: the backup was saved after epoch {epoch - 1} but the lottery state "
                f"before it (BackupAndRestore is listed before LotteryCallback and the job stopped "
                "between them): that epoch's logs are lost. List LotteryCallback first for exact "
                "resumption.",
                stacklevel=3,
            )
            lost_steps = self._steps_per_epoch or (epochs[-1]["steps"] if epochs else 0)
            lost_round = (epoch - 1) // self._epochs_per_round
            epochs.append({"epoch": epoch - 1, "round": lost_round, "steps": lost_steps, "logs": {}})
        self._epochs = epochs
        self._step = sum(e["steps"] for e in epochs)
        self._round_epoch = epoch % self._epochs_per_round
        rounds_done = min(epoch // self._epochs_per_round, self.rounds)
        wrappers = prune_wrappers(self.model)
        mask_shapes = [tuple(m.shape) for w in wrappers for m in w.masks]
        variable_shapes = [tuple(v.shape) for v in model_variables(self.model)]
        self._round0_masks = callback_state.read_masks(self.state_dir, 0, self._run_id, mask_shapes)
        self.snapshot = callback_state.read_rewind_point(self.state_dir, self._run_id, variable_shapes)
        if self.snapshot is None:
            unit, amount = self._rewind_point.unit, self._rewind_point.amount
            if (unit == "ep" and epoch >= amount) or (unit == "it" and self._step >= amount):
                raise ValueError(
                    f"LotteryCallback resumed at epoch {epoch}, past the rewind point "
                    f"'{self.rewind_to}', but '{self.state_dir}' holds no rewind point of this run. "
                    "Resume with the same `state_dir` the run started with."
                )
        self.history = [dict(r) for r in state["history"][:rounds_done]]
        self._round = len(self.history)
        self.round_masks = [
            callback_state.read_masks(self.state_dir, r, self._run_id, mask_shapes)
            for r in range(1, min(self._round, self.rounds - 1) + 1)
        ]
        if self._round < rounds_done:
            # The backup holds the end of this round's training; the state does not record it yet.
            self._end_round(lost_last_epoch=True)
        elif self._round == self.rounds:
            self._round, self._done = self.rounds - 1, True
        elif self._round_epoch == 0 and self._round > 0:
            # The backup may hold the trained weights from before the pruning: prune and reset again.
            set_masks(self.model, self.round_masks[-1])
            mode = "reinit" if self.retrain == "reinit_imp" else self.retrain
            rewind.reset_for_retrain(self.model, mode, self.snapshot, seed=self.seed + 1000 + self._round - 1)
        self._round_report = None
        self._save_state()


def _check_ticket_masks(ticket_masks, retrain: str):
    """`ticket_masks` is given exactly for `retrain="reinit"`, as a callback or a list of rounds."""
    if retrain == "reinit" and ticket_masks is None:
        raise ValueError(
            "Invalid value for argument `ticket_masks`: retrain='reinit' is Frankle & Carbin's "
            "control, which trains the winning ticket's masks with fresh weights, so it needs those "
            "masks. Received: ticket_masks=None. Run a LotteryCallback(retrain='rewind') first and "
            "pass it (ticket_masks=that_callback), or use retrain='reinit_imp' for IMP on "
            "reinitialised networks."
        )
    if retrain != "reinit" and ticket_masks is not None:
        raise ValueError(
            f"Invalid value for argument `ticket_masks`: only retrain='reinit' uses it. Received it "
            f"with retrain={retrain!r}. Drop `ticket_masks` or use retrain='reinit'."
        )
    if ticket_masks is None or isinstance(ticket_masks, LotteryCallback):
        return ticket_masks
    if not isinstance(ticket_masks, (list, tuple)) or not all(
        isinstance(r, (list, tuple)) for r in ticket_masks
    ):
        raise validation.invalid_argument(
            "ticket_masks",
            type(ticket_masks).__name__,
            "a LotteryCallback of a rewind run, or a list (one item per round) of lists of mask arrays",
        )
    return [[np.asarray(m, dtype=bool) for m in round_masks] for round_masks in ticket_masks]
