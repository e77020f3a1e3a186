"""Magnitude (or any score) pruning: global, layer-wise, per-layer rates.

Counts are exact: a group with `alive` surviving weights pruned at `rate`
loses exactly `rate * alive` of them, rounded half up, with the product
taken on the rate as written (`exact_count`). Ties in score are broken
deterministically: the weight that comes first (layer order of the model,
then row-major position) is pruned first. Masks only ever shrink.

The selection is a single `np.partition` over the surviving scores, linear in
the number of weights: 25 million weights (ResNet-50 size) take a fraction of
a second (see `benchmarks/global_threshold.py`).
"""

from __future__ import annotations

import decimal
import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from tf_lottery.core.walk import prune_wrappers
from tf_lottery.pruning import scoring
from tf_lottery.pruning import structure as nm_structure
from tf_lottery.utils import validation

SCOPES = ("global", "layer")


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


def rate_per_round(target_sparsity: float, rounds: int) -> float:
    """The per-round rate that reaches `target_sparsity` after `rounds` rounds."""
    validation.check_fraction("target_sparsity", target_sparsity)
    rounds = validation.check_int("rounds", rounds, minimum=1)
    return 1.0 - (1.0 - target_sparsity) ** (1.0 / rounds)


def select_lowest(scores: list, alive: list, k: int) -> list:
    """New masks with the `k` lowest-scored alive entries switched off.

    Args:
        scores: Arrays of scores, one per tensor.
        alive: Boolean arrays of the same shapes: the current masks.
        k: Number of alive entries to prune, `0 <= k <= alive count`.

    Returns:
        New boolean masks (copies); ties broken by tensor order, then flat
        position.
    """
    flat = [np.asarray(s).ravel()[np.asarray(a).ravel()] for s, a in zip(scores, alive)]
    values = np.concatenate(flat) if flat else np.zeros(0)
    if k < 0 or k > values.size:
        raise ValueError(f"Cannot prune {k} weights: only {values.size} are alive.")
    # C order: the tie-breaking writes below go through `reshape(-1)`, a view only then.
    masks = [np.array(a, dtype=bool, copy=True, order="C") for a in alive]
    if k == 0:
        return masks
    if np.isnan(values).any():
        raise ValueError(
            "Pruning scores contain NaN: the weights (or gradients) are not "
            "finite, usually because training diverged. Lower the learning "
            "rate or check the data."
        )
    threshold = np.partition(values, k - 1)[k - 1]
    ties_left = k - int(np.count_nonzero(values < threshold))
    for mask, score in zip(masks, scores):
        score = np.asarray(score)
        mask[mask & (score < threshold)] = False
        if ties_left > 0:
            tie_positions = np.flatnonzero(mask & (score == threshold))[:ties_left]
            mask.reshape(-1)[tie_positions] = False
            ties_left -= tie_positions.size
    return masks


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
        structure: `None` (unstructured) or `"N:M"`: at most N non-zero
            weights in every M consecutive ones along each kernel's input
            dimension (see `tf_lottery.pruning.structure`). Without `rate`
            and `target_sparsity`, every group keeps its N best weights; with
            an amount, no group loses more than `M - N` (the pattern holds
            once sparsity reaches `1 - N/M`; more is refused). Defaults to
            `None`.

    Returns:
        A dict with `"pruned"` (weights pruned now), `"alive"`, `"total"` and
        `"sparsity"` over the prunable weights.

    Example:

    ```python
    tfl.prune(model, rate=0.2, layer_rates={"output": 0.1})
    ```

    Reference:
        Frankle & Carbin, ICLR 2019, arXiv:1803.03635 (per-layer rates);
        Frankle et al., "Stabilizing the Lottery Ticket Hypothesis",
        arXiv:1903.01611 (global pruning).
    """
    nm = nm_structure.parse(structure)
    pattern_only = nm is not None and rate is None and target_sparsity is None
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
    groups = _groups(wrappers, tensors, amount or 0.0, scope, layer_rates or {})

    alive = [m for wr in wrappers for m in wr.get_masks()]
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

    # Under N:M, only the entries a group can spare compete (see `structure`).
    if nm is None:
        candidates = alive
    else:
        candidates = [
            nm_structure.prunable_entries(s, a, nm, axis) for s, a, axis in zip(scores, alive, axes)
        ]
    new_masks = list(alive)
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
        chosen = select_lowest([scores[j] for j in group.indices], group_candidates, k)
        for j, candidate, mask in zip(group.indices, group_candidates, chosen):
            new_masks[j] = alive[j] & ~(candidate & ~mask)

    position = 0
    for wr in wrappers:
        count = len(wr.masks)
        wr.set_masks(new_masks[position : position + count])
        position += count

    total = sum(m.size for m in new_masks)
    n_alive_after = sum(int(np.count_nonzero(m)) for m in new_masks)
    n_alive_before = sum(int(np.count_nonzero(a)) for a in alive)
    return {
        "pruned": n_alive_before - n_alive_after,
        "alive": n_alive_after,
        "total": total,
        "sparsity": 1.0 - n_alive_after / total,
    }


def _layer_override(wrapper, layer_rates: Mapping[str, float]):
    for pattern, value in layer_rates.items():
        if fnmatch.fnmatchcase(wrapper.layer.name, pattern) or fnmatch.fnmatchcase(wrapper.name, pattern):
            return pattern, value
    return None


def _groups(wrappers, tensors, amount, scope, layer_rates) -> list[_Group]:
    for pattern, value in layer_rates.items():
        validation.check_fraction(f"layer_rates[{pattern!r}]", value)
        if not any(_layer_override(wr, {pattern: value}) for wr in wrappers):
            names = sorted(wr.layer.name for wr in wrappers)
            raise ValueError(
                f"Invalid value for argument `layer_rates`: {pattern!r} matches no "
                f"pruned layer. Pruned layers are: {names}."
            )
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
