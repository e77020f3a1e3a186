"""`DynamicSparseTraining`: RigL and SET, sparse from the first step, inside `fit()`.

The network starts sparse (e.g. random masks with the ERK distribution,
`tf_lottery.pruning.distributions.prune_to_distribution`) and is trained with its
masks; every `delta_t` optimizer steps from `begin_step` until `t_end` the
callback rewires each sparse weight tensor: it drops the `k` active weights
of smallest magnitude and grows `k` inactive ones, with `k = floor(f(t) *
active)` and the drop fraction `f(t)` annealed from `drop_fraction` to 0
(cosine by default, `tf_lottery.sparse_training.schedule`). RigL grows the
inactive weights with the largest dense-gradient magnitude; SET grows at
random. Each tensor keeps its number of active weights, so the sparsity never
changes. Grown weights start at 0 (or as `grow_init` says) and their optimizer
slots (momentum, Adam moments) are reset to 0, as are those of dropped
weights.

RigL's gradient is, by default, the dense gradient of the update step's own
training batch, as in the paper: it is captured inside the compiled train
step (`tf_lottery.sparse_training.gradient_capture`), on update steps only,
with no extra forward/backward pass and no per-step host transfer. The
former mode, a gradient computed by the callback on a batch it draws from
`data`, remains as `gradient="drawn_batch"`.

Under `MirroredStrategy` the gradient is the sum over replicas of the
replica-scaled loss's gradients (what the optimizer sees); the masks are
then written from the host, so every replica holds the same masks.

Steps are counted from the optimizer's `iterations`, so training split over
several `fit()` calls continues the schedule (pass `t_end` as an int then).
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from tf_lottery.core import optimizer_slots
from tf_lottery.core.naming import weight_names
from tf_lottery.core.report import sparsity_report
from tf_lottery.core.walk import prune_wrappers
from tf_lottery.pruning.scorers.batch_gradients import BatchGradients
from tf_lottery.sparse_training import drop_grow, schedule
from tf_lottery.sparse_training import grow_init as grow_init_module
from tf_lottery.sparse_training.gradient_capture import TrainBatchGradients
from tf_lottery.utils import validation

METHODS = ("rigl", "set")
GRADIENTS = ("train_batch", "drawn_batch")
# Keys this callback adds to every epoch's `logs` (so History, CSVLogger, TensorBoard show them).
LOG_KEYS = ("dst_sparsity", "dst_replaced", "dst_drop_fraction")


@keras.saving.register_keras_serializable(package="tf_lottery")
class DynamicSparseTraining(keras.callbacks.Callback):
    """Dynamic sparse training (RigL or SET) at a fixed sparsity in `fit()`.

    Args:
        method: str. `"rigl"` (grow by dense-gradient magnitude) or `"set"`
            (grow at random). Defaults to `"rigl"`.
        data: For RigL with `gradient="drawn_batch"` (refused with
            `"train_batch"`, unused by SET): a `tf.data.Dataset` of
            `(x, y)` batches (repeated as needed), or a tuple `(x, y)` of
            arrays from which a batch of `batch_size` examples is drawn at
            random for every update. Not part of `get_config()`.
        gradient: str. RigL's gradient: `"train_batch"` (the dense gradient
            of the update step's own training batch, captured inside the
            train step, as in the paper) or `"drawn_batch"` (computed by the
            callback on a batch drawn from `data`). Defaults to
            `"train_batch"`.
        batch_size: int or None. Examples per drawn batch when `data` is
            arrays. `None` takes the fit batch size, found as
            `ceil(len(x) / steps_per_epoch)` of the `data` arrays (exact
            when they are the training arrays and their size is a multiple
            of the batch size; pass it otherwise). Defaults to `None`.
        drop_fraction: float in (0, 1]. `alpha`, the fraction replaced at
            `begin_step`. Defaults to `0.3`.
        drop_fraction_anneal: str. `"cosine"`, `"constant"`, `"linear"` or
            `"exponential_<k>"` (see `schedule`). Defaults to `"cosine"`.
        delta_t: int >= 1. Steps between updates (rigl's `update_freq`).
            Defaults to `100`.
        begin_step: int >= 0. First step at which the masks may change;
            updates fall on `begin_step + n * delta_t` (step 0 excluded).
            Defaults to `0`.
        t_end: int > `begin_step` (the optimizer step from which the masks
            are frozen: rigl's `end_step`, exclusive) or float in (0, 1]
            (fraction of the steps of the `fit()` call, counted from the
            optimizer's step when it starts). Defaults to `0.75`.
        grow_init: str. Value of grown weights: `"zeros"`,
            `"random_normal"` or `"initial_value"` (see `grow_init`).
            Defaults to `"zeros"`.
        initial_values: For `grow_init="initial_value"`: one array per
            pruned weight, in `prune_wrappers` order, taken before pruning
            (`grow_init.snapshot_initial_values`). Not part of `get_config()`.
        reset_slots: bool. Zero the optimizer slots of grown and dropped
            weights. Defaults to `True`.
        loss: For RigL with `gradient="drawn_batch"` (refused with
            `"train_batch"`, unused by SET): a name or a
            `keras.losses.Loss` (both kept in `get_config()`), or a function
            (which `get_config()` refuses). Defaults to the compiled loss.
        seed: int >= 0. Seeds the SET growth, `random_normal` growth and the
            gradient batches drawn from arrays (per update step, so a
            resumed run draws the same). Defaults to `0`.
        verbose: int. `1` prints one line per update. Defaults to `0`.

    Every epoch's `logs` get `dst_sparsity` (the fraction of prunable
    weights that are inactive, constant by design), `dst_replaced` (weights
    regrown in that epoch) and `dst_drop_fraction` (the fraction of the
    epoch's last update, 0 once the masks are frozen), so `History`,
    `ProgbarLogger` and, listed after this callback, `CSVLogger` and
    `TensorBoard` record them.

    With `steps_per_execution=k > 1`, Keras calls back every `k` steps, so
    `delta_t` and `begin_step` must be multiples of `k` (refused otherwise).

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
    rigl = DynamicSparseTraining("rigl", delta_t=100, t_end=0.75)
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
        gradient: str = "train_batch",
        batch_size: int | None = None,
        drop_fraction: float = 0.3,
        drop_fraction_anneal: str = "cosine",
        delta_t: int = 100,
        begin_step: int = 0,
        t_end: int | float = 0.75,
        grow_init: str = "zeros",
        initial_values=None,
        reset_slots: bool = True,
        loss=None,
        seed: int = 0,
        verbose: int = 0,
    ):
        super().__init__()
        validation.check_choice("method", method, METHODS)
        validation.check_choice("gradient", gradient, GRADIENTS)
        drawn = method == "rigl" and gradient == "drawn_batch"
        if drawn and data is None:
            raise ValueError(
                "Invalid value for argument `data`: gradient='drawn_batch' computes RigL's gradient on "
                "a batch drawn from the training data, so it needs it: a `tf.data.Dataset` of (x, y) "
                "batches or a tuple (x, y) of arrays. Received: data=None. Or use "
                "gradient='train_batch' (the default), which needs no data."
            )
        captured = method == "rigl" and gradient == "train_batch"
        if data is not None and captured:
            raise ValueError(
                "Invalid value for argument `data`: RigL with gradient='train_batch' (the default) "
                "takes the gradient of the training step's own batch and draws no batch. Received data "
                "with gradient='train_batch'. Drop `data`, or pass gradient='drawn_batch' to compute "
                "the gradient on batches drawn from it."
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
        if batch_size is not None:
            batch_size = validation.check_int("batch_size", batch_size, minimum=1)
        delta_t = validation.check_int("delta_t", delta_t, minimum=1)
        begin_step = validation.check_int("begin_step", begin_step, minimum=0)
        seed = validation.check_seed("seed", seed)
        drop_fraction = validation.check_fraction(
            "drop_fraction", drop_fraction, low_inclusive=False, high_inclusive=True
        )
        schedule.parse_anneal(drop_fraction_anneal)
        validation.check_choice("grow_init", grow_init, grow_init_module.GROW_INITS)
        reset_slots = validation.check_bool("reset_slots", reset_slots)
        if isinstance(t_end, (float, np.floating)):
            if not 0.0 < t_end <= 1.0:
                raise ValueError(
                    "Invalid value for argument `t_end`: a float is a fraction of training, expected in "
                    f"(0, 1]. Received: t_end={t_end!r}."
                )
            t_end = float(t_end)
        else:
            t_end = validation.check_int("t_end", t_end, minimum=begin_step + 1)
        if loss is not None and captured:
            raise ValueError(
                "Invalid value for argument `loss`: RigL with gradient='train_batch' (the default) "
                "uses the gradient of the loss that fit() trains with. Received: "
                f"loss={loss!r} with gradient='train_batch'. Drop `loss`, or pass "
                "gradient='drawn_batch' to compute the gradient of this loss on drawn batches."
            )
        if loss is not None and not (isinstance(loss, (str, keras.losses.Loss)) or callable(loss)):
            raise validation.invalid_argument(
                "loss", loss, "a loss name, a keras.losses.Loss, a function `fn(y_true, y_pred)` or None"
            )
        if grow_init == "initial_value":
            if initial_values is None:
                raise ValueError(
                    "Invalid value for argument `initial_values`: grow_init='initial_value' needs the "
                    "weights' values before pruning. Received: initial_values=None. Take them with "
                    "`tf_lottery.sparse_training.grow_init.snapshot_initial_values(model)` before pruning."
                )
            initial_values = [np.asarray(v) for v in initial_values]
        elif initial_values is not None:
            raise ValueError(
                "Invalid value for argument `initial_values`: it is used only with "
                f"grow_init='initial_value'. Received initial values with grow_init={grow_init!r}."
            )
        self.method = method
        self.data = data
        self.gradient = gradient
        self.batch_size = batch_size
        self.drop_fraction = drop_fraction
        self.drop_fraction_anneal = drop_fraction_anneal
        self.delta_t = delta_t
        self.begin_step = begin_step
        self.t_end = t_end
        self.grow_init = grow_init
        self.initial_values = initial_values
        self.reset_slots = reset_slots
        self.loss = loss
        self.seed = seed
        self.verbose = verbose
        self.history: list[dict] = []

    def get_config(self) -> dict:
        """Every constructor argument but `data` and `initial_values`; a `loss` function is refused."""
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
            "gradient": self.gradient,
            "batch_size": self.batch_size,
            "drop_fraction": self.drop_fraction,
            "drop_fraction_anneal": self.drop_fraction_anneal,
            "delta_t": self.delta_t,
            "begin_step": self.begin_step,
            "t_end": self.t_end,
            "grow_init": self.grow_init,
            "reset_slots": self.reset_slots,
            "loss": loss,
            "seed": self.seed,
            "verbose": self.verbose,
        }

    @classmethod
    def from_config(cls, config):
        """Rebuilds the callback; add what the config cannot hold: `{**config, "data": (x, y)}`."""
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
        weights = [w for wr in self._wrappers for w in wr.pruned_weights]
        self._check_initial_values(weights)
        per_execution = int(getattr(model, "steps_per_execution", 1) or 1)
        if per_execution > 1 and (self.delta_t % per_execution or self.begin_step % per_execution):
            raise ValueError(
                f"DynamicSparseTraining: the model runs steps_per_execution={per_execution} steps per "
                f"call, so Keras calls back only every {per_execution} steps and the update steps "
                f"(begin_step={self.begin_step} + n * delta_t={self.delta_t}) would be missed. Make "
                f"`delta_t` and `begin_step` multiples of {per_execution}."
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
        self._next_update = self._following_update(start)
        self._captured = None
        if self.method == "rigl" and self.gradient == "train_batch":
            self._prepare_capture(model, weights)
        elif self.method == "rigl":
            cached = getattr(self, "_gradients", None)
            # Kept across fit() calls on the same model: its tf.function is traced once.
            if (
                cached is None
                or cached.model is not model
                or list(map(id, cached.variables)) != list(map(id, weights))
            ):
                self._gradients = BatchGradients(model, weights, loss=self.loss)
            self._iterator = iter(self.data.repeat()) if isinstance(self.data, tf.data.Dataset) else None
            self._drawn_size = self.batch_size or self._fit_batch_size()
        self.history = []
        self._sparsity = sparsity_report(model).sparsity
        self._epoch_replaced, self._last_fraction = 0, 0.0

    def on_train_end(self, logs=None):
        capture = getattr(self, "_capture", None)
        if capture is not None:
            capture.arm(-1)

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
        if self._next_update is None or self._step < self._next_update:
            return
        if self._step > self._next_update:
            raise ValueError(
                f"DynamicSparseTraining missed the update at step {self._next_update}: training jumped "
                f"to step {self._step} (steps_per_execution > 1). Make `delta_t` and `begin_step` "
                "multiples of steps_per_execution."
            )
        if self.method == "rigl" and self.gradient == "train_batch":
            self._captured = (self._step, self._capture.take())
        self._next_update = self._following_update(self._step)
        if self.method == "rigl" and self.gradient == "train_batch":
            self._capture.arm(-1 if self._next_update is None else self._next_update)
        self.update(self._step)

    # -- helpers ---------------------------------------------------------------

    def _following_update(self, step: int) -> int | None:
        return schedule.next_update_step(step, self.begin_step, self._t_end, self.delta_t)

    def _check_initial_values(self, weights) -> None:
        if self.initial_values is None:
            return
        shapes = [tuple(w.shape) for w in weights]
        given = [tuple(v.shape) for v in self.initial_values]
        if given != shapes:
            raise ValueError(
                "Invalid value for argument `initial_values`: expected one array per pruned weight, of "
                f"shapes {shapes}. Received shapes {given}. Take them from this model with "
                "`grow_init.snapshot_initial_values(model)` before pruning."
            )

    def _prepare_capture(self, model, weights) -> None:
        capture = getattr(self, "_capture", None)
        if (
            capture is None
            or capture.released
            or capture.model is not model
            or list(map(id, capture.weights)) != list(map(id, weights))
        ):
            if capture is not None:
                capture.release()
            self._capture = TrainBatchGradients(model, weights, model.optimizer.iterations)
            self._traced_with_capture = None
        # A train function traced before the hooks existed does not capture.
        if model.train_function is None or model.train_function is not self._traced_with_capture:
            model.make_train_function(force=True)
            self._traced_with_capture = model.train_function
        self._capture.take()
        self._capture.arm(-1 if self._next_update is None else self._next_update)

    def _fit_batch_size(self) -> int:
        if self._iterator is not None:
            return 0
        steps = self.params.get("steps")
        if not steps:
            raise ValueError(
                "DynamicSparseTraining: `batch_size=None` takes the fit batch size from the number of "
                "steps per epoch, which this fit() does not know. Pass `batch_size`."
            )
        return math.ceil(len(self.data[0]) / steps)

    def _gradient_batch(self, step: int):
        if self._iterator is not None:
            batch = next(self._iterator)
            return batch[0], batch[1]
        x, y = self.data
        rng = np.random.default_rng([self.seed, step, 1])
        rows = rng.choice(len(x), size=min(self._drawn_size, len(x)), replace=False)
        return np.asarray(x)[rows], np.asarray(y)[rows]

    def _rigl_gradients(self, step: int) -> list[np.ndarray]:
        if self.gradient == "drawn_batch":
            return self._gradients(*self._gradient_batch(step))
        captured = getattr(self, "_captured", None)
        if captured is None or captured[0] != step:
            raise ValueError(
                f"DynamicSparseTraining.update({step}): no training-batch gradient was captured for step "
                f"{step}. With gradient='train_batch' the gradient is captured inside fit() on the update "
                "steps; call update() from fit() (it does), or use gradient='drawn_batch' with `data`."
            )
        grads = captured[1]
        if not any(np.any(g) for g in grads):
            raise RuntimeError(
                f"DynamicSparseTraining: the gradient captured at step {step} is zero everywhere: the "
                "train step did not run the capture (a train function traced elsewhere?) or the loss "
                "has no gradient. Use gradient='drawn_batch' to compute it on a drawn batch."
            )
        return grads

    # -- the update -------------------------------------------------------------

    def update(self, step: int) -> dict:
        """Rewires every sparse weight tensor once, as at optimizer step `step`.

        Called by `fit()` on the update steps; callable directly (after
        `on_train_begin`, i.e. `set_model` and one `fit()`, or in tests) for
        SET and for RigL with `gradient="drawn_batch"`.

        Returns:
            The record appended to `history`.
        """
        fraction = schedule.drop_fraction(
            step, self.drop_fraction, self.begin_step, self._t_end, self.drop_fraction_anneal
        )
        grads = None
        if self.method == "rigl":
            grads = self._rigl_gradients(step)
            if not all(np.isfinite(g).all() for g in grads):
                raise FloatingPointError(
                    f"DynamicSparseTraining: the dense gradient at step {step} is not finite; training "
                    "diverged. Lower the learning rate, or check the labels and inputs (e.g. labels out "
                    "of range for the loss)."
                )
        rng = np.random.default_rng([self.seed, step, 2])
        record = {"step": int(step), "drop_fraction": fraction, "replaced": {}, "grown": 0, "dropped": 0}
        optimizer = self.model.optimizer
        position = 0
        names = weight_names(self.model)
        for wrapper in self._wrappers:
            new_masks, changes = [], []
            for weight, mask in zip(wrapper.pruned_weights, wrapper.get_masks()):
                active = int(np.count_nonzero(mask))
                grad = grads[position] if grads is not None else None
                initial = self.initial_values[position] if self.initial_values is not None else None
                index = position
                position += 1
                if active in (0, mask.size):
                    new_masks.append(mask)
                    continue
                value = np.asarray(keras.ops.convert_to_numpy(weight.value))
                score = np.abs(grad) if grad is not None else rng.random(mask.shape)
                k = drop_grow.update_count(fraction, active)
                result = drop_grow.drop_grow(mask, np.abs(value), score, k)
                new_masks.append(result.mask)
                start = grow_init_module.grow_values(
                    self.grow_init, value, np.random.default_rng([self.seed, step, 3, index]), initial
                )
                changes.append((weight, value, result, start))
                record["replaced"][names[id(weight)]] = k
            wrapper.set_masks(new_masks)
            for weight, value, result, start in changes:
                kept = np.where(result.mask & ~result.grown, value, np.zeros((), value.dtype))
                weight.assign(np.where(result.grown, start, kept))
                if self.reset_slots:
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
