"""Pruning whole units: `structure="channels"` (output units, filters) and `structure="heads"`.

A unit is pruned by switching off every slice of its `UnitGroup` (see
`tf_lottery.core.units`): the weights that compute it and the weights that
read it, so the masked model computes exactly what the model with the unit
removed computes (`tf_lottery.export.shrink` removes it).

Amounts count units, not weights: `target_sparsity` is the fraction of all
prunable units pruned afterwards, `rate` the fraction of the alive units
pruned now, with `exact_count`'s rounding. `scope="global"` ranks the units
of every group together (raw scores, so a unit with more inputs tends to
score higher under a norm); `scope="layer"` prunes each group by the same
fraction. A unit is alive while any of its producer weights is alive
(`unit_alive`); masks only shrink. Every group keeps at least one unit (its
best): a layer with no units left would disconnect the network, and an
amount that needs more is refused. Ties in score go to the unit that comes
first (group order, then unit index).

Scores (`scorer=`), higher kept longer:

- `"magnitude"` (default) or `"l1"`: the L1 norm of the unit's producer
  weights; `"l2"`: their L2 norm;
- `"bn_gamma"`: `|gamma|` of the `BatchNormalization` right after the
  unit's producers, summed over the branches of a residual add (network
  slimming, Liu et al. 2017, arXiv:1708.06519); a group without one is
  refused;
- any other scorer (`"random"`, `tfl.scoring.TaylorScorer(...)`, a callable):
  its per-weight scores summed over the unit's alive producer weights.

The weight sparsity this leaves differs from the unit fraction: a unit's
producer weights and the rows that read it go together, and layers without
prunable units keep all their weights.
"""

from __future__ import annotations

import fnmatch

import keras
import numpy as np

from tf_lottery.core import coupling
from tf_lottery.core.units import switch_off, unit_alive
from tf_lottery.core.walk import is_graph_model, prune_wrappers, pruning_target
from tf_lottery.pruning import pruner, scoring
from tf_lottery.utils import validation

UNIT_SCORERS = ("l1", "l2", "bn_gamma")


def groups_for(model, structure) -> tuple[list, dict]:
    """The prunable groups of `structure.kind` in `model`, and why other layers' units are not."""
    if structure.kind == "heads":
        return coupling.head_groups(model), {}
    trace = coupling.trace_channels(model)
    if not trace.groups and not is_graph_model(pruning_target(model)):
        raise ValueError(
            f"Invalid value for argument `structure`: 'channels' are traced in Sequential and "
            f"functional models; '{model.name}' is a subclassed {type(model).__name__}, whose "
            "graph cannot be read. Build it as a functional model (`keras.Model(inputs, "
            "outputs)`), register its units with `tf_lottery.core.units.register_internal_units`, "
            "or use `structure=None`."
        )
    if not trace.groups:
        reasons = "; ".join(f"'{name}': {why}" for name, why in list(trace.refused.items())[:4])
        raise ValueError(
            f"Invalid value for argument `structure`: 'channels' found no prunable units in "
            f"model '{model.name}'. A unit is prunable when every layer that computes or reads "
            "it is a wrapped Dense/Conv (or a layer the channels pass through: BatchNorm, "
            "activations, pooling, Add, Concatenate, Flatten) and it does not reach the "
            f"model's output. {('Found: ' + reasons + '. ') if reasons else ''}"
            "Wrap the layers named (`tfl.prunable`), or use `structure=None`."
        )
    return trace.groups, trace.refused


def unit_sparsity(model, structure) -> float:
    """The fraction of `model`'s prunable units of `structure.kind` that are pruned."""
    groups, _ = groups_for(model, structure)
    masks = _current_masks(model)
    total = sum(g.units for g in groups)
    alive = sum(int(np.count_nonzero(unit_alive(g, masks))) for g in groups)
    return 1.0 - alive / total


def prune_units(model, structure, *, rate, target_sparsity, scope, layer_rates, scorer) -> dict:
    """`tfl.prune` for a `UnitStructure`; see the module docstring."""
    if (rate is None) == (target_sparsity is None):
        raise ValueError(
            "Pass exactly one of `rate` (fraction of the alive units to prune this round) and "
            f"`target_sparsity` (final fraction of units pruned) with structure='{structure}'. "
            f"Received: rate={rate!r}, target_sparsity={target_sparsity!r}."
        )
    by_target = target_sparsity is not None
    amount_name = "target_sparsity" if by_target else "rate"
    amount = validation.check_fraction(amount_name, target_sparsity if by_target else rate)
    validation.check_choice("scope", scope, pruner.SCOPES)
    layer_rates = dict(layer_rates or {})
    wrappers = prune_wrappers(model)
    if not wrappers:
        raise ValueError(
            f"Invalid value for argument `model`: '{model.name}' has no "
            "PruneWrapper layers. Wrap it first: `model = tfl.prunable(model)`."
        )
    pruner.check_layer_rates(wrappers, layer_rates)
    groups, refused = groups_for(model, structure)
    rankings = _rankings(groups, refused, amount, scope, layer_rates, structure)
    masks = _current_masks(model)
    before = {key: mask.copy() for key, mask in masks.items()}
    alive = [unit_alive(g, masks) for g in groups]
    scores = _unit_scores(groups, scorer, wrappers, masks, alive)

    chosen = [np.zeros(0, dtype=np.int64) for _ in groups]
    for members, share in rankings:
        group_alive = np.concatenate([alive[g] for g in members])
        n_total, n_alive = group_alive.size, int(np.count_nonzero(group_alive))
        if by_target:
            k = pruner.exact_count(share, n_total) - (n_total - n_alive)
            if k < 0:
                raise ValueError(
                    f"Invalid value for argument `target_sparsity`: {share} is below the current "
                    f"fraction of pruned units {(n_total - n_alive) / n_total:.4f} (of "
                    f"{_describe(groups, members)}); masks only shrink. Pass a larger target."
                )
        else:
            k = pruner.exact_count(share, n_alive)
        # Each group keeps its best unit: a layer left with no units would
        # disconnect the network and kill the units after it too.
        candidates = np.concatenate([alive[g] & ~_best(scores[g], alive[g]) for g in members])
        n_candidates = int(np.count_nonzero(candidates))
        if k > n_candidates:
            raise ValueError(
                f"Invalid value for argument `{amount_name}`: {share} would prune {k} more units of "
                f"{_describe(groups, members)}, but only {n_candidates} can go while every group keeps "
                "at least one unit. Pass a smaller amount, or leave the smallest layers dense "
                "(`tfl.prunable(model, exclude=[...])`)."
            )
        ranked = np.where(candidates, np.concatenate([scores[g] for g in members]), np.inf)
        lowest = np.sort(np.argsort(ranked, kind="stable")[:k])
        offsets = np.cumsum([0] + [groups[g].units for g in members])
        for g, start, stop in zip(members, offsets[:-1], offsets[1:]):
            chosen[g] = lowest[(lowest >= start) & (lowest < stop)] - start

    for group, units in zip(groups, chosen):
        switch_off(group, units, masks)
    for wrapper in wrappers:
        keys = [(id(wrapper), i) for i in range(len(wrapper.masks))]
        if any(not np.array_equal(masks[k], before[k]) for k in keys):
            wrapper.set_masks([masks[k] for k in keys])

    total = sum(m.size for m in masks.values())
    n_alive_after = sum(int(np.count_nonzero(m)) for m in masks.values())
    n_alive_before = sum(int(np.count_nonzero(m)) for m in before.values())
    units_alive = sum(int(np.count_nonzero(unit_alive(g, masks))) for g in groups)
    return {
        "pruned": n_alive_before - n_alive_after,
        "alive": n_alive_after,
        "total": total,
        "sparsity": 1.0 - n_alive_after / total,
        "units_pruned": sum(int(np.count_nonzero(a)) for a in alive) - units_alive,
        "units_alive": units_alive,
        "units_total": sum(g.units for g in groups),
    }


def _best(score: np.ndarray, alive: np.ndarray) -> np.ndarray:
    """Boolean mask of the alive unit ranked last (highest score; ties: the last one)."""
    best = np.zeros(score.shape, dtype=bool)
    if alive.any():
        order = np.argsort(np.where(alive, score, -np.inf), kind="stable")
        best[order[-1]] = True
    return best


def _current_masks(model) -> dict:
    return {(id(wr), i): m for wr in prune_wrappers(model) for i, m in enumerate(wr.get_masks())}


def _describe(groups, members) -> str:
    names = [groups[g].name for g in members]
    return ", ".join(f"'{n}'" for n in names[:3]) + (
        f" and {len(names) - 3} more groups" if len(names) > 3 else ""
    )


def _named(slices, pattern: str) -> bool:
    return any(
        fnmatch.fnmatchcase(s.wrapper.layer.name, pattern) or fnmatch.fnmatchcase(s.wrapper.name, pattern)
        for s in slices
    )


def _matching_groups(groups, refused, pattern: str, structure) -> list[int]:
    """The groups whose units `pattern`'s layers compute; else those they read (a depthwise conv).

    A layer whose own units cannot be pruned is refused rather than read as
    the layer before it (`{"output": 0.1}` must not prune the last hidden layer).
    """
    computed = [g for g, group in enumerate(groups) if _named(group.producers(), pattern)]
    if computed:
        return computed
    read = [g for g, group in enumerate(groups) if _named(group.slices, pattern)]
    if _refused_names(refused, pattern) or not read:
        _refuse_pattern(pattern, refused, structure)
    return read


def _refused_names(refused, pattern: str) -> list[str]:
    return [
        n for n in refused if fnmatch.fnmatchcase(n, pattern) or fnmatch.fnmatchcase(f"prune_{n}", pattern)
    ]


def _rankings(groups, refused, amount, scope, layer_rates, structure) -> list[tuple[list, float]]:
    """`(group indices, amount)` for each ranking: `layer_rates` groups and `scope="layer"` alone."""
    own: dict[int, float] = {}
    for pattern, value in layer_rates.items():
        matched = _matching_groups(groups, refused, pattern, structure)
        for g in matched:
            own.setdefault(g, value)
    rankings = [([g], value) for g, value in sorted(own.items())]
    rest = [g for g in range(len(groups)) if g not in own]
    if scope == "layer":
        rankings.extend(([g], amount) for g in rest)
    elif rest:
        rankings.append((rest, amount))
    return rankings


def _refuse_pattern(pattern: str, refused: dict, structure) -> None:
    names = _refused_names(refused, pattern)
    if names:
        name = names[0]
        wrap = (
            "Wrap the layer named there too (leave it out of `tfl.prunable(..., exclude=...)`), or "
            if "not wrapped" in refused[name]
            else ""
        )
        raise ValueError(
            f"Invalid value for argument `layer_rates`: {pattern!r} names layer '{name}', whose "
            f"units cannot be pruned under structure='{structure}': {refused[name]}. {wrap}"
            f"{'l' if wrap else 'L'}eave '{name}' dense: drop it from `layer_rates` (and, if it "
            f"should not lose weights at all, `tfl.prunable(model, exclude=[{name!r}])`)."
        )
    raise ValueError(
        f"Invalid value for argument `layer_rates`: {pattern!r} names no layer with prunable "
        f"units under structure='{structure}' (it matches a wrapped layer that neither computes "
        "nor reads any unit). Drop it from `layer_rates`."
    )


def _unit_scores(groups, scorer, wrappers, masks, alive) -> list[np.ndarray]:
    """One score per unit of each group; refuses non-finite scores of alive units before any change."""
    if isinstance(scorer, str) and scorer == "bn_gamma":
        scores = [_gamma_score(group) for group in groups]
    else:
        per_weight, power = _per_weight(scorer, wrappers)
        scores = []
        for group in groups:
            total = np.zeros(group.units, dtype=np.float64)
            for s in group.producers():
                key = (id(s.wrapper), s.index)
                values = np.asarray(per_weight(key), dtype=np.float64) * masks[key]
                values = np.abs(values) ** power if power else values
                per_position = np.moveaxis(values, s.axis, 0).reshape(values.shape[s.axis], -1).sum(axis=1)
                total += per_position[s.positions].sum(axis=1)
            scores.append(np.sqrt(total) if power == 2 else total)
    for group, score, a in zip(groups, scores, alive):
        bad = a & ~np.isfinite(score)
        if bad.any():
            raise ValueError(
                f"Invalid value for argument `scorer`: the scores of {int(bad.sum())} unit(s) of "
                f"'{group.name}' are not finite (NaN or Inf), usually because training diverged or "
                "a weight is not finite. Nothing was pruned and no mask changed. Lower the learning "
                "rate, or restore finite weights before pruning."
            )
    return scores


def _per_weight(scorer, wrappers):
    """`(key -> per-weight array, power)`: power 1 or 2 takes |value| ** power of the weights."""
    if isinstance(scorer, str) and scorer in ("magnitude", "l1", "l2"):
        by_key = {(id(wr), i): w for wr in wrappers for i, w in enumerate(wr.pruned_weights)}
        power = 2 if scorer == "l2" else 1
        return (lambda key: keras.ops.convert_to_numpy(by_key[key])), power
    try:
        score_fn = scoring.get(scorer)
    except ValueError:
        raise ValueError(
            "Invalid value for argument `scorer`: under a unit structure expected 'magnitude' "
            "(= 'l1', the unit's L1 norm), 'l2', 'bn_gamma', 'random' or a callable "
            f"`scorer(wrappers) -> list of arrays` (summed over each unit). Received: scorer={scorer!r}."
        ) from None
    arrays = score_fn(wrappers)
    keys = [(id(wr), i) for wr in wrappers for i in range(len(wr.masks))]
    if len(arrays) != len(keys):
        raise ValueError(
            f"The scorer returned {len(arrays)} arrays; expected {len(keys)} (one per pruned weight)."
        )
    by_key = dict(zip(keys, arrays))
    return (lambda key: by_key[key]), 0


def _gamma_score(group) -> np.ndarray:
    if not group.gammas:
        layers = ", ".join(f"'{n}'" for n in group.layers[:6])
        raise ValueError(
            f"Invalid value for argument `scorer`: 'bn_gamma' scores a unit by the "
            f"BatchNormalization right after the layer that computes it, and group '{group.name}' "
            f"(layers {layers}) has none. Use scorer='l1' or 'l2', or leave its layers out: "
            f"`tfl.prunable(model, exclude=[...])`."
        )
    score = np.zeros(group.units, dtype=np.float64)
    for gamma, positions in group.gammas:
        values = np.abs(np.asarray(keras.ops.convert_to_numpy(gamma), dtype=np.float64))
        score += values[positions].sum(axis=1)
    return score
