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
others, as in the reference implementation. Layers named in `dense` stay
dense and the others become sparser so that the total is still met; note
that the RigL paper's "uniform, first layer dense" instead keeps the other
layers at the target, so its total sparsity is slightly lower (get that
with `tfl.prune(model, target_sparsity=s, scope="layer",
layer_rates={"<first>": 0.0})`).

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


def densities(
    shapes: Sequence[Sequence[int]],
    sparsity: float,
    distribution: str = "erdos_renyi_kernel",
    dense: Sequence[bool] | None = None,
) -> list[float]:
    """The density (fraction kept) of each weight, from the weights' shapes.

    Args:
        shapes: Sequence of weight shapes, e.g. `[(40, 256), (256, 10)]`.
        sparsity: float in [0, 1). Overall fraction of the weights to prune.
        distribution: str. One of `DISTRIBUTIONS` (or `"er"`, `"erk"`).
            Defaults to `"erdos_renyi_kernel"`.
        dense: Optional sequence of bool, one per shape: weights that stay
            dense. Defaults to `None` (none forced).

    Returns:
        One density in (0, 1] per shape; `sum(d * size) = (1 - sparsity) *
        sum(size)` exactly (before rounding to whole weights).

    Example:

    ```python
    densities([(40, 256), (256, 256), (256, 10)], 0.9, "erk")
    # [0.2109..., 0.0570..., 0.7575...]
    ```
    """
    validation.check_fraction("sparsity", sparsity)
    distribution = canonical_distribution(distribution)
    sizes = [int(np.prod(s)) for s in shapes]
    forced = [False] * len(sizes) if dense is None else [bool(d) for d in dense]
    if len(forced) != len(sizes):
        raise ValueError(
            f"Invalid value for argument `dense`: expected {len(sizes)} flags (one per shape). "
            f"Received {len(forced)}."
        )
    total = sum(sizes)
    budget = (1.0 - sparsity) * total
    dense_size = sum(n for n, d in zip(sizes, forced) if d)
    if dense_size > budget + 1e-9:
        raise ValueError(
            f"Invalid value for argument `dense`: the dense layers hold {dense_size} weights, more "
            f"than the {budget:.0f} that sparsity={sparsity} leaves alive in total."
        )
    if all(forced):
        return [1.0] * len(sizes)
    if distribution == "uniform":
        sparse_density = (budget - dense_size) / (total - dense_size)
        return [1.0 if d else sparse_density for d in forced]
    raw = [_raw_density(s, distribution) for s in shapes]
    is_dense = list(forced)
    while True:
        # epsilon * sum(raw_l * N_l) over the sparse layers must hold what the
        # dense layers leave of the budget.
        remaining = budget - sum(n for n, d in zip(sizes, is_dense) if d)
        divisor = sum(r * n for r, n, d in zip(raw, sizes, is_dense) if not d)
        epsilon = remaining / divisor
        largest = max(r for r, d in zip(raw, is_dense) if not d)
        if epsilon * largest <= 1.0:
            break
        for index, (r, d) in enumerate(zip(raw, is_dense)):
            if not d and r == largest:
                is_dense[index] = True
        if all(is_dense):
            break
    return [1.0 if d else epsilon * r for r, d in zip(raw, is_dense)]


def _matches(wrapper, patterns: Sequence[str]) -> bool:
    return any(
        fnmatch.fnmatchcase(wrapper.layer.name, p) or fnmatch.fnmatchcase(wrapper.name, p) for p in patterns
    )


def layer_sparsities(
    model,
    sparsity: float,
    distribution: str = "erdos_renyi_kernel",
    *,
    dense: Sequence[str] | None = None,
) -> dict[str, float]:
    """Per-layer target sparsities of `model`'s pruned layers.

    Args:
        model: A model with `PruneWrapper` layers (see `tfl.prunable`).
        sparsity: float in [0, 1). Overall sparsity of the pruned weights.
        distribution: str. `"uniform"`, `"erdos_renyi"` (`"er"`) or
            `"erdos_renyi_kernel"` (`"erk"`). Defaults to `"erdos_renyi_kernel"`.
        dense: Optional layer names (glob patterns allowed) to keep dense,
            e.g. `["fc1"]` for the first layer. Defaults to `None`.

    Returns:
        `{layer_name: sparsity}` for every pruned layer (the inner layer's
        name, glob-escaped), ready for `tfl.prune(..., scope="layer",
        layer_rates=...)`.

    Example:

    ```python
    rates = layer_sparsities(model, 0.9, "erk")
    tfl.prune(model, target_sparsity=0.9, scope="layer", layer_rates=rates, scorer="random")
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
    shapes, owners, forced = [], [], []
    for wrapper in wrappers:
        for weight in wrapper.pruned_weights:
            shapes.append(tuple(weight.shape))
            owners.append(wrapper)
            forced.append(_matches(wrapper, patterns))
    result: dict[str, float] = {}
    for wrapper in wrappers:
        sizes = [int(np.prod(s)) for s, o in zip(shapes, owners) if o is wrapper]
        kept = [
            d * int(np.prod(s))
            for s, o, d in zip(shapes, owners, densities(shapes, sparsity, distribution, forced))
            if o is wrapper
        ]
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
    seed: int = 0,
) -> dict:
    """Prunes `model` to `sparsity`, spread over its layers by `distribution`.

    One-shot pruning with per-layer targets: `tfl.prune(model,
    target_sparsity=sparsity, scope="layer", layer_rates=layer_sparsities(...))`.
    With the default random scorer this draws the initial masks of static
    or dynamic sparse training.

    Args:
        model: A model with `PruneWrapper` layers.
        sparsity: float in [0, 1). Overall target sparsity.
        distribution: str. See `layer_sparsities`. Defaults to
            `"erdos_renyi_kernel"`.
        scorer: `"random"` (seeded by `seed`), `"magnitude"` or a scorer
            callable (see `tfl.scoring`). Defaults to `"random"`.
        dense: Optional layer names (globs) to keep dense.
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
    rates = layer_sparsities(model, sparsity, distribution, dense=dense)
    return pruning.prune(model, target_sparsity=sparsity, scope="layer", layer_rates=rates, scorer=scorer)
