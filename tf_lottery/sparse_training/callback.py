"""`DynamicSparseTraining`: RigL and SET, sparse from the first step, inside `fit()`.

The network starts sparse (e.g. random masks with the ERK distribution,
`tf_lottery.pruning.distributions.prune_to_distribution`) and is trained with its
masks; every `delta_t` optimizer steps until `t_end` the callback rewires
each sparse weight tensor: it drops the `k` active weights of smallest
magnitude and grows `k` inactive ones, with `k = floor(f(t) * active)` and
the cosine drop fraction `f(t) = alpha / 2 * (1 + cos(pi * t / t_end))`.
RigL grows the inactive weights with the largest dense-gradient magnitude;
SET grows at random. Each tensor keeps its number of active weights, so the
sparsity never changes. Grown weights start at exactly 0 and their
optimizer slots (momentum, Adam moments) are reset to 0, as are those of
dropped weights.

Design: Keras callbacks do not see the training batch, and overriding
`train_step` would break `tf.distribute` and every other backend. So RigL's
dense gradient is computed by the callback, on the host's schedule, on a
batch it draws from `data` (the training data, or a dataset of it): the
same distribution as the current batch, though not the very batch of that
step as in the paper. The cost is one extra forward/backward pass per
`delta_t` steps, plus the mask update on the host; nothing is added to the
compiled train step (only an integer check per batch in Python).

Under `MirroredStrategy` the gradient batch is split between the replicas
and the gradients are all-reduced before selection; the masks are then
written from the host, so every replica holds the same masks.

Steps are counted from the optimizer's `iterations`, so training split over
several `fit()` calls continues the schedule (pass `t_end` as an int then).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tf_lottery.core import optimizer_slots
from tf_lottery.core.report import sparsity_report
from tf_lottery.core.walk import prune_wrappers
from tf_lottery.pruning.scorers.batch_gradients import BatchGradients
from tf_lottery.sparse_training import drop_grow
from tf_lottery.utils import validation

METHODS = ("rigl", "set")
# Keys this callback adds to every epoch's `logs` (so History, CSVLogger, TensorBoard show them).
LOG_KEYS = ("dst_sparsity", "dst_replaced", "dst_drop_fraction")


@keras.saving.register_keras_serializable(package="tf_lottery")
class DynamicSparseTraining(keras.callbacks.Callback):
    """Dynamic sparse training (RigL or SET) at a fixed sparsity in `fit()`.

    Args:
        method: str. `"rigl"` (grow by dense-gradient magnitude) or `"set"`
            (grow at random). Defaults to `"rigl"`.
        data: The data for RigL's dense gradient: a `tf.data.Dataset` of
            `(x, y)` batches (repeated as needed), or a tuple `(x, y)` of
            arrays from which a batch of `batch_size` examples is drawn at
            random for every update. Required for `"rigl"`, unused for
            `"set"`. Not part of `get_config()`.
        batch_size: int. Examples per gradient batch when `data` is arrays.
            Use the training batch size. Defaults to `32`.
        drop_fraction: float in (0, 1]. `alpha`, the fraction replaced at
            step 0. Defaults to `0.3`.
        delta_t: int >= 1. Steps between updates. Defaults to `100`.
        t_end: int >= 1 (optimizer step after which the masks are frozen)
            or float in (0, 1] (fraction of the steps of the `fit()` call,
            counted from the optimizer's step when it starts). Defaults to
            `0.75`.
        loss: Loss for the gradient: a name or a `keras.losses.Loss`
            (both kept in `get_config()`), or a function (which
            `get_config()` refuses). Defaults to the compiled loss.
        seed: int >= 0. Seeds the SET growth and the gradient batches drawn from
            arrays (per update step, so a resumed run draws the same).
            Defaults to `0`.
        verbose: int. `1` prints one line per update. Defaults to `0`.

    Every epoch's `logs` get `dst_sparsity` (the fraction of prunable
    weights that are inactive, constant by design), `dst_replaced` (weights
    regrown in that epoch) and `dst_drop_fraction` (the cosine fraction of
    the epoch's last update, 0 once the masks are frozen), so `History`,
    `ProgbarLogger` and, listed after this callback, `CSVLogger` and
    `TensorBoard` record them.

    Attributes:
        history: One dict per update: `step`, `drop_fraction`, `replaced`
            (`{"<layer>/<weight>": count}`), `grown`, `dropped` (totals).

    Example:

    ```python
    from tf_lottery.sparse_training.callback import DynamicSparseTraining
    from tf_lottery.pruning.distributions import prune_to_distribution

    model = tfl.prunable(make_model())
    prune_to_distribution(model, 0.9, "erk", seed=0)  # random ERK masks
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    rigl = DynamicSparseTraining("rigl", data=(x, y), batch_size=128)
    model.fit(x, y, batch_size=128, epochs=20, callbacks=[rigl])
    ```

    Reference:
        Evci et al., "Rigging the Lottery: Making All Tickets Winners", ICML
        2020, arXiv:1911.11134 (RigL); Mocanu et al., Nature Communications
        2018, arXiv:1707.04780 (SET).
    """

    def __init__(
        self,
        method: str = "rigl",
        data=None,
        *,
        batch_size: int = 32,
        drop_fraction: float = 0.3,
        delta_t: int = 100,
        t_end: int | float = 0.75,
        loss=None,
        seed: int = 0,
        verbose: int = 0,
    ):
        super().__init__()
        validation.check_choice("method", method, METHODS)
        if method == "rigl" and data is None:
            raise ValueError(
                "Invalid value for argument `data`: RigL grows weights by the dense gradient on a "
                "training batch, so it needs the training data: a `tf.data.Dataset` of (x, y) "
                "batches or a tuple (x, y) of arrays. Received: data=None."
            )
        if data is not None and not isinstance(data, (tf.data.Dataset, tuple)):
            raise ValueError(
                "Invalid value for argument `data`: expected a `tf.data.Dataset` of (x, y) batches "
                f"or a tuple (x, y) of arrays. Received: data of type {type(data).__name__}."
            )
        if isinstance(data, tuple) and len(data) != 2:
            raise ValueError(
                f"Invalid value for argument `data`: expected a tuple (x, y). Received a tuple of {len(data)}."
            )
        batch_size = validation.check_int("batch_size", batch_size, minimum=1)
        delta_t = validation.check_int("delta_t", delta_t, minimum=1)
        seed = validation.check_seed("seed", seed)
        drop_fraction = validation.check_fraction(
            "drop_fraction", drop_fraction, low_inclusive=False, high_inclusive=True
        )
        if isinstance(t_end, (float, np.floating)):
            if not 0.0 < t_end <= 1.0:
                raise ValueError(
                    "Invalid value for argument `t_end`: a float is a fraction of training, expected in "
                    f"(0, 1]. Received: t_end={t_end!r}."
                )
            t_end = float(t_end)
        else:
            t_end = validation.check_int("t_end", t_end, minimum=1)
        if loss is not None and not (isinstance(loss, (str, keras.losses.Loss)) or callable(loss)):
            raise validation.invalid_argument(
                "loss", loss, "a loss name, a keras.losses.Loss, a function `fn(y_true, y_pred)` or None"
            )
        self.method = method
        self.data = data
        self.batch_size = batch_size
        self.drop_fraction = drop_fraction
        self.delta_t = delta_t
        self.t_end = t_end
        self.loss = loss
        self.seed = seed
        self.verbose = verbose
        self.history: list[dict] = []

    def get_config(self) -> dict:
        """Every constructor argument but `data`; a `loss` function cannot be serialised and is refused."""
        loss = self.loss
        if isinstance(loss, keras.losses.Loss):
            loss = keras.saving.serialize_keras_object(loss)
        elif loss is not None and not isinstance(loss, str):
            raise ValueError(
                "DynamicSparseTraining.get_config(): argument `loss` is a function, which a config "
                f"cannot hold. Received: loss={loss!r}. Pass it by name (e.g. "
                "'sparse_categorical_crossentropy') or as a keras.losses.Loss instance, or leave it "
                "None to use the compiled loss."
            )
        return {
            "method": self.method,
            "batch_size": self.batch_size,
            "drop_fraction": self.drop_fraction,
            "delta_t": self.delta_t,
            "t_end": self.t_end,
            "loss": loss,
            "seed": self.seed,
            "verbose": self.verbose,
        }

    @classmethod
    def from_config(cls, config):
        """Rebuilds the callback; a RigL config needs `data` added: `{**config, "data": (x, y)}`."""
        config = dict(config)
        if isinstance(config.get("loss"), dict):
            config["loss"] = keras.saving.deserialize_keras_object(config["loss"])
        return cls(**config)

    # -- Keras hooks ----------------------------------------------------------

    def on_train_begin(self, logs=None):
        model = self.model
        optimizer = model.optimizer
        if getattr(optimizer, "use_ema", False):
            raise ValueError(
                "DynamicSparseTraining cannot keep pruned weights at zero with an optimizer that uses "
                "`use_ema=True`. Compile with `use_ema=False`."
            )
        self._wrappers = prune_wrappers(model)
        if not self._wrappers:
            raise ValueError(
                f"DynamicSparseTraining: model '{model.name}' has no PruneWrapper layers. Wrap it first "
                "(`tfl.prunable`) and give it sparse masks "
                "(`tf_lottery.pruning.distributions.prune_to_distribution`)."
            )
        if not optimizer.built:
            optimizer.build(model.trainable_variables)
        start = int(keras.ops.convert_to_numpy(optimizer.iterations))
        if isinstance(self.t_end, float):
            epochs, steps = self.params.get("epochs"), self.params.get("steps")
            if not epochs or not steps:
                raise ValueError(
                    "DynamicSparseTraining: `t_end` is a fraction of training but this fit() does not "
                    "know its number of steps (a dataset of unknown size). Pass `t_end` as an int step "
                    "or `steps_per_epoch` to fit()."
                )
            self._t_end = start + int(round(self.t_end * epochs * steps))
        else:
            self._t_end = int(self.t_end)
        self._step = self._epoch_start = start
        self._next_update = (start // self.delta_t + 1) * self.delta_t
        if self.method == "rigl":
            weights = [w for wr in self._wrappers for w in wr.pruned_weights]
            cached = getattr(self, "_gradients", None)
            # Kept across fit() calls on the same model: its tf.function is traced once.
            if (
                cached is None
                or cached.model is not model
                or list(map(id, cached.variables)) != list(map(id, weights))
            ):
                self._gradients = BatchGradients(model, weights, loss=self.loss)
            self._iterator = iter(self.data.repeat()) if isinstance(self.data, tf.data.Dataset) else None
        self.history = []
        self._sparsity = sparsity_report(model).sparsity
        self._epoch_replaced, self._last_fraction = 0, 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = self._step
        self._epoch_replaced = 0

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            # The same dict goes to the callbacks after this one (History, ProgbarLogger, ...).
            logs.update(
                {
                    "dst_sparsity": self._sparsity,
                    "dst_replaced": self._epoch_replaced,
                    "dst_drop_fraction": self._last_fraction if self._step < self._t_end else 0.0,
                }
            )

    def on_train_batch_end(self, batch, logs=None):
        self._step = self._epoch_start + batch + 1
        if self._step >= self._next_update:
            self._next_update = (self._step // self.delta_t + 1) * self.delta_t
            if self._step < self._t_end:
                self.update(self._step)

    # -- the update -------------------------------------------------------------

    def _gradient_batch(self, step: int):
        if self._iterator is not None:
            batch = next(self._iterator)
            return batch[0], batch[1]
        x, y = self.data
        rng = np.random.default_rng([self.seed, step, 1])
        rows = rng.choice(len(x), size=min(self.batch_size, len(x)), replace=False)
        return np.asarray(x)[rows], np.asarray(y)[rows]

    def update(self, step: int) -> dict:
        """Rewires every sparse weight tensor once, as at optimizer step `step`.

        Called by `fit()` every `delta_t` steps; callable directly (after
        `on_train_begin`, i.e. `set_model` and one `fit()`, or in tests).

        Returns:
            The record appended to `history`.
        """
        fraction = drop_grow.cosine_drop_fraction(step, self._t_end, self.drop_fraction)
        grads = None
        if self.method == "rigl":
            grads = self._gradients(*self._gradient_batch(step))
            if not all(np.isfinite(g).all() for g in grads):
                raise FloatingPointError(
                    f"DynamicSparseTraining: the dense gradient at step {step} is not finite; training "
                    "diverged. Lower the learning rate."
                )
        rng = np.random.default_rng([self.seed, step, 2])
        record = {"step": int(step), "drop_fraction": fraction, "replaced": {}, "grown": 0, "dropped": 0}
        optimizer = self.model.optimizer
        position = 0
        for wrapper in self._wrappers:
            new_masks, changes = [], []
            for weight, mask in zip(wrapper.pruned_weights, wrapper.get_masks()):
                active = int(np.count_nonzero(mask))
                grad = grads[position] if grads is not None else None
                position += 1
                if active in (0, mask.size):
                    new_masks.append(mask)
                    continue
                value = np.asarray(keras.ops.convert_to_numpy(weight.value))
                score = np.abs(grad) if grad is not None else rng.random(mask.shape)
                k = drop_grow.update_count(fraction, active)
                result = drop_grow.drop_grow(mask, np.abs(value), score, k)
                new_masks.append(result.mask)
                changes.append((weight, value, result))
                record["replaced"][f"{wrapper.layer.name}/{weight.name}"] = k
            wrapper.set_masks(new_masks)
            for weight, value, result in changes:
                # Grown weights start at 0 (they were pruned, so they already are).
                weight.assign(np.where(result.mask & ~result.grown, value, np.zeros((), value.dtype)))
                optimizer_slots.reset_slots(optimizer, weight, result.grown | result.dropped)
                record["grown"] += int(np.count_nonzero(result.grown))
                record["dropped"] += int(np.count_nonzero(result.dropped))
        self.history.append(record)
        self._epoch_replaced = getattr(self, "_epoch_replaced", 0) + record["grown"]
        self._last_fraction = fraction
        if self.verbose:
            print(
                f"[DynamicSparseTraining] step {step}: {self.method} replaced {record['grown']} weights "
                f"(drop fraction {fraction:.3f})"
            )
        return record
