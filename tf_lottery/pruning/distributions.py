"""How a global sparsity is spread over layers: uniform, Erdos-Renyi, ERK.

A distribution turns one overall sparsity into one target sparsity per
pruned layer. The result is a `{layer_name: sparsity}` dict for the
`layer_rates` argument of `tfl.prune` in target mode, so the same
distribution serves one-shot pruning, random pruning and the initial masks
of dynamic sparse training:

```python
from tf_lottery.pruning.distributions import layer_sparsities

rates = layer_sparsities(model, 0.9, "erk")
tfl.prune(model, target_sparsity=0.9, scope="layer", layer_rates=rates,
          scorer=tfl.scoring.RandomScorer(seed=0))
```

- `"uniform"`: every layer at the same sparsity.
- `"erdos_renyi"` (ER): density of a weight of shape `(..., n_in, n_out)`
  proportional to `(n_in + n_out) / (n_in * n_out)` (Mocanu et al. 2018).
- `"erdos_renyi_kernel"` (ERK): density proportional to
  `sum(shape) / prod(shape)`, e.g. `(h + w + n_in + n_out) /
  (h * w * n_in * n_out)` for a 2D convolution (Evci et al. 2020).

In every case the overall sparsity equals the target (up to the rounding of
each layer's count to whole weights). ER and ERK solve for the scale
`epsilon` in `sum_l density_l * N_l = (1 - sparsity) * N`; a layer whose
density would exceed 1 is made dense and the scale is solved again for the
others, as in the reference implementation. Layers named in `dense` (or
given a fixed sparsity in `custom_sparsity`) keep it, and by default
(`fixed_layers="in_budget"`) the others become sparser so that the total is
still met; rigl's convention (its first layer unmasked, its
`custom_sparsity_map`) keeps them outside the budget instead, so that the
target applies to the other layers only: `fixed_layers="outside_budget"`.
ERK's raw densities can be raised to rigl's `erk_power_scale`.

A layer with several pruned weights (SeparableConv, MultiHeadAttention) has
one entry: the count-weighted sparsity of its weights.

Reference:
    Evci et al., "Rigging the Lottery: Making All Tickets Winners", ICML
    2020, arXiv:1911.11134 (ERK, section 3); Mocanu et al., "Scalable
    training of artificial neural networks with adaptive sparse
    connectivity inspired by network science", Nature Communications 2018,
    arXiv:1707.04780 (ER).
"""

from __future__ import annotations

import fnmatch
import glob
from collections.abc import Sequence

import numpy as np

from tf_lottery.core.walk import prune_wrappers
from tf_lottery.pruning import pruner as pruning
from tf_lottery.pruning import scoring
from tf_lottery.utils import validation

DISTRIBUTIONS = ("uniform", "erdos_renyi", "erdos_renyi_kernel")
_ALIASES = {"er": "erdos_renyi", "erk": "erdos_renyi_kernel"}


def canonical_distribution(name: str) -> str:
    """`"erk"` -> `"erdos_renyi_kernel"`, `"er"` -> `"erdos_renyi"`; checks the name."""
    validation.check_choice("distribution", name, DISTRIBUTIONS + tuple(_ALIASES))
    return _ALIASES.get(name, name)


def _raw_density(shape: Sequence[int], distribution: str) -> float:
    shape = [int(d) for d in shape]
    if distribution == "erdos_renyi_kernel" or len(shape) < 2:
        return float(sum(shape)) / float(np.prod(shape))
    n_in, n_out = shape[-2], shape[-1]
    return float(n_in + n_out) / float(n_in * n_out)


BUDGETS = ("in_budget", "outside_budget")


def densities(
    shapes: Sequence[Sequence[int]],
    sparsity: float,
    distribution: str = "erdos_renyi_kernel",
    dense: Sequence[bool] | None = None,
    *,
    fixed: Sequence[float | None] | None = None,
    erk_power_scale: float = 1.0,
    fixed_layers: str = "in_budget",
) -> list[float]:
    """The density (fraction kept) of each weight, from the weights' shapes.

    Args:
        shapes: Sequence of weight shapes, e.g. `[(40, 256), (256, 10)]`.
        sparsity: float in [0, 1). Overall fraction of the weights to prune.
        distribution: str. One of `DISTRIBUTIONS` (or `"er"`, `"erk"`).
            Defaults to `"erdos_renyi_kernel"`.
        dense: Optional sequence of bool, one per shape: weights that stay
            dense. Defaults to `None` (none forced).
        fixed: Optional sequence, one per shape, of a fixed sparsity in
            [0, 1) or `None` (solved). Defaults to `None`.
        erk_power_scale: float > 0. ERK's raw density `sum(shape) /
            prod(shape)` is raised to this power (rigl's `erk_power_scale`;
            < 1 spreads the density more evenly). ERK only. Defaults to `1.0`.
        fixed_layers: str. `"in_budget"`: `sparsity` is the sparsity of all
            the weights, dense and fixed ones included, so the solved ones
            become sparser to pay for them. `"outside_budget"`: `sparsity`
            applies to the solved weights only, and the dense and fixed ones
            come on top (rigl's `custom_sparsity_map` and first layer).
            Defaults to `"in_budget"`.

    Returns:
        One density in (0, 1] per shape; with `"in_budget"`,
        `sum(d * size) = (1 - sparsity) * sum(size)` exactly (before
        rounding to whole weights); with `"outside_budget"` the same holds
        over the solved weights.

    Example:

    ```python
    densities([(40, 256), (256, 256), (256, 10)], 0.9, "erk")
    # [0.2109..., 0.0570..., 0.7575...]
    ```
    """
    validation.check_fraction("sparsity", sparsity)
    distribution = canonical_distribution(distribution)
    validation.check_choice("fixed_layers", fixed_layers, BUDGETS)
    erk_power_scale = validation.check_positive_number("erk_power_scale", erk_power_scale)
    if erk_power_scale != 1.0 and distribution != "erdos_renyi_kernel":
        raise ValueError(
            "Invalid value for argument `erk_power_scale`: it scales the ERK densities only (as in "
            f"rigl). Received: erk_power_scale={erk_power_scale} with distribution={distribution!r}. "
            "Use distribution='erk' or erk_power_scale=1.0."
        )
    sizes = [int(np.prod(s)) for s in shapes]
    forced = [False] * len(sizes) if dense is None else [bool(d) for d in dense]
    if len(forced) != len(sizes):
        raise ValueError(
            f"Invalid value for argument `dense`: expected {len(sizes)} flags (one per shape). "
            f"Received {len(forced)}."
        )
    pinned = [None] * len(sizes) if fixed is None else list(fixed)
    if len(pinned) != len(sizes):
        raise ValueError(
            f"Invalid value for argument `fixed`: expected {len(sizes)} entries (one per shape). "
            f"Received {len(pinned)}."
        )
    pinned = [
        0.0 if d else (None if p is None else validation.check_fraction("custom sparsity", p))
        for d, p in zip(forced, pinned)
    ]
    free = [p is None for p in pinned]
    fixed_alive = sum((1.0 - p) * n for p, n in zip(pinned, sizes) if p is not None)
    free_size = sum(n for n, f in zip(sizes, free) if f)
    if fixed_layers == "in_budget":
        budget = (1.0 - sparsity) * sum(sizes) - fixed_alive
        if budget < -1e-9:
            raise ValueError(
                "Invalid value for argument `dense` / custom sparsities: the dense and fixed layers keep "
                f"{fixed_alive:.0f} weights, more than the {(1.0 - sparsity) * sum(sizes):.0f} that "
                f"sparsity={sparsity} leaves alive in total. Lower their density, lower `sparsity`, or "
                "pass fixed_layers='outside_budget'."
            )
        if budget > free_size + 1e-9:
            raise ValueError(
                "Invalid value for argument `dense` / custom sparsities: the fixed layers keep "
                f"{fixed_alive:.0f} weights, so the other layers would need {budget:.0f} of their "
                f"{free_size} weights (density > 1) to reach sparsity={sparsity}. Raise `sparsity` or "
                "the fixed sparsities."
            )
    else:
        budget = (1.0 - sparsity) * free_size
    result = [None if f else 1.0 - p for f, p in zip(free, pinned)]
    if not any(free):
        return result
    if distribution == "uniform":
        return [budget / free_size if r is None else r for r in result]
    raw = [_raw_density(s, distribution) ** erk_power_scale for s in shapes]
    is_dense = [not f for f in free]
    solved_dense = [False] * len(sizes)
    while True:
        # epsilon * sum(raw_l * N_l) over the solved layers must hold what the
        # layers made dense on the way leave of the budget.
        remaining = budget - sum(n for n, d in zip(sizes, solved_dense) if d)
        divisor = sum(r * n for r, n, d in zip(raw, sizes, is_dense) if not d)
        epsilon = remaining / divisor
        largest = max(r for r, d in zip(raw, is_dense) if not d)
        if epsilon * largest <= 1.0:
            break
        for index, (r, d) in enumerate(zip(raw, is_dense)):
            if not d and r == largest:
                is_dense[index] = solved_dense[index] = True
        if all(is_dense):
            break
    return [
        r if r is not None else (1.0 if solved else epsilon * q)
        for r, solved, q in zip(result, solved_dense, raw)
    ]


def _matches(wrapper, patterns: Sequence[str]) -> bool:
    return any(
        fnmatch.fnmatchcase(wrapper.layer.name, p) or fnmatch.fnmatchcase(wrapper.name, p) for p in patterns
    )


def _check_custom(custom_sparsity, wrappers, patterns) -> dict:
    if custom_sparsity is None:
        return {}
    if not isinstance(custom_sparsity, dict):
        raise validation.invalid_argument(
            "custom_sparsity", custom_sparsity, "a dict {layer name or glob: sparsity in [0, 1)}"
        )
    names = sorted(wr.layer.name for wr in wrappers)
    for pattern, value in custom_sparsity.items():
        matched = [wr for wr in wrappers if _matches(wr, [pattern])]
        if not matched:
            raise ValueError(
                f"Invalid value for argument `custom_sparsity`: {pattern!r} matches no pruned layer. "
                f"Pruned layers are: {names}."
            )
        if any(_matches(wr, patterns) for wr in matched):
            raise ValueError(
                f"Invalid value for argument `custom_sparsity`: {pattern!r} names a layer that `dense` "
                "names too. Keep it in one of them."
            )
        validation.check_fraction(f"custom_sparsity[{pattern!r}]", value)
    return dict(custom_sparsity)


def layer_sparsities(
    model,
    sparsity: float,
    distribution: str = "erdos_renyi_kernel",
    *,
    dense: Sequence[str] | None = None,
    custom_sparsity: dict[str, float] | None = None,
    erk_power_scale: float = 1.0,
    fixed_layers: str = "in_budget",
) -> dict[str, float]:
    """Per-layer target sparsities of `model`'s pruned layers.

    Two conventions for layers whose sparsity is not solved for (`dense`,
    `custom_sparsity`), named by `fixed_layers`:

    - `"in_budget"` (default): `sparsity` is the sparsity of *all* pruned
      weights; the other layers become sparser to pay for the fixed ones.
    - `"outside_budget"`: `sparsity` is the sparsity of the solved layers
      only; the fixed layers come on top. This is rigl's convention for its
      `custom_sparsity_map` and for the first layer, which rigl leaves
      unmasked (here: a mask of ones, which rewiring never touches).

    For the MLP 40-256-256-10 (78,336 weights) with its first layer (10,240
    weights) dense: at 80%, `"in_budget"` keeps 15,667 weights alive in total
    (10,240 + 5,427), `"outside_budget"` keeps 10,240 + 20% of the other
    68,096 = 23,859 (a total sparsity of 69.5%); at 90% ERK, `"in_budget"` is
    refused (the first layer alone holds more than the 7,834 alive) and
    `"outside_budget"` keeps 17,050 (78.2%). `tests/pruning/test_distributions.py`
    checks these counts.

    Args:
        model: A model with `PruneWrapper` layers (see `tfl.prunable`).
        sparsity: float in [0, 1). Target sparsity (see `fixed_layers`).
        distribution: str. `"uniform"`, `"erdos_renyi"` (`"er"`) or
            `"erdos_renyi_kernel"` (`"erk"`). Defaults to `"erdos_renyi_kernel"`.
        dense: Optional layer names (glob patterns allowed) to keep dense,
            e.g. `["fc1"]` for the first layer. Defaults to `None`.
        custom_sparsity: Optional `{layer name or glob: sparsity in [0, 1)}`
            kept fixed while the other layers are solved (rigl's
            `custom_sparsity_map`). Defaults to `None`.
        erk_power_scale: float > 0. Power of ERK's raw densities (rigl's
            `erk_power_scale`). Defaults to `1.0`.
        fixed_layers: str. `"in_budget"` or `"outside_budget"` (above).
            Defaults to `"in_budget"`.

    Returns:
        `{layer_name: sparsity}` for every pruned layer (the inner layer's
        name, glob-escaped), ready for `tfl.prune(..., scope="layer",
        layer_rates=...)`.

    Raises:
        ValueError: for unknown names, a sparsity out of [0, 1), or fixed
            layers that leave the others an impossible density.

    Example:

    ```python
    rates = layer_sparsities(model, 0.9, "erk")
    tfl.prune(model, target_sparsity=0.9, scope="layer", layer_rates=rates, scorer="random")
    # rigl's ImageNet set-up: first layer dense, outside the 90% budget.
    rates = layer_sparsities(model, 0.9, "erk", dense=["conv1"], fixed_layers="outside_budget")
    ```
    """
    wrappers = prune_wrappers(model)
    if not wrappers:
        raise ValueError(
            f"Invalid value for argument `model`: '{model.name}' has no PruneWrapper layers. "
            "Wrap it first: `model = tfl.prunable(model)`."
        )
    patterns = [dense] if isinstance(dense, str) else list(dense or [])
    for pattern in patterns:
        if not any(_matches(wr, [pattern]) for wr in wrappers):
            raise ValueError(
                f"Invalid value for argument `dense`: {pattern!r} matches no pruned layer. "
                f"Pruned layers are: {sorted(wr.layer.name for wr in wrappers)}."
            )
    custom = _check_custom(custom_sparsity, wrappers, patterns)
    shapes, owners, forced, pinned = [], [], [], []
    for wrapper in wrappers:
        value = next((v for p, v in custom.items() if _matches(wrapper, [p])), None)
        for weight in wrapper.pruned_weights:
            shapes.append(tuple(weight.shape))
            owners.append(wrapper)
            forced.append(_matches(wrapper, patterns))
            pinned.append(value)
    solved = densities(
        shapes,
        sparsity,
        distribution,
        forced,
        fixed=pinned,
        erk_power_scale=erk_power_scale,
        fixed_layers=fixed_layers,
    )
    result: dict[str, float] = {}
    for wrapper in wrappers:
        sizes = [int(np.prod(s)) for s, o in zip(shapes, owners) if o is wrapper]
        kept = [d * int(np.prod(s)) for s, o, d in zip(shapes, owners, solved) if o is wrapper]
        # Clipped below 1: `tfl.prune` takes sparsities in [0, 1).
        result[glob.escape(wrapper.layer.name)] = min(max(1.0 - sum(kept) / sum(sizes), 0.0), 1.0 - 1e-12)
    return result


def prune_to_distribution(
    model,
    sparsity: float,
    distribution: str = "erdos_renyi_kernel",
    *,
    scorer="random",
    dense: Sequence[str] | None = None,
    custom_sparsity: dict[str, float] | None = None,
    erk_power_scale: float = 1.0,
    fixed_layers: str = "in_budget",
    seed: int = 0,
) -> dict:
    """Prunes `model` to `sparsity`, spread over its layers by `distribution`.

    One-shot pruning with per-layer targets: `tfl.prune(model,
    target_sparsity=sparsity, scope="layer", layer_rates=layer_sparsities(...))`.
    With the default random scorer this draws the initial masks of static
    or dynamic sparse training.

    Args:
        model: A model with `PruneWrapper` layers.
        sparsity: float in [0, 1). Target sparsity (see `layer_sparsities`).
        distribution: str. See `layer_sparsities`. Defaults to
            `"erdos_renyi_kernel"`.
        scorer: `"random"` (seeded by `seed`), `"magnitude"` or a scorer
            callable (see `tfl.scoring`). Defaults to `"random"`.
        dense: Optional layer names (globs) to keep dense.
        custom_sparsity: Optional `{layer: sparsity}` kept fixed.
        erk_power_scale: float > 0. See `layer_sparsities`. Defaults to `1.0`.
        fixed_layers: str. `"in_budget"` or `"outside_budget"`; see
            `layer_sparsities`. Defaults to `"in_budget"`.
        seed: int. Seed of the random scorer. Defaults to `0`.

    Returns:
        What `tfl.prune` returns (`pruned`, `alive`, `total`, `sparsity`).

    Example:

    ```python
    prune_to_distribution(model, 0.9, "erk", seed=1)
    ```
    """
    if isinstance(scorer, str) and scorer == "random":
        scorer = scoring.RandomScorer(seed)
    rates = layer_sparsities(
        model,
        sparsity,
        distribution,
        dense=dense,
        custom_sparsity=custom_sparsity,
        erk_power_scale=erk_power_scale,
        fixed_layers=fixed_layers,
    )
    return pruning.prune(model, target_sparsity=sparsity, scope="layer", layer_rates=rates, scorer=scorer)
