"""How a pruned level's start is pruned: IMP, one shot, and `config.pruning.scorer`."""

import os

import numpy as np
import pytest

import tf_lottery as tfl
from tests.testing import mlp, tiny_run_config
from tf_lottery.core.walk import get_masks
from tf_lottery.experiments import config_hash, schema
from tf_lottery.experiments.level_start import IterativePruning, OneShotPruning
from tf_lottery.experiments.runner import run_levels


def _pruning(**options):
    group = schema.defaults().pruning
    for key, value in options.items():
        group[key] = value
    return group


def _masks_after(schedule, level, seed=0, sparse_first=None):
    model = tfl.prunable(mlp(hidden=(16,)))
    model.build((None, 40))
    if sparse_first is not None:
        tfl.prune(model, target_sparsity=sparse_first)
    schedule.prune(model, level, seed)
    return model, get_masks(model)


def _kept_fraction(masks):
    return sum(int(m.sum()) for m in masks) / sum(m.size for m in masks)


def test_iterative_pruning_removes_the_rate_of_what_is_alive_from_the_level_before():
    schedule = IterativePruning(_pruning(rate=0.5))
    assert schedule.source_level(3) == 2
    _, masks = _masks_after(schedule, 3, sparse_first=0.5)
    assert _kept_fraction(masks) == pytest.approx(0.25, abs=2e-3)


def test_one_shot_pruning_starts_dense_and_reaches_imp_level_k_sparsity():
    schedule = OneShotPruning(_pruning(rate=0.5))
    assert schedule.source_level(3) == 0
    # The loaded network's masks are reset: level 3 keeps 0.5**3 of every weight, not of the survivors.
    _, masks = _masks_after(schedule, 3, sparse_first=0.5)
    assert _kept_fraction(masks) == pytest.approx(0.125, abs=2e-3)


def test_the_random_scorer_differs_from_magnitude_and_is_drawn_from_seed_and_level():
    _, magnitude = _masks_after(IterativePruning(_pruning(rate=0.5)), 1)
    random = IterativePruning(_pruning(rate=0.5, scorer="random"))
    _, drawn = _masks_after(random, 1, seed=0)
    _, again = _masks_after(random, 1, seed=0)
    _, other_level = _masks_after(random, 2, seed=0)
    _, other_seed = _masks_after(random, 1, seed=1)
    assert _kept_fraction(drawn) == pytest.approx(_kept_fraction(magnitude))
    assert any(not np.array_equal(a, b) for a, b in zip(drawn, magnitude))
    assert all(np.array_equal(a, b) for a, b in zip(drawn, again))
    assert any(not np.array_equal(a, b) for a, b in zip(drawn, other_level))
    assert any(not np.array_equal(a, b) for a, b in zip(drawn, other_seed))


def test_a_scorer_renames_the_run_and_changes_its_masks_the_default_keeps_both(tmp_path):
    config = tiny_run_config(training_steps="1ep", branches="")
    default = run_levels(config, str(tmp_path))
    assert config_hash.hparams(config) == config_hash.hparams(
        tiny_run_config(training_steps="1ep", branches="")
    )
    config.pruning.scorer = "random"
    random = run_levels(config, str(tmp_path))
    assert random["hash"] != default["hash"] and config_hash.hparams(config)["pruning.scorer"] == "random"

    def level_1(run):
        return tfl.Ticket.load(os.path.join(run["root"], "replicate_0", "round_1", "start.npz"))

    plain, drawn = level_1(default), level_1(random)
    assert _kept_fraction(drawn.masks) == pytest.approx(_kept_fraction(plain.masks), abs=1e-3)
    assert any(not np.array_equal(a, b) for a, b in zip(plain.masks, drawn.masks))
    # Magnitude (global scope) keeps every larger |w| of level 0's end; random does not.
    end = tfl.Ticket.load(os.path.join(default["root"], "replicate_0", "round_0", "end.npz"))
    kernels = np.concatenate([np.abs(end.weights[i]).ravel() for i in (0, 2, 4)])
    for masks, ordered in ((plain.masks, True), (drawn.masks, False)):
        kept = np.concatenate([m.ravel() for m in masks]) > 0
        assert (kernels[kept].min() >= kernels[~kept].max()) == ordered
