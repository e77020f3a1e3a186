"""The controls run as branches: open_lth's random-pruning strategies and start points."""

import os

import numpy as np
import pytest

import tf_lottery as tfl
from tests.testing import tiny_run_config
from tf_lottery.experiments import run_store
from tf_lottery.experiments.kinds import controls
from tf_lottery.experiments.runner import run_levels


def tiny_config(rewind_to="1ep"):
    return tiny_run_config(rewind_to)


def test_even_masks_prune_every_tensor_to_the_overall_sparsity():
    rng = np.random.default_rng(0)
    # A ticket that pruned the first tensor hard and left the others dense: 700 of 1,000 + 50 + 10 kept.
    masks = [rng.random((40, 25)) < 0.7, np.ones(50, bool), np.ones((2, 5), bool)]
    alive = sum(int(m.sum()) for m in masks)
    sparsity = 1 - alive / 1060
    even = controls.even_masks(masks, seed=3)
    for mask, result in zip(masks, even):
        assert result.shape == mask.shape and result.dtype == bool
        assert mask.size - result.sum() == round(sparsity * mask.size)
    np.testing.assert_array_equal(
        np.concatenate([m.ravel() for m in even]),
        np.concatenate([m.ravel() for m in controls.even_masks(masks, seed=3)]),
    )
    assert not np.array_equal(even[0], controls.even_masks(masks, seed=4)[0])


@pytest.mark.parametrize(
    "name, parsed",
    [
        ("random_layerwise", ("layerwise", "rewind")),
        ("random_even", ("even", "rewind")),
        ("random_global_from_init", ("global", "init")),
        ("random_even_from_end", ("even", "end")),
        ("reinit", None),
    ],
)
def test_random_branch_names(name, parsed):
    assert controls.parse_random(name) == parsed


def _ticket(root, level, branch=None, what="start"):
    parts = (
        [root, "replicate_0"] + ([f"branch_{branch}"] if branch else []) + [f"round_{level}", f"{what}.npz"]
    )
    return tfl.Ticket.load(os.path.join(*parts))


def test_random_pruning_from_init_and_from_the_trained_weights(tmp_path):
    config = tiny_config(rewind_to="1ep")
    config.run.branches = (
        "random_layerwise,random_layerwise_from_init,random_global_from_end,random_global,random_even"
    )
    root = run_levels(config, str(tmp_path))["root"]

    def metrics(branch):
        return run_store.read_metrics(os.path.join(root, "replicate_0", f"branch_{branch}", "round_1"))

    initial, trained = _ticket(root, 0), _ticket(root, 1, what="end")
    plain, from_init = _ticket(root, 1, "random_layerwise"), _ticket(root, 1, "random_layerwise_from_init")
    # One strategy draws the same masks whatever its start.
    for a, b in zip(plain.masks, from_init.masks):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(
        _ticket(root, 1, "random_global").masks, _ticket(root, 1, "random_global_from_end").masks
    ):
        np.testing.assert_array_equal(a, b)
    # from_init: the weights of step 0 under the random mask, trained from step 0.
    kernels = [0, 2, 4]  # fc1, fc2, output kernels among the weights
    for mask, index in zip(from_init.masks, kernels):
        np.testing.assert_array_equal(from_init.weights[index], initial.weights[index] * mask)
    assert (
        metrics("random_layerwise_from_init")["start_step"],
        metrics("random_layerwise")["start_step"],
    ) == (0, 14)
    # from_end: the weights the level-1 ticket ended with, under the random mask, from step 0.
    from_end = _ticket(root, 1, "random_global_from_end")
    for mask, index in zip(from_end.masks, kernels):
        np.testing.assert_array_equal(from_end.weights[index], trained.weights[index] * mask)
    np.testing.assert_array_equal(from_end.weights[1], trained.weights[1])  # biases are not masked
    assert (
        metrics("random_global_from_end")["start_step"],
        metrics("random_global_from_end")["end_step"],
    ) == (0, 42)
    # even: every layer at the ticket's overall sparsity.
    ticket = _ticket(root, 1)
    sparsity = 1 - sum(int(m.sum()) for m in ticket.masks) / sum(m.size for m in ticket.masks)
    even = _ticket(root, 1, "random_even")
    assert [m.size - int(m.sum()) for m in even.masks] == [round(sparsity * m.size) for m in even.masks]
    # Global magnitude pruning left the layers unequally sparse; even does not keep that.
    assert [int(m.sum()) for m in even.masks] != [int(m.sum()) for m in ticket.masks]
