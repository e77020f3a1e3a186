"""The controls of the lottery-ticket papers, run as branches of a level.

A branch at level k starts from what the main run found at level k (its
mask M_k, the level it was pruned from, the rewind point) and trains the
same data steps; only one thing differs from the ticket:

- `reinit`: mask M_k, weights drawn afresh from each layer's initializer
  (`tfl.reinitialize`): "random reinitialization" (Frankle & Carbin 2019).
- `random_layerwise`: M_k shuffled within each layer (same per-layer
  counts), rewind weights: random pruning at the ticket's layer-wise
  sparsity.
- `random_global`: a uniformly random mask over all prunable weights with
  M_k's total count (layers end up equally sparse on average), rewind
  weights.
- `random_even`: every layer pruned to M_k's overall sparsity (round(s *
  n) of each layer's n weights, at random), rewind weights: open_lth's
  `even` strategy. Its total count can differ from M_k's by rounding.
- `random_<layerwise|global|even>_from_init`: the same random mask,
  weights of initialization (step 0; with `config.pretrain`, the
  pretrained network), trained from step 0: open_lth's `start_at='init'`.
- `random_<layerwise|global|even>_from_end`: the same random mask applied
  to the weights that the ticket of level k ended its training with, fresh
  optimizer, trained from step 0: open_lth's `start_at='end'` ("from the
  trained weights").
- `lr_rewind`: mask M_k, the *trained* weights of the level it was pruned
  from, optimizer and schedule rewound (Renda et al. 2020).
- `finetune`: mask M_k, trained weights, the final optimizer state and
  learning rate of that level (Renda et al. 2020's fine-tuning baseline).

The random masks of one strategy are the same whatever the start (their
seed depends on the replicate, the level and the strategy), so the starts
compare on identical masks.

Reference:
    Frankle & Carbin, ICLR 2019, arXiv:1803.03635; Frankle et al., "Pruning
    Neural Networks at Initialization: Why are We Missing the Mark?", ICLR
    2021, arXiv:2009.08576 (layer-wise shuffling); Renda et al., ICLR 2020,
    arXiv:2003.02389.
"""

from __future__ import annotations

import numpy as np

from tf_lottery.core.walk import dense_masks, get_masks, set_masks
from tf_lottery.lottery import rewind
from tf_lottery.pruning import pruner as pruning
from tf_lottery.pruning import scoring


def derive_seed(*parts: int) -> int:
    """A 31-bit seed that depends on every part (stable across runs and platforms)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0] % (2**31 - 1))


def shuffle_layerwise(masks: list, seed: int) -> list:
    """Each mask with its entries permuted at random: the per-tensor count is kept."""
    rng = np.random.default_rng(seed)
    return [rng.permutation(np.asarray(m).ravel()).reshape(np.shape(m)) for m in masks]


def even_masks(masks: list, seed: int) -> list:
    """Random masks with every tensor at the overall sparsity s of `masks`.

    Each tensor of n entries keeps `n - round(s * n)` of them, at positions
    drawn at random (open_lth's `even` random pruning; its own code keeps
    `ceil(s * n)` instead, the pruned fraction, and cannot run as written).
    """
    masks = [np.asarray(m, bool) for m in masks]
    total = sum(m.size for m in masks)
    sparsity = 1.0 - sum(int(np.count_nonzero(m)) for m in masks) / total
    rng = np.random.default_rng(seed)
    result = []
    for mask in masks:
        flat = np.zeros(mask.size, bool)
        flat[: mask.size - round(sparsity * mask.size)] = True
        result.append(rng.permutation(flat).reshape(mask.shape))
    return result


def parse_random(name: str) -> tuple[str, str] | None:
    """`"random_even_from_init"` -> `("even", "init")`; None for a branch that is not random pruning."""
    if not name.startswith("random_"):
        return None
    strategy, _, start = name[len("random_") :].partition("_from_")
    return strategy, start or "rewind"


def start_step(context, name: str) -> int:
    """The data step branch `name` starts training at."""
    random = parse_random(name)
    if random is not None and random[1] in ("init", "end"):
        return 0
    return context.restart_step()


def random_global_masks(model, pruned: int, seed: int) -> list:
    """Masks with exactly `pruned` prunable weights removed uniformly at random over all layers.

    Leaves `model` with those masks.
    """
    set_masks(model, dense_masks(model))
    total = sum(m.size for m in get_masks(model))
    result = pruning.prune(model, target_sparsity=pruned / total, scorer=scoring.RandomScorer(seed))
    if total - result["alive"] != pruned:
        raise AssertionError(f"random_global pruned {total - result['alive']} weights, expected {pruned}.")
    return get_masks(model)


def start_branch(context, name: str, level: int) -> None:
    """Sets `context.model` (masks, weights, optimizer) to branch `name`'s start at `level`.

    `context` is the replicate's `level_context.LevelContext`.
    """
    model = context.model
    ticket_masks = context.level_masks(level)
    source = context.source_level(level)
    seed = derive_seed(context.seed, level, sum(map(ord, name)))
    point = context.restart_point()
    if name == "reinit":
        set_masks(model, ticket_masks)
        rewind.reset_for_retrain(model, "reinit", point, seed=seed)
    elif parse_random(name) is not None:
        strategy, start = parse_random(name)
        # The seed of the plain name: every start of a strategy gets the same masks.
        seed = derive_seed(context.seed, level, sum(map(ord, f"random_{strategy}")))
        trained = None
        if start == "end":
            context.load_end(level)
            trained = rewind.Snapshot.capture(model, 0)
        if strategy == "layerwise":
            set_masks(model, shuffle_layerwise(ticket_masks, seed))
        elif strategy == "global":
            pruned = sum(int(m.size - np.count_nonzero(m)) for m in ticket_masks)
            random_global_masks(model, pruned, seed)
        else:
            set_masks(model, even_masks(ticket_masks, seed))
        if start == "end":
            rewind.reset_for_retrain(model, "lr_rewind", context.initial, trained=trained)
        else:
            rewind.reset_for_retrain(model, "rewind", context.initial if start == "init" else point)
    elif name in ("lr_rewind", "finetune"):
        context.load_end(source)
        set_masks(model, ticket_masks)
        trained = context.final_state(source) if name == "finetune" else None
        rewind.reset_for_retrain(model, name, point, trained=trained)
    else:
        raise ValueError(f"Invalid branch name: {name!r}.")
