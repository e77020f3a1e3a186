"""Magnitude (or any score) pruning: global, layer-wise, per-layer rates.

Counts are exact: a group with `alive` surviving weights pruned at `rate`
loses exactly `rate * alive` of them, rounded half up, with the product
taken on the rate as written (`exact_count`). Ties in score are broken
deterministically: the weight that comes first (layer order of the model,
then row-major position) is pruned first. Masks only ever shrink.

The selection is a single in-place `np.partition` over the surviving scores,
linear in the number of weights; magnitude scores are read from views of the
weights, never copied whole. A global prune of GPT-2 small's 124M weights
takes a few seconds on 2 cores with peak extra memory about the weights'
size (see `benchmarks/prune_scale.py`).
"""

from __future__ import annotations

import decimal
import fnmatch
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from tf_lottery.core.walk import get_masks, prune_wrappers, set_masks
from tf_lottery.pruning import blocks, scoring, units_pruning
from tf_lottery.pruning import structure as nm_structure
from tf_lottery.utils import validation

SCOPES = ("global", "layer")

# Entries per temporary array in the passes over a tensor: small enough for
# the temporaries to stay in cache (256 KiB of float32), large enough for
# NumPy's per-call cost not to matter.
_CHUNK = 1 << 16


@dataclass
class _Group:
    indices: list  # positions in the flat list of pruned tensors
    amount: float  # rate (fraction of alive) or target sparsity


def exact_count(rate: float, n: int) -> int:
    """`rate * n` rounded half up, the number of weights a rate removes.

    The product is taken in decimal on the rate as written (its shortest
    `repr`), not in binary floating point: `0.7 * 45` is 31.499999999999996
    in binary, but the user asked for 31.5 weights, which rounds to 32.
    """
    product = decimal.Decimal(repr(float(rate))) * int(n)
    return int(product.to_integral_value(rounding=decimal.ROUND_HALF_UP))


def rate_per_round(target_sparsity: float, rounds: int, start_sparsity: float = 0.0) -> float:
    """The per-round rate that reaches `target_sparsity` after `rounds` rounds.

    Args:
        target_sparsity: float in [0, 1). The sparsity after the last round.
        rounds: int >= 1. How many prunings share the way there.
        start_sparsity: float in [0, 1], at most `target_sparsity`. The
            sparsity before the first of them (e.g. one-shot masks that seed
            IMP). Defaults to `0.0` (dense).
    """
    validation.check_fraction("target_sparsity", target_sparsity)
    rounds = validation.check_int("rounds", rounds, minimum=1)
    if not 0.0 <= start_sparsity <= target_sparsity:
        raise validation.invalid_argument(
            "start_sparsity", start_sparsity, f"a float in [0, target_sparsity={target_sparsity!r}]"
        )
    return 1.0 - ((1.0 - target_sparsity) / (1.0 - start_sparsity)) ** (1.0 / rounds)


def select_lowest(scores: list, alive: list, k: int, key: Callable | None = None) -> list:
    """New masks with the `k` lowest-scored alive entries switched off.

    Memory beyond the inputs and the returned masks is one buffer holding the
    alive scores (partitioned in place) and temporaries of at most `_CHUNK`
    entries, so that `scores` may be read-only views of the weights
    themselves (see `key`).

    Args:
        scores: Arrays of scores, one per tensor.
        alive: Boolean arrays of the same shapes: the current masks.
        k: Number of alive entries to prune, `0 <= k <= alive count`.
        key: Callable or `None`. An elementwise, dtype-preserving function
            (`np.abs` for magnitude pruning): the entries compared are
            `key(scores)`, computed chunk by chunk, never for a whole tensor
            at once. Defaults to `None` (the scores themselves).

    Returns:
        New boolean masks (copies); ties broken by tensor order, then flat
        position.
    """
    # C order throughout: the flat positions are row-major, as the tie-breaking promises.
    flat_scores = [np.ravel(np.asarray(s)) for s in scores]
    flat_alive = [np.ravel(np.asarray(a, dtype=bool)) for a in alive]
    n_alive = sum(int(np.count_nonzero(a)) for a in flat_alive)
    if k < 0 or k > n_alive:
        raise ValueError(f"Cannot prune {k} weights: only {n_alive} are alive.")
    if k == 0:
        return [np.array(a, dtype=bool, copy=True, order="C") for a in alive]
    threshold, ties = _kth_lowest(flat_scores, flat_alive, n_alive, k, key)
    masks = []
    for score, a, original in zip(flat_scores, flat_alive, alive):
        mask = a.copy()
        for start in range(0, mask.size, _CHUNK):
            part = mask[start : start + _CHUNK]
            chunk = score[start : start + _CHUNK]
            chunk = key(chunk) if key is not None else chunk
            kept = chunk < threshold
            np.logical_not(kept, out=kept)
            part &= kept
            if ties > 0:
                tie_positions = np.flatnonzero(part & (chunk == threshold))[:ties]
                part[tie_positions] = False
                ties -= tie_positions.size
        masks.append(mask.reshape(np.shape(original)))
    return masks


def _kth_lowest(flat_scores: list, flat_alive: list, n_alive: int, k: int, key) -> tuple:
    """The `k`-th lowest alive score and how many entries equal to it go (`k - #lower`)."""
    dtype = np.result_type(*((key(s[:0]) if key is not None else s).dtype for s in flat_scores))
    values = np.empty(n_alive, dtype)
    position = 0
    for score, a in zip(flat_scores, flat_alive):
        for start in range(0, a.size, _CHUNK):
            chunk = score[start : start + _CHUNK][a[start : start + _CHUNK]]
            values[position : position + chunk.size] = key(chunk) if key is not None else chunk
            position += chunk.size
    if np.issubdtype(dtype, np.inexact) and np.isnan(values.max()):
        raise ValueError(
            "Pruning scores contain NaN: the weights (or gradients) are not "
            "finite, usually because training diverged. Lower the learning "
            "rate or check the data."
        )
    values.partition(k - 1)
    threshold = values[k - 1]
    # After the partition, everything below the threshold lies in values[:k - 1].
    lower = sum(
        int(np.count_nonzero(values[start : min(start + _CHUNK, k - 1)] < threshold))
        for start in range(0, k - 1, _CHUNK)
    )
    return threshold, k - lower


def prune(
    model,
    rate: float | None = None,
    *,
    target_sparsity: float | None = None,
    scope: str = "global",
    layer_rates: Mapping[str, float] | None = None,
    scorer="magnitude",
    structure: str | None = None,
) -> dict:
    """Prunes the wrapped weights of `model` by score and updates its masks.

    Give exactly one of `rate` (the fraction of the weights *still alive* to
    remove: one IMP round) or `target_sparsity` (the fraction of all prunable
    weights that are pruned afterwards: one-shot pruning).

    Args:
        model: A model with `PruneWrapper` layers (see `tf_lottery.core.prunable`).
        rate: float in [0, 1). Fraction of surviving weights to prune.
        target_sparsity: float in [0, 1). Sparsity to reach.
        scope: `"global"` (one threshold across all layers, for deep nets) or
            `"layer"` (each layer pruned by the same fraction). Defaults to
            `"global"`.
        layer_rates: Mapping from layer name (glob patterns allowed, e.g.
            `"conv*"`) to that layer's own rate (or target sparsity); those
            layers are pruned layer-wise at their own amount and the rest
            follow `scope`. E.g. `{"output": 0.1}` prunes the output layer at
            half the paper's 20% fc rate. The layer name is the wrapped
            layer's name (or the wrapper's). Defaults to `None`.
        scorer: `"magnitude"` (default), `"random"`, or a callable (see
            `tf_lottery.pruning.scoring`).
        structure: `None` (unstructured), `"N:M"`, `"RxC"`, `"channels"` or
            `"heads"`. `"N:M"`: at most N non-zero weights in every M
            consecutive ones along each kernel's input dimension (see
            `tf_lottery.pruning.structure`). Without `rate` and
            `target_sparsity`, every group keeps its N best weights; with an
            amount, no group loses more than `M - N` (the pattern holds once
            sparsity reaches `1 - N/M`; more is refused). `"RxC"` (e.g.
            `"1x4"`, TFLite's block-sparse kernel): whole blocks of R outputs
            x C inputs, ranked by the sum of the scores over the block (the
            L1 norm under magnitude), counted exactly in blocks (see
            `tf_lottery.pruning.blocks`); needs an amount. `"channels"`
            prunes whole output units and filters, with the layers coupled to
            them (residual adds, concatenations, the next layer's input
            rows), and `"heads"` whole attention heads: amounts then count
            units, and `scorer` may also be `"l1"` (= `"magnitude"`), `"l2"`
            or `"bn_gamma"` (see `tf_lottery.pruning.units_pruning`).
            Defaults to `None`.

    Returns:
        A dict with `"pruned"` (weights pruned now), `"alive"`, `"total"` and
        `"sparsity"` over the prunable weights. Under `"channels"` or
        `"heads"` also `"units_pruned"` (now), `"units_alive"` and
        `"units_total"`; the weight sparsity then differs from the fraction
        of units pruned.

    Raises:
        ValueError: for bad arguments, and when an alive pruned weight (or
            its score) is NaN or Inf, on every path; no mask is changed then.

    Example:

    ```python
    tfl.prune(model, rate=0.2, layer_rates={"output": 0.1})
    ```

    Reference:
        Frankle & Carbin, ICLR 2019, arXiv:1803.03635 (per-layer rates);
        Frankle et al., "Stabilizing the Lottery Ticket Hypothesis",
        arXiv:1903.01611 (global pruning).
    """
    parsed = nm_structure.parse(structure)
    if isinstance(parsed, nm_structure.UnitStructure):
        return units_pruning.prune_units(
            model,
            parsed,
            rate=rate,
            target_sparsity=target_sparsity,
            scope=scope,
            layer_rates=layer_rates,
            scorer=scorer,
        )
    if isinstance(parsed, nm_structure.BlockStructure):
        nm, block = None, parsed
    else:
        nm, block = nm_structure.parse_nm(structure), None
    pattern_only = nm is not None and rate is None and target_sparsity is None
    if block is not None and rate is None and target_sparsity is None:
        raise ValueError(
            f"Invalid value for argument `structure`: '{block}' blocks need an amount. Pass "
            "`rate` (fraction of the alive blocks to prune) or `target_sparsity`. Received: "
            f"structure={structure!r}, rate=None, target_sparsity=None."
        )
    if (rate is None) == (target_sparsity is None) and not pattern_only:
        raise ValueError(
            "Pass exactly one of `rate` (fraction of surviving weights to prune "
            "this round) and `target_sparsity` (final fraction pruned). "
            f"Received: rate={rate!r}, target_sparsity={target_sparsity!r}."
        )
    by_target = target_sparsity is not None
    amount = target_sparsity if by_target else rate
    if not pattern_only:
        validation.check_fraction("target_sparsity" if by_target else "rate", amount)
    validation.check_choice("scope", scope, SCOPES)
    score_fn = scoring.get(scorer)
    wrappers = prune_wrappers(model)
    if not wrappers:
        raise ValueError(
            f"Invalid value for argument `model`: '{model.name}' has no "
            "PruneWrapper layers. Wrap it first: `model = tfl.prunable(model)`."
        )
    tensors = [(wr, i) for wr in wrappers for i in range(len(wr.masks))]
    axes = nm_structure.check_layers(wrappers, nm) if nm is not None else None
    if block is not None:
        axes = blocks.check_layers(wrappers, block)
    groups = _groups(wrappers, tensors, amount or 0.0, scope, layer_rates or {})

    alive = get_masks(wrappers)
    _check_finite(scoring.weight_values(wrappers), alive, tensors, "weight")
    structured = nm is not None or block is not None
    scores, key = _scores(score_fn, wrappers, tensors, alive, structured=structured)
    if score_fn is not scoring.magnitude:
        _check_finite(scores, alive, tensors, "score")

    # Under blocks, the units counted and ranked are whole blocks (see `blocks`).
    entries_alive = alive
    if block is not None:
        scores = [blocks.block_scores(s, a, block, ax) for s, a, ax in zip(scores, alive, axes)]
        alive = [blocks.alive_blocks(a, block, ax) for a, ax in zip(alive, axes)]
    # Under N:M, only the entries a group can spare compete (see `structure`).
    if nm is None:
        candidates = alive
    else:
        candidates = [
            nm_structure.prunable_entries(s, a, nm, axis) for s, a, axis in zip(scores, alive, axes)
        ]
    new_masks = list(entries_alive)
    for group in groups:
        group_alive = [alive[j] for j in group.indices]
        group_candidates = [candidates[j] for j in group.indices]
        n_alive = sum(int(np.count_nonzero(a)) for a in group_alive)
        n_candidates = sum(int(np.count_nonzero(c)) for c in group_candidates)
        if pattern_only:
            k = n_candidates
        elif by_target:
            n_total = sum(a.size for a in group_alive)
            k = exact_count(group.amount, n_total) - (n_total - n_alive)
            if k < 0:
                raise ValueError(
                    f"Invalid value for argument `target_sparsity`: {group.amount} is "
                    f"below the current sparsity {(n_total - n_alive) / n_total:.4f}; "
                    "masks only shrink. Pass a larger target."
                )
        else:
            k = exact_count(group.amount, n_alive)
        if nm is not None and k > n_candidates:
            raise ValueError(
                f"Invalid value for argument `{'target_sparsity' if by_target else 'rate'}`: "
                f"{group.amount} would prune {k} more weights, but structure '{nm}' "
                f"spares only {n_candidates} (it allows at most {nm.max_sparsity:.4g} "
                "sparsity). Pass a smaller amount, or `structure=None`."
            )
        chosen = select_lowest([scores[j] for j in group.indices], group_candidates, k, key)
        for j, candidate, mask in zip(group.indices, group_candidates, chosen):
            if block is not None:
                mask = entries_alive[j] & blocks.from_blocks(mask, entries_alive[j].shape, block, axes[j])
            new_masks[j] = mask if nm is None else alive[j] & ~(candidate & ~mask)
    # The scores may be views of the weights' buffers: let go of them before
    # the weights are written, or each old buffer would stay beside the new one.
    del scores

    set_masks(wrappers, new_masks)

    total = sum(m.size for m in new_masks)
    n_alive_after = sum(int(np.count_nonzero(m)) for m in new_masks)
    n_alive_before = sum(int(np.count_nonzero(a)) for a in entries_alive)
    return {
        "pruned": n_alive_before - n_alive_after,
        "alive": n_alive_after,
        "total": total,
        "sparsity": 1.0 - n_alive_after / total,
    }


def _scores(score_fn, wrappers, tensors, alive, structured: bool) -> tuple[list, Callable | None]:
    """The scores to compare and the `key` that `select_lowest` applies to them.

    Unstructured magnitude pruning compares `|w|` computed chunk by chunk from
    read-only views of the weights (`key=np.abs`): no copy of the weights is
    made, which keeps a 125M-weight global prune within 1.5x the weights'
    memory (see `benchmarks/prune_scale.py`).
    """
    if score_fn is scoring.magnitude and not structured:
        return scoring.weight_values(wrappers), np.abs
    scores = score_fn(wrappers)
    if len(scores) != len(alive):
        raise ValueError(
            f"The scorer returned {len(scores)} arrays; expected {len(alive)} (one per pruned weight)."
        )
    for s, a, (wr, i) in zip(scores, alive, tensors):
        if np.shape(s) != a.shape:
            raise ValueError(
                f"The scorer returned shape {np.shape(s)} for '{wr.pruned_weights[i].path}'; expected {a.shape}."
            )
    return scores, None


def _check_finite(arrays: list, alive: list, tensors: list, what: str) -> None:
    """Refuses a NaN or Inf among the alive entries of `arrays`, naming the weight.

    A non-finite weight or score has no place in a ranking: NaN sorts after
    every number and Inf above it, so either would be kept whatever its
    meaning. Called before any mask is written, so nothing changes when it
    raises. The screen is a float64 sum per tensor (no copy of the weights);
    only a tensor whose sum is not finite is searched entry by entry.
    """
    for array, mask, (wrapper, i) in zip(arrays, alive, tensors):
        array = np.asarray(array)
        if not np.issubdtype(array.dtype, np.inexact):
            continue
        with np.errstate(over="ignore", invalid="ignore"):
            total = np.sum(array, dtype=np.float64, where=np.asarray(mask, dtype=bool))
        if np.isfinite(total):
            continue
        bad = ~np.isfinite(array) & mask
        count = int(np.count_nonzero(bad))
        if count == 0:  # the sum overflowed; every entry is finite
            continue
        first = tuple(int(j) for j in np.argwhere(bad)[0])
        value = array[first]
        path = wrapper.pruned_weights[i].path
        if what == "weight":
            raise ValueError(
                f"Invalid value for argument `model`: weight '{path}' of layer "
                f"'{wrapper.layer.name}' holds {count} non-finite value(s) among its "
                f"alive entries (first: {value} at index {first}), usually because "
                "training diverged. Nothing was pruned and no mask changed. Lower the "
                "learning rate or check the labels and inputs, or restore finite "
                "weights (a checkpoint) before pruning."
            )
        raise ValueError(
            f"Invalid value for argument `scorer`: it returned {count} non-finite "
            f"score(s) for alive entries of weight '{path}' of layer "
            f"'{wrapper.layer.name}' (first: {value} at index {first}). Nothing was "
            "pruned and no mask changed. Scores must be finite numbers; if the "
            "scorer uses gradients, check that the loss is finite on its data."
        )


def _layer_override(wrapper, layer_rates: Mapping[str, float]):
    for pattern, value in layer_rates.items():
        if fnmatch.fnmatchcase(wrapper.layer.name, pattern) or fnmatch.fnmatchcase(wrapper.name, pattern):
            return pattern, value
    return None


def check_layer_rates(wrappers, layer_rates: Mapping[str, float]) -> None:
    """Each `layer_rates` value is a fraction and each name matches a wrapper, as `prune` checks them."""
    for pattern, value in layer_rates.items():
        validation.check_fraction(f"layer_rates[{pattern!r}]", value)
        if not any(_layer_override(wr, {pattern: value}) for wr in wrappers):
            names = sorted(wr.layer.name for wr in wrappers)
            raise ValueError(
                f"Invalid value for argument `layer_rates`: {pattern!r} matches no "
                f"pruned layer. Pruned layers are: {names}."
            )


def _groups(wrappers, tensors, amount, scope, layer_rates) -> list[_Group]:
    check_layer_rates(wrappers, layer_rates)
    groups: list[_Group] = []
    shared: list[int] = []
    for wrapper in wrappers:
        indices = [j for j, (wr, _) in enumerate(tensors) if wr is wrapper]
        override = _layer_override(wrapper, layer_rates)
        if override is not None:
            groups.append(_Group(indices, override[1]))
        elif scope == "layer":
            groups.append(_Group(indices, amount))
        else:
            shared.extend(indices)
    if shared:
        groups.append(_Group(shared, amount))
    return groups
