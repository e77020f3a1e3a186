"""Wanda: prune by weight magnitude times input activation norm, per output unit."""

from __future__ import annotations

import keras
import numpy as np

from tf_lottery.pruning.oneshot import engine, selection
from tf_lottery.utils import validation


def wanda(
    model: keras.Model,
    calibration_data,
    sparsity: float,
    *,
    structure: str | None = None,
    batch_size: int = 32,
    true_sequential: bool = False,
    verbose: int = 0,
) -> engine.OneShotReport:
    """Prunes by Wanda's score `|W_ij| * ||X_j||_2`, in one shot, with no weight update.

    `X_j` is input feature `j` of the layer over every calibration token. The
    scores are compared within each output unit (the paper's row of the
    weight, a column of a Keras kernel): each unit loses the
    `int(inputs * sparsity)` lowest-scored of its input weights. With
    `structure="N:M"` the `M - N` lowest of every `M` consecutive inputs of
    each unit go instead. Ties go to the lower input index.

    The calibration data run through the model block by block (a
    transformer layer, or a top-level layer of a plain net), each block on
    the outputs of the already-pruned blocks before it; the layers of one
    block are calibrated on the block's inputs before any of them is pruned,
    as the reference implementations do (`true_sequential=True`: each layer
    on the outputs of the block's earlier layers, already pruned; slower). The kernels of Dense and
    EinsumDense layers (also the projections inside attention layers) are
    pruned; other prunable weights (embeddings, convolutions, recurrent
    kernels) are left as they are and listed in the report's `skipped`.
    Weights already pruned stay pruned. If anything fails half-way, the
    model is left as it was.

    Args:
        model: A model with `PruneWrapper`s (see `tfl.prunable`).
        calibration_data: Inputs the model takes (no labels needed): a NumPy
            array or tensor, a dict / tuple of them (keras_hub models), or a
            batched `tf.data.Dataset` of `x` or `(x, y)`.
        sparsity: Float in `[0, 1)`. With `structure`, must be `1 - N/M`.
        structure: None or `"N:M"`. Defaults to None.
        batch_size: Samples per forward pass for array data. Defaults to 32.
        true_sequential: Bool. Calibrate each layer of a block on the block
            with its earlier layers already pruned (GPTQ's option), instead
            of all of them on the unpruned block. Defaults to False.
        verbose: 1 prints one line per layer. Defaults to 0.

    Returns:
        A `OneShotReport`.

    Example:

    ```python
    model = tfl.prunable(keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)]))
    x = np.random.default_rng(0).normal(size=(64, 8)).astype("float32")
    report = tfl.oneshot.wanda(model, x, 0.5)
    ```

    Reference:
        Sun, Liu, Bair & Kolter, "A Simple and Effective Pruning Approach for
        Large Language Models", ICLR 2024, arXiv:2306.11695.
    """
    sparsity, nm = engine.check_common(sparsity, structure)
    batch_size = validation.check_int("batch_size", batch_size, minimum=1)
    true_sequential = validation.check_bool("true_sequential", true_sequential)
    items = engine.targets(model, needs_calibration=True)
    engine.check_structure_fits(items, nm)

    def prune_step(t: engine.Target, hook):
        value = np.asarray(keras.ops.convert_to_numpy(t.weight.value))
        alive = t.view.to_matrix(np.asarray(t.wrapper.get_masks()[t.index], dtype=bool))
        scores = scores_of(t.view.to_matrix(value), hook.stats)
        pruned = (
            selection.per_output(scores, alive, sparsity)
            if nm is None
            else selection.n_of_m(scores, alive, nm)
        )
        return value, t.view.from_matrix(pruned)

    return engine.run(
        model,
        items,
        "wanda",
        sparsity,
        nm,
        prune_step,
        calibration_data,
        batch_size,
        gram=False,
        verbose=verbose,
        true_sequential=true_sequential,
    )


def scores_of(matrix: np.ndarray, sum_of_squares: np.ndarray) -> np.ndarray:
    """Wanda's scores of an `(inputs, outputs)` kernel: `|W_ij| * ||X_j||_2`."""
    return np.abs(np.asarray(matrix, dtype=np.float64)) * np.sqrt(sum_of_squares)[:, None]
