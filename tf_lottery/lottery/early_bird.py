"""`EarlyBird`: draws a ticket's mask early in dense training (You et al. 2020)."""

from __future__ import annotations

import collections

import keras
import numpy as np

from tf_lottery.core.walk import get_masks, prune_wrappers, pruning_target
from tf_lottery.core.wrapper import PruneWrapper
from tf_lottery.lottery import rewind
from tf_lottery.lottery.ticket import Ticket
from tf_lottery.pruning import pruner, scoring
from tf_lottery.utils import validation

GRANULARITIES = ("unstructured", "channel")
_CONV = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)


def draw_masks(
    model, target_sparsity: float, granularity: str = "unstructured", scope: str = "global"
) -> list:
    """The masks magnitude pruning to `target_sparsity` would give now, without applying them.

    Args:
        model: A model with `PruneWrapper` layers (its current masks count
            as already pruned).
        target_sparsity: float in [0, 1).
        granularity: `"unstructured"` (single weights) or `"channel"`
            (whole output channels of convolution kernels, ranked by the
            |scale| of the BatchNormalization right after the convolution,
            as in the paper, or by the L1 norm of each filter where there is
            none; other kernels stay unstructured). Defaults to
            `"unstructured"`.
        scope: `"global"` (one ranking over all channels, and one over all
            other weights: the paper's global threshold on BatchNorm scales)
            or `"layer"` (each layer loses `target_sparsity` of its channels
            or weights). Defaults to `"global"`.

    Returns:
        Boolean arrays, one per pruned weight, in `tfl.prune_wrappers` order.
    """
    wrappers = prune_wrappers(model)
    alive = get_masks(wrappers)
    scores = scoring.magnitude(wrappers)
    owners = [wr for wr in wrappers for _ in wr.pruned_weights]
    batchnorms = batchnorm_after(model) if granularity == "channel" else {}
    masks = list(alive)
    # Whole output channels of convolutions (granularity="channel"), single weights elsewhere.
    channels, channel_scores, channel_alive, weights = [], [], [], []
    for index, (owner, score, mask) in enumerate(zip(owners, scores, alive)):
        if granularity == "channel" and isinstance(owner.layer, _CONV):
            per_channel = score.reshape(-1, score.shape[-1]).sum(axis=0)
            norm = batchnorms.get(id(owner))
            if norm is not None and norm.gamma is not None and tuple(norm.gamma.shape) == per_channel.shape:
                per_channel = np.abs(keras.ops.convert_to_numpy(norm.gamma))
            channels.append(index)
            channel_scores.append(per_channel)
            channel_alive.append(mask.reshape(-1, mask.shape[-1]).any(axis=0))
        else:
            weights.append(index)

    def select(group_scores, group_alive):
        total = sum(a.size for a in group_alive)
        pruned = total - sum(int(np.count_nonzero(a)) for a in group_alive)
        k = max(pruner.exact_count(target_sparsity, total) - pruned, 0)
        return pruner.select_lowest(group_scores, group_alive, k)

    positions = list(range(len(channels)))
    for group in [positions] if scope == "global" else [[p] for p in positions]:
        if group:
            kept = select([channel_scores[p] for p in group], [channel_alive[p] for p in group])
            for p, keep in zip(group, kept):
                masks[channels[p]] = alive[channels[p]] & keep
    for group in [weights] if scope == "global" else [[i] for i in weights]:
        if group:
            for i, mask in zip(group, select([scores[i] for i in group], [alive[i] for i in group])):
                masks[i] = mask
    return masks


def batchnorm_after(model) -> dict:
    """`{id(wrapper): BatchNormalization}` for each wrapper whose output only feeds a BatchNormalization.

    Read from a Sequential model's layer order, or a functional model's
    graph (`layer.output` is `norm.input`); other models give `{}`.
    """
    target = pruning_target(model)
    layers = list(getattr(target, "layers", []))
    found = {}
    if isinstance(target, keras.Sequential):
        for layer, following in zip(layers, layers[1:]):
            if isinstance(layer, PruneWrapper) and isinstance(following, keras.layers.BatchNormalization):
                found[id(layer)] = following
        return found
    outputs = {}
    for layer in layers:
        if isinstance(layer, PruneWrapper):
            try:
                outputs[id(layer.output)] = layer
            except (AttributeError, ValueError):  # not in a graph, or called more than once
                continue
    for layer in layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            try:
                source = outputs.get(id(layer.input))
            except (AttributeError, ValueError):
                continue
            if source is not None:
                found[id(source)] = layer
    return found


def mask_distance(a: list, b: list) -> float:
    """Normalised Hamming distance: the fraction of entries where two mask lists differ."""
    total = sum(m.size for m in a)
    return sum(int(np.count_nonzero(x != y)) for x, y in zip(a, b)) / total if total else 0.0


@keras.saving.register_keras_serializable(package="tf_lottery")
class EarlyBird(keras.callbacks.Callback):
    """Finds an Early-Bird ticket: the mask stops changing early in training.

    At the end of every epoch (or every `every` steps) the callback draws the
    mask that magnitude pruning to `target_sparsity` would give (without
    applying it) and measures the normalised Hamming distance to the mask
    drawn at the previous check. When the last `window` distances all stay
    below `epsilon`, the mask has converged: the ticket is that mask with
    the rewind point `rewind_to`, and training stops (unless
    `stop_training=False`). Retrain it with `ticket.apply(model)` and `fit()`
    (see `tf_lottery.experiments.kinds.early_bird`).

    With `granularity="channel"` convolution channels are ranked, as in the
    paper, by the |scale| of the BatchNormalization that follows the
    convolution (in a Sequential or functional model), or by the L1 norm of
    their filters where there is none; `"unstructured"` ranks single weights
    by magnitude, as IMP does.

    Args:
        target_sparsity: float in [0, 1). Sparsity of the ticket.
        epsilon: float > 0. Distance below which two successive masks count
            as the same. Defaults to `0.1` (the paper's).
        window: int >= 1. How many successive distances must stay below
            `epsilon`. Defaults to `5` (the paper's FIFO length).
        every: `"epoch"` or an int >= 1: check every that many steps.
            Defaults to `"epoch"`.
        granularity: `"unstructured"` or `"channel"`. Defaults to
            `"unstructured"`.
        scope: `"global"` or `"layer"` (unstructured weights). Defaults to
            `"global"`.
        rewind_to: `"<N>it"` or `"<N>ep"`: the ticket's weights are the
            model's at that point. Defaults to `"0it"` (initialisation).
        stop_training: bool. Stop `fit()` once the ticket is found. Defaults
            to `True`.
        verbose: int. `1` prints the distance at each check. Defaults to `0`.

    Attributes:
        distances: List of `(step, distance)`, one per check after the first.
        found_step: Optimizer step at which the ticket was found, or `None`.
        masks: The ticket's masks once found, else `None`.
        ticket: A `Ticket` (masks + weights at `rewind_to`) once found.

    Example:

    ```python
    model = tfl.prunable(make_model())
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    early_bird = tfl.EarlyBird(target_sparsity=0.9, epsilon=0.02)
    model.fit(x, y, epochs=30, callbacks=[early_bird])
    early_bird.ticket.apply(model)   # masks + weights at initialisation
    model.fit(x, y, epochs=30)       # retrain the ticket
    ```

    Reference:
        You et al., "Drawing Early-Bird Tickets: Towards More Efficient
        Training of Deep Networks", ICLR 2020, arXiv:1909.11957.
    """

    def __init__(
        self,
        target_sparsity: float,
        *,
        epsilon: float = 0.1,
        window: int = 5,
        every="epoch",
        granularity: str = "unstructured",
        scope: str = "global",
        rewind_to="0it",
        stop_training: bool = True,
        verbose: int = 0,
    ):
        super().__init__()
        self.target_sparsity = validation.check_fraction("target_sparsity", target_sparsity)
        self.epsilon = validation.check_positive_number("epsilon", epsilon)
        self.window = validation.check_int("window", window, minimum=1)
        if every != "epoch":
            try:
                every = validation.check_int("every", every, minimum=1)
            except ValueError:
                raise validation.invalid_argument(
                    "every", every, "'epoch' or an int >= 1 (steps between checks)"
                ) from None
        self.every = every
        self.granularity = validation.check_choice("granularity", granularity, GRANULARITIES)
        self.scope = validation.check_choice("scope", scope, pruner.SCOPES)
        self.rewind_to = str(rewind.RewindPoint.parse(rewind_to))
        self.stop_training = validation.check_bool("stop_training", stop_training)
        self.verbose = validation.check_int("verbose", verbose, minimum=0)
        self._point = rewind.RewindPoint.parse(rewind_to)
        self._reset()

    def get_config(self) -> dict:
        return {
            "target_sparsity": self.target_sparsity,
            "epsilon": self.epsilon,
            "window": self.window,
            "every": self.every,
            "granularity": self.granularity,
            "scope": self.scope,
            "rewind_to": self.rewind_to,
            "stop_training": self.stop_training,
            "verbose": self.verbose,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def _reset(self) -> None:
        self.distances: list[tuple[int, float]] = []
        self.found_step: int | None = None
        self.masks: list | None = None
        self.snapshot: rewind.Snapshot | None = None
        self._previous: list | None = None
        self._recent: collections.deque = collections.deque(maxlen=self.window)
        self._step = 0
        self._epoch_base = 0
        self._last_check = 0

    @property
    def ticket(self) -> Ticket | None:
        """The Early-Bird ticket (masks + weights at `rewind_to`), or `None` before it is found."""
        if self.masks is None or self.snapshot is None:
            return None
        ticket = Ticket.from_model(
            self.model,
            weights=self.snapshot.model_values,
            metadata={
                "early_bird_step": self.found_step,
                "rewind_to": self.rewind_to,
                "rewind_step": self.snapshot.step,
                "target_sparsity": self.target_sparsity,
                "epsilon": self.epsilon,
                "window": self.window,
                "granularity": self.granularity,
                "scope": self.scope,
            },
        )
        ticket.masks = [np.array(m, copy=True) for m in self.masks]
        ticket.metadata["sparsity"] = ticket.sparsity
        return ticket

    # -- Keras hooks ----------------------------------------------------------

    def on_train_begin(self, logs=None):
        if not prune_wrappers(self.model):
            raise ValueError(
                f"EarlyBird: model '{self.model.name}' has no PruneWrapper layers. "
                "Wrap it first: `model = tfl.prunable(model)`."
            )
        self._reset()
        self._start = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        self._rewind_step = self._point.step(self.params.get("steps"))
        if self._rewind_step == 0:
            self.snapshot = rewind.Snapshot.capture(self.model, 0)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_base = self._step

    def on_train_batch_begin(self, batch, logs=None):
        # Only integers here: no tensor is read between checks.
        step = self._epoch_base + batch  # steps done so far in this fit()
        self._step = step
        if self.snapshot is None and self._rewind_step is not None and step >= self._rewind_step:
            self._capture(step)
        if (
            self.every != "epoch"
            and self.masks is None
            and step // self.every > self._last_check // self.every
        ):
            self._last_check = step
            self._check(step)

    def on_epoch_end(self, epoch, logs=None):
        self._step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)) - self._start
        if self.snapshot is None and self._rewind_step is not None and self._step >= self._rewind_step:
            self._capture(self._step)
        elif self.snapshot is None and self._point.unit == "ep" and epoch + 1 == self._point.amount:
            self.snapshot = rewind.Snapshot.capture(self.model, self._step)  # epoch size unknown
        if self.masks is None and (
            self.every == "epoch"
            # Steps mode: a check step that no batch followed (the end of training).
            or self._step // self.every > self._last_check // self.every
        ):
            self._last_check = self._step
            self._check(self._step)
        if logs is not None and self.distances:
            logs["mask_distance"] = self.distances[-1][1]

    # -- state, for training loops that stop and resume ------------------------------

    def get_state(self) -> dict:
        """The search so far: `step`, `last_check`, `distances` and `previous` (the last mask drawn).

        With `set_state`, a search stopped at a checkpoint continues as if
        it had not stopped (the experiment engine stores it in its run
        store). The ticket's weights (`snapshot`) are not part of it.
        """
        return {
            "step": int(self._step),
            "last_check": int(self._last_check),
            "distances": [(int(s), float(d)) for s, d in self.distances],
            "previous": None if self._previous is None else [np.array(m, copy=True) for m in self._previous],
        }

    def set_state(self, state: dict) -> None:
        """Continues the search `get_state` returned, after `on_train_begin` and `on_epoch_begin`.

        Steps count on from `state["step"]` (the data steps trained when the
        state was taken). If the stored distances already converged, the
        ticket's masks are the last ones drawn. `state["snapshot"]`
        (optional): the rewind point's `Snapshot`, if the search is past it.
        """
        step = int(state["step"])
        self._start = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)) - step
        self._step = self._epoch_base = step
        self._last_check = int(state["last_check"])
        self.distances = [(int(s), float(d)) for s, d in state["distances"]]
        self._recent = collections.deque((d for _, d in self.distances), maxlen=self.window)
        previous = state.get("previous")
        self._previous = None if previous is None else [np.asarray(m, dtype=bool) for m in previous]
        if state.get("snapshot") is not None:
            self.snapshot = state["snapshot"]
        if (
            self._previous is not None
            and len(self._recent) == self.window
            and max(self._recent) < self.epsilon
        ):
            self.found_step, self.masks = self._last_check, self._previous

    def _capture(self, step: int) -> None:
        if step > self._rewind_step:
            raise ValueError(
                f"EarlyBird could not take the rewind point '{self.rewind_to}': training "
                f"jumped past step {self._rewind_step} to {step} (steps_per_execution > 1). "
                "Use a rewind step that is a multiple of steps_per_execution."
            )
        self.snapshot = rewind.Snapshot.capture(self.model, step)

    # -- the search -------------------------------------------------------------

    def _check(self, step: int) -> None:
        masks = draw_masks(self.model, self.target_sparsity, self.granularity, self.scope)
        if self._previous is not None:
            distance = mask_distance(self._previous, masks)
            self.distances.append((step, distance))
            self._recent.append(distance)
            if self.verbose:
                print(f"[EarlyBird] step {step}: mask distance {distance:.4f}")
            if len(self._recent) == self.window and max(self._recent) < self.epsilon:
                if self.snapshot is None:
                    raise ValueError(
                        f"EarlyBird found the ticket at step {step}, before the rewind point "
                        f"'{self.rewind_to}'. Rewind earlier, or raise `window`."
                    )
                self.found_step = step
                self.masks = masks
                if self.verbose:
                    print(f"[EarlyBird] ticket found at step {step}")
                if self.stop_training:
                    self.model.stop_training = True
        self._previous = masks
