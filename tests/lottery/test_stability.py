"""Linear interpolation, the error barrier, BatchNorm recomputation, the instability experiment."""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest

import tf_lottery as tfl
from tests.testing import TestCase, compile_classifier, mlp, toy_data
from tf_lottery.core.walk import model_variables
from tf_lottery.experiments import run_store
from tf_lottery.experiments.kinds import instability
from tf_lottery.lottery import stability


def test_error_barrier_is_the_peak_over_the_mean_of_the_end_points():
    assert stability.error_barrier([0.1, 0.3, 0.2]) == pytest.approx(0.15)
    assert stability.error_barrier([0.2, 0.2, 0.2]) == 0.0
    assert stability.error_barrier([0.4, 0.1, 0.2]) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="need at least the two end points"):
        stability.error_barrier([0.1])


def test_interpolate_and_l2_distance():
    a = [np.array([0.0, 2.0], "float32"), np.array([5], "int64")]
    b = [np.array([4.0, 4.0], "float32"), np.array([9], "int64")]
    mid = stability.interpolate(a, b, 0.25)
    np.testing.assert_allclose(mid[0], [1.0, 2.5])
    assert mid[0].dtype == np.float32 and mid[1][0] == 5
    assert stability.l2_distance(a[:1], b[:1]) == pytest.approx(np.sqrt(16 + 4))
    assert stability.l2_distance(a[:1], b[:1], masks=[np.array([False, True])]) == pytest.approx(2.0)


class TestLinearPath(TestCase):
    def _trained(self, seed=0):
        x, y = toy_data(256)
        keras.utils.set_random_seed(seed)
        model = compile_classifier(tfl.prunable(mlp()))
        tfl.prune(model, target_sparsity=0.5)
        model.fit(x, y, batch_size=32, epochs=5, verbose=0)
        return model, x, y

    def test_barrier_between_identical_networks_is_zero(self):
        model, x, y = self._trained()
        values = stability.model_values(model)
        path = stability.linear_path(model, values, values, {"train": (x, y)})
        assert path["alpha"] == pytest.approx(list(np.linspace(0, 1, 30)))
        assert len(set(path["train"])) == 1
        assert stability.error_barrier(path["train"]) == 0.0
        assert stability.l2_distance(values, values) == 0.0

    def test_barrier_between_a_network_and_its_permutation_is_positive(self):
        # Permuting the first hidden layer's units gives the same function (same end-point errors),
        # but the average of the two weight sets is another function: the path has a barrier.
        model, x, y = self._trained()
        values = stability.model_values(model)
        wrappers = tfl.prune_wrappers(model)
        kernel, bias = wrappers[0].layer.kernel, wrappers[0].layer.bias
        next_kernel = wrappers[1].layer.kernel
        order = np.random.default_rng(0).permutation(kernel.shape[1])
        permuted = []
        for variable, value in zip(model_variables(model), values):
            if variable is kernel:
                value = value[:, order]
            elif variable is bias:
                value = value[order]
            elif variable is next_kernel:
                value = value[order, :]
            permuted.append(value)
        # The permuted network has permuted masks: the path runs with all masks open.
        for wrapper in wrappers:
            wrapper.set_masks([np.ones(m.shape, bool) for m in wrapper.masks])
        path = stability.linear_path(model, values, permuted, {"train": (x, y)}, points=11)
        assert path["train"][0] == pytest.approx(path["train"][-1])
        assert stability.error_barrier(path["train"]) > 0.05
        assert stability.model_values(model)[0] == pytest.approx(values[0])

    def test_model_is_left_holding_the_first_end_point(self):
        model, x, y = self._trained()
        values = stability.model_values(model)
        other = [v * 0.5 for v in values]
        stability.linear_path(model, values, other, {"train": (x, y)}, points=3)
        for got, want in zip(stability.model_values(model), values):
            np.testing.assert_array_equal(got, want)

    def test_batch_statistics_are_recomputed_as_the_average_over_the_data(self):
        x, _ = toy_data(200)
        model = keras.Sequential(
            [keras.Input((40,)), keras.layers.Dense(8), keras.layers.BatchNormalization()]
        )
        dense_out = np.asarray(model.layers[0](x))
        norm = model.layers[1]
        assert stability.recompute_batch_statistics(model, (x, np.zeros(len(x))), batch_size=100) == 1
        np.testing.assert_allclose(norm.moving_mean.numpy(), dense_out.mean(axis=0), rtol=1e-4, atol=1e-5)
        halves = [dense_out[:100].var(axis=0), dense_out[100:].var(axis=0)]
        np.testing.assert_allclose(
            norm.moving_variance.numpy(), np.mean(halves, axis=0), rtol=1e-3, atol=1e-5
        )
        assert norm.momentum == 0.99

    def test_points_must_be_at_least_two(self):
        x, y = toy_data(16)
        model = tfl.prunable(mlp())
        values = stability.model_values(model)
        with pytest.raises(ValueError, match="Invalid value for argument `points`"):
            stability.linear_path(model, values, values, {"train": (x, y)}, points=1)


def _files(root):
    """`{path: mtime}` of every stored file of a run but its summaries (rewritten by each run)."""
    found = {}
    for directory, _, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            if os.path.relpath(path, root).startswith("replicate_"):
                found[path] = os.stat(path).st_mtime_ns
    return found


class TestInstabilityExperiment(TestCase):
    def test_small_run_writes_barriers_distances_and_a_plot(self, tmp_path):
        config = instability.defaults()
        config.dataset.train_limit = 800
        config.train.training_steps = "2ep"
        config.run.levels = 1
        config.run.steps_per_execution = 1
        config.instability.rewind_points = "0it,4it"
        config.instability.points = 4
        lines = []
        summary = instability.run_instability(config, str(tmp_path), log=lines.append)
        rows = summary["rows"]
        assert [(r["network"], r["rewind_step"]) for r in rows] == [
            ("dense", 0),
            ("imp", 0),
            ("random", 0),
            ("dense", 4),
            ("imp", 4),
            ("random", 4),
        ]
        for row in rows:
            assert len(row["path"]["test"]) == 4 and row["barrier_test"] >= 0.0 and row["l2_distance"] > 0
        assert rows[1]["sparsity"] == pytest.approx(0.2, abs=1e-3) and rows[1]["pruning_l2_distance"] > 0
        assert rows[2]["sparsity"] == rows[1]["sparsity"] and "random" in summary["table"]
        assert os.path.exists(summary["files"]["plot"])

        # Each rewind point is a line of the level loop, restarting from level 0's state there.
        replicate = os.path.join(summary["root"], "replicate_0")
        late = os.path.join(replicate, "branch_rewind_4it")
        start = tfl.Ticket.load(os.path.join(late, "round_1", "start.npz"))
        point, _ = run_store.load_state(os.path.join(replicate, "rewind_4.npz"))
        assert point.step == 4 and int(point.optimizer_values[0]) == 4
        np.testing.assert_array_equal(start.weights[0], point.model_values[0] * start.masks[0])
        # The IMP row's subnetwork is the line's last level; its copies train from the point to the end.
        imp_a, _ = run_store.load_state(
            os.path.join(replicate, "instability_rewind_4it", "round_1", "imp_1", "checkpoint.npz")
        )
        assert imp_a.step == 16 and int(imp_a.optimizer_values[0]) == 16
        pruned = ~start.masks[0].astype(bool)
        assert pruned.any() and not imp_a.model_values[0][pruned].any()

        stored = _files(summary["root"])
        again = instability.run_instability(config, str(tmp_path), log=lines.append)
        assert again["rows"] == rows  # every analysis is read back
        assert _files(summary["root"]) == stored  # nothing stored is rewritten or added

    def test_unknown_keys_are_refused(self, tmp_path):
        config = instability.defaults()
        config.instability.pionts = 3
        with pytest.raises(ValueError, match="Unknown config key `config.instability.pionts`"):
            instability.run_instability(config, str(tmp_path))

    def test_bad_rewind_points_and_controls_are_refused(self, tmp_path):
        config = instability.defaults()
        config.instability.rewind_points = "0it,5x"
        with pytest.raises(ValueError, match=r"`config.instability.rewind_points`: expected comma-separated"):
            instability.run_instability(config, str(tmp_path))
        config = instability.defaults()
        config.run.branches = "reinit"
        with pytest.raises(ValueError, match=r"`config.run.branches`: expected ''"):
            instability.run_instability(config, str(tmp_path))
