"""One-shot magnitude pruning: the baseline that Wanda and SparseGPT are measured against."""

from __future__ import annotations

import keras
import numpy as np

from tf_lottery.pruning.oneshot import engine, selection

_CONV = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)


def _nm_matrix(t: engine.Target):
    """`(to_matrix, from_matrix)` along the weight's input dimension, or None."""
    if t.view is not None:
        return t.view.to_matrix, t.view.from_matrix
    layer = t.wrapper.layer
    shape = tuple(t.weight.shape)
    if isinstance(layer, _CONV) and t.weight is layer.kernel:
        # (*window, in_channels, filters): consecutive inputs of one window position stay consecutive.
        return (lambda a: np.asarray(a).reshape(-1, shape[-1])), (lambda a: np.asarray(a).reshape(shape))
    return None


def magnitude(
    model: keras.Model, sparsity: float, *, structure: str | None = None, verbose: int = 0
) -> engine.OneShotReport:
    """Prunes the lowest-magnitude weights of every prunable weight, in one shot.

    Unstructured, each weight loses `int(size * sparsity)` entries, the
    smallest `|w|` of the whole tensor (as the Wanda and SparseGPT papers'
    magnitude baseline, layer by layer). With `structure="N:M"`, the `M - N`
    smallest of every `M` consecutive inputs of each output unit go (Dense,
    EinsumDense and Conv kernels; other weights, such as embeddings, are
    skipped and listed in the report). Weights already pruned stay pruned
    and count towards the fraction. Needs no data.

    Args:
        model: A model with `PruneWrapper`s (see `tfl.prunable`).
        sparsity: Float in `[0, 1)`. With `structure`, must be `1 - N/M`.
        structure: None or `"N:M"`. Defaults to None.
        verbose: 1 prints one line per layer. Defaults to 0.

    Returns:
        A `OneShotReport`: the sparsity of each pruned weight, the skipped ones and why.

    Example:

    ```python
    model = tfl.prunable(keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)]))
    report = tfl.oneshot.magnitude(model, 0.5)
    ```

    Reference:
        Han et al., "Learning both Weights and Connections for Efficient Neural
        Networks", NeurIPS 2015, arXiv:1506.02626.
    """
    sparsity, nm = engine.check_common(sparsity, structure)
    items = engine.targets(model, needs_calibration=False)
    if nm is not None:
        for t in items:
            if _nm_matrix(t) is None:
                t.skip = f"N:M needs an input dimension; {type(t.wrapper.layer).__name__} has none here"
            elif t.view is None and tuple(t.weight.shape)[-2] % nm.m:
                raise ValueError(
                    f"Invalid value for argument `structure`: '{nm}' needs the input dimension of every "
                    f"pruned kernel to be a multiple of {nm.m}. Received layer '{t.wrapper.layer.name}' "
                    f"with {tuple(t.weight.shape)[-2]} inputs (weight '{t.weight.path}'). Leave it dense: "
                    f"`tfl.prunable(model, exclude=[{t.wrapper.layer.name!r}])`."
                )
        engine.check_structure_fits(items, nm)

    def prune_step(t: engine.Target, _hook):
        value = np.asarray(keras.ops.convert_to_numpy(t.weight.value))
        alive = np.asarray(t.wrapper.get_masks()[t.index], dtype=bool)
        if nm is None:
            return value, selection.whole(np.abs(value), alive, sparsity)
        to_matrix, from_matrix = _nm_matrix(t)
        pruned = selection.n_of_m(np.abs(to_matrix(value)), to_matrix(alive), nm)
        return value, from_matrix(pruned)

    return engine.run(model, items, "magnitude", sparsity, nm, prune_step, verbose=verbose)
