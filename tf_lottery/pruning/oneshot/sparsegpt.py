"""SparseGPT: prune a layer in one shot and reconstruct its output from the inverse Hessian.

For a linear layer `y = x W` with calibration inputs `X`, SparseGPT removes
weights column block by column block of the inputs, chosen by the saliency
`w^2 / [H^-1]_ii^2`, and moves each removed weight's error onto the inputs not
yet visited (the Optimal Brain Surgeon update), with `H = 2 X^T X / n`.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tf_lottery.pruning.oneshot import engine, selection
from tf_lottery.pruning.structure import NMStructure
from tf_lottery.utils import validation


def hessian(gram: np.ndarray, samples: int) -> np.ndarray:
    """`H = 2 X^T X / n` from the Gram matrix `X^T X` and the number of calibration samples `n`."""
    return 2.0 * gram / max(samples, 1)


_SOLVE_COLUMNS = 512  # columns of the identity solved at a time (12 MB at 3072 inputs)


def inverse_hessian_factor(
    h: np.ndarray, percdamp: float, name: str, overwrite: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """The upper Cholesky factor of `(H + damp I)^-1`, and the dead inputs.

    Inputs whose calibration values are all zero (`H_ii == 0`) are "dead":
    `H_ii` is set to 1 and their weights are zeroed, as the reference does.
    `damp = percdamp * mean(diag H)` keeps a rank-deficient `H` invertible.
    With `overwrite`, `h` (float64) is dampened in place and may be released
    by the caller: at 3072 inputs every `inputs x inputs` float64 copy is 75
    MB, and this holds two at once (`H`'s factor and
    the inverse, written into `H`'s buffer), where a plain version held seven.
    """
    h = np.asarray(h, dtype=np.float64) if overwrite else np.array(h, dtype=np.float64)
    dead = np.diag(h) == 0
    h[dead, dead] = 1.0
    h[np.diag_indices_from(h)] += percdamp * np.mean(np.diag(h))
    size = len(h)
    try:
        # The reference computes chol(H^-1) from H^-1. The same factor comes from one Cholesky
        # factorisation and one triangular inverse: with J the reversal, J H J = K K^T gives
        # H = P P^T for the upper P = J K J, so H^-1 = P^-T P^-1 and the upper factor is
        # P^-1 = J K^-1 J (about 3x less work at 3072 inputs, equal to ~1e-14).
        flipped = np.linalg.cholesky(h[::-1, ::-1])
    except np.linalg.LinAlgError as error:
        raise ValueError(
            f"SparseGPT: the Hessian of the calibration inputs of '{name}' is not positive "
            f"definite even after dampening (percdamp={percdamp}). Pass a larger `percdamp` "
            f"(e.g. 0.1), or check the calibration data for non-finite values. ({error})"
        ) from None
    # K^-1, written column block by column block into H's own buffer (H is not needed
    # again): the float64 matrices held at once are H's factor and this one.
    factor = tf.convert_to_tensor(flipped)
    del flipped
    inverse = h
    for start in range(0, size, _SOLVE_COLUMNS):
        stop = min(start + _SOLVE_COLUMNS, size)
        rhs = np.zeros((size, stop - start))
        rhs[start:stop] = np.eye(stop - start)
        inverse[:, start:stop] = tf.linalg.triangular_solve(factor, rhs, lower=True).numpy()
    del factor
    for row in range(size - 1):  # K^-1 is lower triangular: clear what the solve left above it
        inverse[row, row + 1 :] = 0.0
    upper = inverse[::-1, ::-1]  # J K^-1 J, a view
    if not np.all(np.isfinite(upper)):
        raise ValueError(
            f"SparseGPT: the inverse Hessian of '{name}' is not finite. Check the calibration "
            "data for non-finite values, or pass a larger `percdamp`."
        )
    return upper, dead


def prune_matrix(
    weight: np.ndarray,
    h: np.ndarray,
    alive: np.ndarray,
    sparsity: float,
    structure: NMStructure | None,
    *,
    blocksize: int = 128,
    percdamp: float = 0.01,
    name: str = "layer",
    overwrite_h: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """SparseGPT on one `(inputs, outputs)` matrix; returns `(new weight, pruned positions)`.

    Args:
        weight: `(inputs, outputs)` array (the Keras kernel layout).
        h: `(inputs, inputs)` Hessian `2 X^T X / n`.
        alive: Boolean `(inputs, outputs)`, the current mask; pruned positions stay pruned.
        sparsity: Fraction pruned in every block of `blocksize` inputs (unstructured).
        structure: `N:M` (the `M - N` lowest of each `M` inputs per output) or None.
        blocksize: Inputs per block (masks chosen and updates applied lazily per block).
        percdamp: Dampening, a fraction of the mean Hessian diagonal.
        name: For error messages.
        overwrite_h: `h` may be changed in place (saves copies of it).
    """
    # The reference works on `W` as (outputs, inputs); the transpose keeps its loops readable.
    w = np.where(alive, np.asarray(weight, dtype=np.float64), 0.0).T.copy()
    alive_t = np.asarray(alive, dtype=bool).T
    hinv, dead = inverse_hessian_factor(h, percdamp, name, overwrite=overwrite_h)
    w[:, dead] = 0.0
    columns = w.shape[1]
    pruned = np.zeros_like(alive_t)
    for i1 in range(0, columns, blocksize):
        i2 = min(i1 + blocksize, columns)
        w1 = w[:, i1:i2].copy()
        q1 = np.zeros_like(w1)
        err1 = np.zeros_like(w1)
        hinv1 = hinv[i1:i2, i1:i2]
        d = np.diag(hinv1)
        if structure is None:
            # Adaptive mask selection: the lowest saliencies over the whole block (all outputs).
            mask1 = selection.whole(w1**2 / d**2, alive_t[:, i1:i2], sparsity)
        else:
            mask1 = ~alive_t[:, i1:i2]
        for i in range(i2 - i1):
            if structure is not None and i % structure.m == 0:
                m = structure.m
                scores = (w1[:, i : i + m] ** 2 / d[i : i + m] ** 2).T
                mask1[:, i : i + m] |= selection.n_of_m(
                    scores, alive_t[:, i1 + i : i1 + i + m].T, structure
                ).T
            column = w1[:, i]
            q = np.where(mask1[:, i], 0.0, column)
            q1[:, i] = q
            err = (column - q) / hinv1[i, i]
            w1[:, i:] -= np.outer(err, hinv1[i, i:])
            err1[:, i] = err
        w[:, i1:i2] = q1
        pruned[:, i1:i2] = mask1
        w[:, i2:] -= err1 @ hinv[i1:i2, i2:]
    return w.T, pruned.T


def sparsegpt(
    model: keras.Model,
    calibration_data,
    sparsity: float,
    *,
    structure: str | None = None,
    percdamp: float = 0.01,
    blocksize: int = 128,
    batch_size: int = 32,
    true_sequential: bool = False,
    verbose: int = 0,
) -> engine.OneShotReport:
    """Prunes with SparseGPT: masks chosen by `w^2 / [H^-1]_ii^2`, the rest of each layer updated.

    For each Dense / EinsumDense kernel, with `H = 2 X^T X / n` over its
    calibration inputs (`n` samples) plus `percdamp * mean(diag H)` on the
    diagonal, the inputs are visited in blocks of `blocksize`. In each block
    the mask is chosen adaptively: unstructured, the `int(size * sparsity)`
    lowest saliencies `w^2 / [H^-1]_ii^2` of the whole block (every output
    unit), with `structure="N:M"` the `M - N` lowest of every `M` inputs of
    each output unit, chosen when the sweep reaches them; each removed
    weight's error is spread over the inputs not yet visited (the Optimal
    Brain Surgeon update, through the upper Cholesky factor of `H^-1`, within
    the block at once and onto later blocks lazily). The math runs in
    float64; the result is written back in the variable's dtype. Inputs whose
    calibration values are all zero get `H_ii = 1` and their weights zeroed,
    as in the reference implementation.

    One difference from the reference (IST-DASLab/sparsegpt): it prunes the
    entries `<=` the threshold, one more than `int(size * sparsity)` (and any
    ties); this prunes exactly that count, ties to the lower position.

    The calibration data run through the model block by block (a
    transformer layer, or a top-level layer of a plain net), each block on
    the outputs of the already-pruned blocks before it; the layers of one
    block are calibrated on the block's inputs before any of them is pruned,
    as the reference implementations do (`true_sequential=True`: each layer
    on the outputs of the block's earlier layers, already pruned; slower). Other prunable weights
    (embeddings, convolutions, recurrent kernels) are left as they are and
    listed in the report's `skipped`. Weights already pruned stay pruned. If
    anything fails half-way, the model is left as it was.

    Args:
        model: A model with `PruneWrapper`s (see `tfl.prunable`).
        calibration_data: Inputs the model takes (no labels needed): a NumPy
            array or tensor, a dict / tuple of them (keras_hub models), or a
            batched `tf.data.Dataset` of `x` or `(x, y)`.
        sparsity: Float in `[0, 1)`. With `structure`, must be `1 - N/M`.
        structure: None or `"N:M"`. Defaults to None.
        percdamp: Float > 0, dampening as a fraction of the mean Hessian
            diagonal. Defaults to `0.01`.
        blocksize: Int >= 1, inputs per block (a multiple of `M` with
            `structure`). Defaults to `128`.
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
    report = tfl.oneshot.sparsegpt(model, x, 0.5, structure=None)
    ```

    Reference:
        Frantar & Alistarh, "SparseGPT: Massive Language Models Can Be
        Accurately Pruned in One-Shot", ICML 2023, arXiv:2301.00774.
    """
    sparsity, nm = engine.check_common(sparsity, structure)
    percdamp = validation.check_positive_number("percdamp", percdamp)
    blocksize = validation.check_int("blocksize", blocksize, minimum=1)
    batch_size = validation.check_int("batch_size", batch_size, minimum=1)
    true_sequential = validation.check_bool("true_sequential", true_sequential)
    if nm is not None and blocksize % nm.m:
        raise ValueError(
            f"Invalid value for argument `blocksize`: with structure '{nm}' it must be a multiple "
            f"of {nm.m}, so that no group of {nm.m} inputs spans two blocks. Received: blocksize={blocksize}."
        )
    items = engine.targets(model, needs_calibration=True)
    engine.check_structure_fits(items, nm)

    def prune_step(t: engine.Target, hook):
        value = np.asarray(keras.ops.convert_to_numpy(t.weight.value))
        alive = t.view.to_matrix(np.asarray(t.wrapper.get_masks()[t.index], dtype=bool))
        h = hessian(hook.stats, hook.samples)
        hook.stats = None  # the Gram matrix is not needed again (75 MB at 3072 inputs)
        new, pruned = prune_matrix(
            t.view.to_matrix(value),
            h,
            alive,
            sparsity,
            nm,
            blocksize=blocksize,
            percdamp=percdamp,
            name=t.weight.path,
            overwrite_h=True,  # a fresh array from `hessian`, nobody else holds it
        )
        return t.view.from_matrix(new), t.view.from_matrix(pruned)

    return engine.run(
        model,
        items,
        "sparsegpt",
        sparsity,
        nm,
        prune_step,
        calibration_data,
        batch_size,
        gram=True,
        verbose=verbose,
        true_sequential=true_sequential,
    )
