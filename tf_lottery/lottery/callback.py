"""`LotteryCallback`: iterative magnitude pruning inside `model.fit`."""

from __future__ import annotations

import os
import warnings

import keras
import numpy as np

from tf_lottery.core.report import sparsity_report
from tf_lottery.core.walk import prune_wrappers
from tf_lottery.lottery import rewind
from tf_lottery.lottery.ticket import Ticket
from tf_lottery.pruning import pruner as pruning
from tf_lottery.pruning import structure as nm_structure
from tf_lottery.utils import atomic_io, validation

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
            per-round rate is derived and the last pruning step lands exactly
            on it.
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
        layer_rates: Optional per-layer rates, see `tfl.prune`.
        scorer: `"magnitude"`, `"random"` or a callable; see `tfl.scoring`.
        structure: `None` or `"N:M"` (e.g. `"2:4"`): N:M structured masks,
            see `tfl.prune`. Each round prunes within the pattern, which
            allows at most `1 - N/M` sparsity: use `target_sparsity` (at most
            that) rather than a rate that would pass it. Defaults to `None`.
        epochs_per_round: int. Defaults to `fit(epochs=...) // rounds`.
        one_round_per_fit: bool. If `True`, each `fit()` call trains one
            round and the pruning happens when it ends; state carries over
            between calls (use `reset()` to start over). Defaults to `False`:
            the whole IMP run happens in one `fit()`.
        monitor: str. The epoch-log key whose best value marks the
            early-stopping iteration. Defaults to `"val_loss"`. If the logs
            lack it (e.g. no validation data), the callback warns once and
            uses the minimum of `"loss"`.
        mode: One of `"auto"`, `"min"`, `"max"`, as in
            `keras.callbacks.EarlyStopping`: whether the best `monitor`
            value is the lowest or the highest. `"auto"` maximises
            accuracy-, AUC-, precision- and recall-like names and minimises
            the rest (losses). Defaults to `"auto"`.
        state_dir: Optional directory where the rewind point and round
            history are saved atomically, so that a run restarted with
            `keras.callbacks.BackupAndRestore` resumes without losing them.
        seed: int >= 0. Seed for the `"random"` scorer and the `"reinit"` /
            `"reinit_imp"` draws. Defaults to `0`.
        verbose: int. `1` prints one line per round. Defaults to `1`.

    Every epoch's `logs` get `lottery_round` (the round it trained in),
    `lottery_sparsity` (the fraction of prunable weights that are pruned)
    and `lottery_weights_remaining` (how many are not), so `History`,
    `ProgbarLogger` and, listed after this callback, `CSVLogger` and
    `TensorBoard` record them.

    Attributes:
        round_masks: List with, for each pruning so far, the masks round
            `r` (1, 2, ...) trained with: what `ticket_masks` takes.
        history: List of dicts, one per finished round: `round`, `sparsity`,
            `percent_remaining`, `metrics` (last epoch's logs), `best`
            (best value of `monitor`), `early_stop_step`, `layers`.
        ticket: The current `Ticket` (masks + rewind weights + metadata).

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
        if not (callable(scorer) or scorer in ("magnitude", "random")):
            raise validation.invalid_argument(
                "scorer", scorer, "'magnitude', 'random' or a callable `scorer(wrappers) -> list of arrays`"
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
        nm = nm_structure.parse(structure)
        if nm is not None and target_sparsity is not None and target_sparsity > nm.max_sparsity:
            raise ValueError(
                f"Invalid value for argument `target_sparsity`: expected at most "
                f"{nm.max_sparsity:.4g}, the most structure '{nm}' allows. Received: "
                f"target_sparsity={target_sparsity!r}. Lower it to 1 - N/M."
            )
        self.structure = None if nm is None else str(nm)
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
        """Forgets all rounds, the rewind point and the ticket."""
        self.history: list[dict] = []
        self.round_masks: list[list[np.ndarray]] = []
        self.snapshot: rewind.Snapshot | None = None
        self._round = 0
        self._step = 0  # optimizer steps taken in round 0 (Python-side count)
        self._epoch_steps = 0
        self._best = None  # best value of `monitor` in the current round
        self._best_step = None
        self._round_epoch = 0
        self._resume_checked = False
        self._done = False
        self._last_batch_end = 0
        self._last_logs: dict = {}
        self._round_report = None  # sparsity of the current round, for the logs
        self._warned_missing_monitor = False

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

    def _rate_for(self, round_index: int):
        """(rate, target) for the pruning that follows `round_index`."""
        if self.pruning_rate is not None:
            return self.pruning_rate, None
        if round_index == self.rounds - 2:
            return None, self.target_sparsity
        return pruning.rate_per_round(self.target_sparsity, self.rounds - 1), None

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
        if not prune_wrappers(model):
            raise ValueError(
                f"LotteryCallback: model '{model.name}' has no PruneWrapper layers. "
                "Wrap it first: `model = tfl.prunable(model)`."
            )
        if not self.one_round_per_fit:
            self.reset()
        elif self._done:
            raise ValueError(
                f"LotteryCallback already finished its {self.rounds} rounds. Call `reset()` to start a new run."
            )
        self._round_report = None  # masks may have been set between fit() calls
        self._warned_missing_monitor = False
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
        if self.snapshot is None and self._round == 0 and self._rewind_step == 0:
            self._capture(0)

    def on_epoch_begin(self, epoch, logs=None):
        if not self._resume_checked:
            self._resume_checked = True
            if self.state_dir is not None:
                self._resume(epoch)
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
        self._last_logs = logs
        loss = logs.get("loss")
        if loss is not None and not np.isfinite(loss):
            self.model.stop_training = True
            raise FloatingPointError(
                f"LotteryCallback: training diverged in round {self._round} "
                f"(loss={loss} at epoch {epoch}). The round is not recorded. "
                "Lower the learning rate or add gradient clipping."
            )
        self._step += self._epoch_steps
        self._last_batch_end = 0
        if self._round == 0 and self.snapshot is None and self._rewind_point.unit == "ep":
            if epoch + 1 == self._rewind_point.amount:
                self._capture(self._step)
        self._round_epoch += 1
        value, direction = self._monitored(logs)
        if value is not None and (
            self._best is None or (value < self._best if direction == "min" else value > self._best)
        ):
            self._best = float(value)
            self._best_step = self._round_epoch * (self._steps_per_epoch or self._epoch_steps)
        if not self.one_round_per_fit and self._round_epoch == self._epochs_per_round:
            self._end_round(logs)

    def on_train_end(self, logs=None):
        if self.one_round_per_fit and self._round_epoch > 0:
            self._end_round(self._last_logs)

    def _round_logs(self) -> dict:
        if self._round_report is None:
            self._round_report = sparsity_report(self.model)
        return {
            "lottery_round": self._round,
            "lottery_sparsity": self._round_report.sparsity,
            "lottery_weights_remaining": self._round_report.alive,
        }

    def _monitored(self, logs: dict):
        """`(value, "min" | "max")` of `monitor` in `logs`, or of `loss` (with a warning) without it."""
        if self.monitor in logs:
            return logs[self.monitor], monitor_direction(self.monitor, self.mode)
        if not self._warned_missing_monitor:
            self._warned_missing_monitor = True
            available = sorted(k for k in logs if k not in LOG_KEYS)
            warnings.warn(
                f"LotteryCallback: argument `monitor`={self.monitor!r} is not in the epoch logs "
                f"(they hold {available}), so the early-stopping point is the minimum of 'loss'. "
                "Pass validation data to fit() or set `monitor` to one of those keys.",
                stacklevel=2,
            )
        return logs.get("loss"), "min"

    # -- rounds -----------------------------------------------------------------

    def _capture(self, step: int) -> None:
        self.snapshot = rewind.Snapshot.capture(self.model, step)
        if self.state_dir is not None:
            atomic_io.makedirs(self.state_dir)
            arrays = {f"m{i:05d}": v for i, v in enumerate(self.snapshot.model_values)}
            arrays.update({f"o{i:05d}": v for i, v in enumerate(self.snapshot.optimizer_values)})
            arrays["step"] = np.asarray(step)
            atomic_io.write_npz(os.path.join(self.state_dir, "rewind_point.npz"), arrays)

    def _end_round(self, logs: dict) -> None:
        if self.snapshot is None:
            raise ValueError(
                f"LotteryCallback: round {self._round} ended before the rewind point "
                f"'{self.rewind_to}' was reached. Use an earlier rewind point or longer rounds."
            )
        report = sparsity_report(self.model)
        record = {
            "round": self._round,
            "sparsity": report.sparsity,
            "percent_remaining": report.percent_remaining,
            "metrics": {k: float(v) for k, v in logs.items() if np.ndim(v) == 0},
            "best": self._best,
            "early_stop_step": self._best_step,
            "layers": {f"{e.layer}/{e.weight}": e.sparsity for e in report.layers},
        }
        self.history.append(record)
        if self.verbose:
            metrics = ", ".join(f"{k}={v:.4f}" for k, v in record["metrics"].items())
            print(
                f"[LotteryCallback] round {self._round + 1}/{self.rounds}: "
                f"{record['percent_remaining']:.1f}% weights remaining; {metrics}"
            )
        if self._round < self.rounds - 1:
            self._prune_and_reset()
        else:
            self._done = True
        self._best, self._best_step, self._round_epoch = None, None, 0
        self._save_state()

    def _prune_and_reset(self) -> None:
        if self.retrain == "reinit":
            self._set_ticket_masks(self._round + 1)
        else:
            self._prune()
        masks = [m for wrapper in prune_wrappers(self.model) for m in wrapper.get_masks()]
        self.round_masks.append(masks)
        if self.state_dir is not None:
            atomic_io.write_npz(
                os.path.join(self.state_dir, f"masks_round_{self._round + 1}.npz"),
                {f"m{i:05d}": m for i, m in enumerate(masks)},
            )
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
        position = 0
        for wrapper in wrappers:
            count = len(wrapper.masks)
            wrapper.set_masks([np.asarray(m, dtype=bool) for m in flat[position : position + count]])
            position += count

    def _prune(self) -> None:
        rate, target = self._rate_for(self._round)
        scorer = self.scorer
        if scorer == "random":
            from tf_lottery.pruning.scoring import RandomScorer

            scorer = RandomScorer(self.seed + self._round)
        pruning.prune(
            self.model,
            rate,
            target_sparsity=target,
            scope=self.scope,
            layer_rates=self.layer_rates,
            scorer=scorer,
            structure=self.structure,
        )

    # -- persistence ------------------------------------------------------------

    def _save_state(self) -> None:
        if self.state_dir is None:
            return
        atomic_io.makedirs(self.state_dir)
        atomic_io.write_json(
            os.path.join(self.state_dir, "lottery_state.json"),
            {"rounds_completed": len(self.history), "round": self._round, "history": self.history},
        )

    def _resume(self, epoch: int) -> None:
        """Reloads the rewind point and history after a restart at `epoch`."""
        point_path = os.path.join(self.state_dir, "rewind_point.npz")
        state_path = os.path.join(self.state_dir, "lottery_state.json")
        if self.snapshot is None and atomic_io.exists(point_path):
            archive = atomic_io.load_npz(point_path)
            self.snapshot = rewind.Snapshot(
                model_values=[archive[k] for k in sorted(k for k in archive if k.startswith("m"))],
                optimizer_values=[archive[k] for k in sorted(k for k in archive if k.startswith("o"))],
                step=int(archive["step"]),
            )
        self.round_masks = []
        for round_index in range(1, self.rounds):
            path = os.path.join(self.state_dir, f"masks_round_{round_index}.npz")
            if not atomic_io.exists(path):
                break
            archive = atomic_io.load_npz(path)
            self.round_masks.append([archive[k] for k in sorted(archive)])
        if epoch == 0:
            return
        history = []
        if atomic_io.exists(state_path):
            history = atomic_io.read_json(state_path)["history"]
        expected = epoch // self._epochs_per_round
        self._round_epoch = epoch % self._epochs_per_round
        self._step = epoch * (self._steps_per_epoch or 0)
        if self.snapshot is None:
            passed = self._rewind_step is None or self._step >= self._rewind_step
            if self._round_epoch != epoch or passed:
                raise ValueError(
                    f"LotteryCallback resumed at epoch {epoch}, past the rewind point "
                    f"'{self.rewind_to}', but '{self.state_dir}' holds no rewind point. "
                    "Resume with the same `state_dir` the run started with."
                )
            return  # still in round 0, before the rewind point: it will be taken
        self.history = history[:expected]
        self._round = len(self.history)
        if self._round < expected:
            # The backup was written after the round's training but before its
            # pruning: prune now, from the same trained weights.
            self.history.append({"round": self._round, "resumed": True, "metrics": {}})
            self._prune_and_reset()
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
