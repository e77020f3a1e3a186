"""Our exact pruning counts against open_lth's `sparse_global` rule (docs/OPEN_LTH.md).

open_lth (`pruning/sparse_global.py`) takes k = ceil(rate * alive) with
`alive` counted over every prunable tensor, ignored ones included, sorts the
surviving magnitudes of the non-ignored tensors, and keeps those strictly
above the k-th smallest (0-based): k + 1 weights go, plus any tied with it.
We prune round(rate * alive) with `alive` over the pruned layers only.
"""

import math

import keras
import numpy as np

import tf_lottery as tfl
from tf_lottery.models import build_model


def _open_lth_round(weights: dict, masks: dict, rate: float, ignored: set) -> dict:
    """One round of open_lth's sparse_global pruning, written from its definition."""
    alive = sum(int(m.sum()) for m in masks.values())  # ignored tensors counted too
    k = math.ceil(rate * alive)
    pruned = [name for name in weights if name not in ignored]
    vector = np.concatenate([np.abs(weights[n])[masks[n]] for n in pruned])
    threshold = np.sort(vector)[k]
    return {n: (masks[n] & (np.abs(weights[n]) > threshold)) if n in pruned else masks[n] for n in weights}


def _lenet():
    model = tfl.prunable(build_model("lenet_300_100", (28, 28, 1), 10), exclude=["output"])
    kernels = {w.layer.name: np.asarray(w.layer.kernel) for w in tfl.prune_wrappers(model)}
    head = next(layer for layer in model.layers if layer.name == "output")
    kernels["output"] = np.asarray(head.kernel)
    return model, kernels


def _masks(model) -> dict:
    return {w.layer.name: np.asarray(w.get_masks()[0], bool) for w in tfl.prune_wrappers(model)}


def test_ten_rounds_of_20_percent_on_lenet_differ_by_899_weights():
    keras.utils.set_random_seed(0)
    model, weights = _lenet()
    theirs = {name: np.ones(w.shape, bool) for name, w in weights.items()}
    for _ in range(10):
        tfl.prune(model, rate=0.2)  # the output layer is excluded: outside the total
        theirs = _open_lth_round(weights, theirs, 0.2, ignored={"output"})
    ours = _masks(model)
    alive_ours = sum(int(m.sum()) for m in ours.values())
    alive_theirs = sum(int(theirs[n].sum()) for n in ours)
    assert (alive_ours, alive_theirs) == (28476, 27577)
    differing = sum(int(np.count_nonzero(ours[n] != theirs[n])) for n in ours)
    assert differing == 899 and round(100 * differing / alive_ours, 1) == 3.2
    # The magnitudes are the same ones (weights fixed): open_lth's mask is ours minus the 899 smallest.
    assert all(np.all(theirs[n] <= ours[n]) for n in ours)


def test_at_equal_counts_the_masks_are_identical():
    keras.utils.set_random_seed(0)
    model, weights = _lenet()
    theirs = {name: np.ones(w.shape, bool) for name, w in weights.items()}
    total = sum(m.size for m in _masks(model).values())
    for _ in range(10):
        theirs = _open_lth_round(weights, theirs, 0.2, ignored={"output"})
        alive = sum(int(theirs[n].sum()) for n in ("fc1", "fc2"))
        tfl.prune(model, target_sparsity=(total - alive) / total)
        ours = _masks(model)
        for name in ours:
            np.testing.assert_array_equal(ours[name], theirs[name])
