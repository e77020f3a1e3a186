"""Linear mode connectivity: error along the line between two trained networks.

Two copies of a network trained from the same point with different data
orders are *stable* when the error does not rise along the straight line
between their weights. Frankle et al. (2020) measure the *error barrier*:
the largest error on the path minus the mean of the two end points' errors,
with the path evaluated at 30 evenly spaced points. The L2 distance between
the two copies' weights is the stability measure of Frankle et al. (2019).

BatchNorm: interpolated weights do not come with matching moving
statistics. Pass `batch_statistics_data` to `linear_path` to recompute them
on training data at every point (an exact average over the given batches, in
training mode), as is usual for mode connectivity; without it the moving
statistics are interpolated like every other variable. Networks without
BatchNorm need neither.

Example:

```python
path = linear_path(model, weights_a, weights_b, {"test": (x_test, y_test)})
barrier = error_barrier(path["test"])
```

Reference:
    Frankle, Dziugaite, Roy & Carbin, "Linear Mode Connectivity and the
    Lottery Ticket Hypothesis", ICML 2020, arXiv:1912.05671; Frankle,
    Dziugaite, Roy & Carbin, "Stabilizing the Lottery Ticket Hypothesis",
    2019, arXiv:1903.01611.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import keras
import numpy as np

from tf_lottery import _keras_compat
from tf_lottery.core.walk import model_variables, pruning_target


def model_values(model) -> list[np.ndarray]:
    """Copies of every model variable (not the masks), in `model_variables` order."""
    return [np.array(keras.ops.convert_to_numpy(v.value), copy=True) for v in model_variables(model)]


def set_model_values(model, values: Sequence[np.ndarray]) -> None:
    """Assigns `values` to the model variables (masked positions stay 0)."""
    variables = model_variables(model)
    if len(variables) != len(values):
        raise ValueError(
            f"Invalid value for argument `values`: model '{model.name}' has {len(variables)} variables. "
            f"Received {len(values)} arrays."
        )
    for variable, value in zip(variables, values):
        variable.assign(value)


def interpolate(values_a: Sequence[np.ndarray], values_b: Sequence[np.ndarray], alpha: float) -> list:
    """`(1 - alpha) * a + alpha * b` for every floating-point array (others are taken from `a`)."""
    if len(values_a) != len(values_b):
        raise ValueError(f"Cannot interpolate {len(values_a)} arrays with {len(values_b)}.")
    result = []
    for a, b in zip(values_a, values_b):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape:
            raise ValueError(f"Cannot interpolate arrays of shapes {a.shape} and {b.shape}.")
        result.append(
            ((1.0 - alpha) * a + alpha * b).astype(a.dtype) if np.issubdtype(a.dtype, np.floating) else a
        )
    return result


def error_barrier(errors: Sequence[float]) -> float:
    """`max(errors) - (errors[0] + errors[-1]) / 2`: the instability of a path.

    Args:
        errors: Errors along the path, from one end point to the other.

    Returns:
        The barrier height; 0 for a flat path, and never below 0 since the
        maximum includes the end points.
    """
    errors = np.asarray(errors, dtype=float)
    if errors.size < 2:
        raise ValueError(
            f"Invalid value for argument `errors`: need at least the two end points. Received {errors.size}."
        )
    return float(errors.max() - 0.5 * (errors[0] + errors[-1]))


def l2_distance(values_a: Sequence[np.ndarray], values_b: Sequence[np.ndarray], masks=None) -> float:
    """Euclidean distance between two lists of arrays (optionally only where `masks` is True)."""
    total = 0.0
    for index, (a, b) in enumerate(zip(values_a, values_b)):
        difference = np.asarray(a, np.float64) - np.asarray(b, np.float64)
        if masks is not None and masks[index] is not None:
            difference = difference[np.asarray(masks[index], bool)]
        total += float(np.sum(difference * difference))
    return float(np.sqrt(total))


def _batches(data, batch_size: int):
    if isinstance(data, tuple):
        x, y = data
        for start in range(0, len(x), batch_size):
            yield np.asarray(x[start : start + batch_size]), np.asarray(y[start : start + batch_size])
    else:
        for batch in data:
            yield batch[0], batch[1]


def error_rate(model, data, batch_size: int = 1000) -> float:
    """Top-1 classification error of `model` on `(x, y)` arrays or a dataset of batches."""
    wrong = count = 0
    for x, y in _batches(data, batch_size):
        logits = np.asarray(model(x, training=False))
        y = np.asarray(y).reshape(-1)
        wrong += int(np.count_nonzero(np.argmax(logits, axis=-1) != y))
        count += y.size
    if count == 0:
        raise ValueError("Cannot compute an error rate on an empty dataset.")
    return wrong / count


def _batch_norm_layers(model) -> list:
    target = pruning_target(model)
    return [
        layer
        for layer in _keras_compat.flatten_layers(target)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]


def recompute_batch_statistics(model, data, batch_size: int = 1000) -> int:
    """Resets BatchNorm moving statistics to the average over `data` (training mode).

    Returns:
        The number of BatchNorm layers updated (0: nothing to do).
    """
    layers = _batch_norm_layers(model)
    if not layers:
        return 0
    momenta = [layer.momentum for layer in layers]
    try:
        for layer in layers:
            layer.moving_mean.assign(np.zeros(layer.moving_mean.shape, "float32"))
            layer.moving_variance.assign(np.ones(layer.moving_variance.shape, "float32"))
        for seen, (x, _) in enumerate(_batches(data, batch_size)):
            # moving = m * moving + (1 - m) * batch with m = n / (n + 1): the running mean.
            for layer in layers:
                layer.momentum = seen / (seen + 1.0)
            model(x, training=True)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    return len(layers)


def linear_path(
    model,
    values_a: Sequence[np.ndarray],
    values_b: Sequence[np.ndarray],
    datasets: Mapping[str, object],
    points: int = 30,
    batch_statistics_data=None,
) -> dict:
    """Errors of the networks `(1 - a) * A + a * B` for `points` values of `a` in [0, 1].

    The model is left holding `values_a`.

    Args:
        model: A model of the architecture of A and B (same masks).
        values_a: Values of A's model variables (see `model_values`).
        values_b: Values of B's model variables.
        datasets: `{name: (x, y) or dataset of batches}`, e.g. `{"train":
            ..., "test": ...}`.
        points: int >= 2. Evenly spaced points, end points included.
            Defaults to `30` (the paper's).
        batch_statistics_data: Optional training data to recompute BatchNorm
            statistics on at every point. Defaults to `None`.

    Returns:
        `{"alpha": [...], name: [error at each alpha], ...}`.
    """
    if isinstance(points, bool) or not isinstance(points, int) or points < 2:
        raise ValueError(
            f"Invalid value for argument `points`: expected an int >= 2. Received: points={points!r}."
        )
    alphas = np.linspace(0.0, 1.0, points)
    result = {"alpha": [float(a) for a in alphas], **{name: [] for name in datasets}}
    try:
        for alpha in alphas:
            set_model_values(model, interpolate(values_a, values_b, float(alpha)))
            if batch_statistics_data is not None:
                recompute_batch_statistics(model, batch_statistics_data)
            for name, data in datasets.items():
                result[name].append(error_rate(model, data))
    finally:
        set_model_values(model, values_a)
    return result
