"""Rewind points, snapshots and reinitialisation."""

import keras
import numpy as np
import pytest

import tf_lottery as tfl
from tests.testing import TestCase, compile_classifier, toy_data
from tf_lottery.core import optimizer_slots
from tf_lottery.core.walk import model_variables


class TestRewindPoint:
    @pytest.mark.parametrize(
        "text, amount, unit",
        [("0it", 0, "it"), ("500it", 500, "it"), ("2ep", 2, "ep"), (" 3 ep ", 3, "ep"), (7, 7, "it")],
    )
    def test_parse(self, text, amount, unit):
        point = tfl.RewindPoint.parse(text)
        assert (point.amount, point.unit) == (amount, unit)

    @pytest.mark.parametrize("bad", ["5x", "it", "-1it", "1.5ep", "", None, -3, True])
    def test_parse_errors_name_the_argument_and_the_fix(self, bad):
        with pytest.raises(ValueError, match=r"Invalid value for argument `rewind_to`: expected '<N>it'"):
            tfl.RewindPoint.parse(bad)

    def test_step(self):
        assert tfl.RewindPoint.parse("2ep").step(50) == 100
        assert tfl.RewindPoint.parse("30it").step(None) == 30
        assert tfl.RewindPoint.parse("2ep").step(None) is None


def _bn_model():
    model = tfl.prunable(
        keras.Sequential(
            [
                keras.Input((20,)),
                keras.layers.Dense(16),
                keras.layers.BatchNormalization(),
                keras.layers.ReLU(),
                keras.layers.Dense(4),
            ]
        )
    )
    compile_classifier(model, keras.optimizers.SGD(0.1, momentum=0.9))
    return model


class TestSnapshot(TestCase):
    def test_restore_brings_back_weights_statistics_and_optimizer_times_mask(self):
        model = _bn_model()
        x, y = toy_data(64, 20, 4)
        model.fit(x, y, batch_size=16, epochs=1, verbose=0)
        snapshot = tfl.Snapshot.capture(model, step=4)
        assert int(snapshot.optimizer_values[0]) == 4  # iterations
        model.fit(x, y, batch_size=16, epochs=2, verbose=0)
        tfl.prune(model, rate=0.5)
        snapshot.restore_weights(model)
        snapshot.restore_optimizer(model)
        assert int(model.optimizer.iterations.numpy()) == 4
        masks = {
            id(w): m for wr in tfl.prune_wrappers(model) for w, m in zip(wr.pruned_weights, wr.get_masks())
        }
        for variable, value in zip(model_variables(model), snapshot.model_values):
            expected = value * masks[id(variable)] if id(variable) in masks else value
            np.testing.assert_array_equal(variable.numpy(), expected)
        # The optimizer's slots come back too, at 0 where the weight is pruned
        # now (sparse-equivalent training keeps them there).
        slot_masks = {
            id(slot): masks[id(w)]
            for wr in tfl.prune_wrappers(model)
            for w in wr.pruned_weights
            for slot in optimizer_slots.slots_for(model.optimizer, w)
        }
        assert len(slot_masks) == len(masks)  # SGD momentum: one slot per kernel
        for variable, value in zip(model.optimizer.variables, snapshot.optimizer_values):
            expected = value * slot_masks[id(variable)] if id(variable) in slot_masks else value
            np.testing.assert_array_equal(variable.numpy(), expected)

    def test_snapshot_for_another_model_is_refused(self):
        snapshot = tfl.Snapshot.capture(_bn_model(), 0)
        other = tfl.prunable(keras.Sequential([keras.Input((20,)), keras.layers.Dense(3)]))
        with pytest.raises(ValueError, match="does not fit this model"):
            snapshot.restore_weights(other)


class TestSnapshotFile(TestCase):
    """`Snapshot.save` / `load`: the one on-disk snapshot format (run store and `state_dir` alike)."""

    def test_round_trip_is_exact_with_info(self, tmp_path):
        model = _bn_model()
        x, y = toy_data(64, 20, 4)
        model.fit(x, y, batch_size=16, epochs=1, verbose=0)
        snapshot = tfl.Snapshot.capture(model, step=4)
        path = str(tmp_path) + "/snap.npz"
        snapshot.save(path, {"run": "abc"})
        loaded, info = tfl.Snapshot.load(path)
        assert info == {"step": 4, "run": "abc"} and loaded.step == 4
        assert len(loaded.model_values) == len(snapshot.model_values) > 0
        assert len(loaded.optimizer_values) == len(snapshot.optimizer_values) > 0
        for a, b in zip(
            loaded.model_values + loaded.optimizer_values, snapshot.model_values + snapshot.optimizer_values
        ):
            assert a.dtype == b.dtype and np.array_equal(a, b)

    def test_damaged_or_foreign_files_are_named(self, tmp_path):
        from tf_lottery.utils import atomic_io

        path = str(tmp_path) + "/bad.npz"
        with open(path, "wb") as f:
            f.write(b"PK\x03\x04truncated")
        with pytest.raises(atomic_io.DamagedFileError, match="bad.npz"):
            tfl.Snapshot.load(path)
        np.savez(path, m00000=np.zeros(3))  # no info entry: not a snapshot
        with pytest.raises(atomic_io.DamagedFileError, match="'info' is missing"):
            tfl.Snapshot.load(path)

    def test_state_dir_writes_the_snapshot_format(self, tmp_path):
        from tf_lottery.lottery import callback_state

        snapshot = tfl.Snapshot.capture(_bn_model(), step=7)
        directory = str(tmp_path)
        callback_state.write_rewind_point(directory, snapshot, "run-1")
        snapshot.save(directory + "/saved.npz", {"run": "run-1"})
        with (
            open(directory + "/" + callback_state.REWIND_FILE, "rb") as a,
            open(directory + "/saved.npz", "rb") as b,
        ):
            assert a.read() == b.read()
        shapes = [v.shape for v in snapshot.model_values]
        read = callback_state.read_rewind_point(directory, "run-1", shapes)
        assert read.step == 7
        assert all(np.array_equal(a, b) for a, b in zip(read.model_values, snapshot.model_values))
        assert callback_state.read_rewind_point(directory, "another run", shapes) is None

    def test_state_dir_reads_the_previous_layout(self, tmp_path):
        # tf_lottery 0.1.0 stored `step` and `run` as arrays beside the values.
        from tf_lottery.lottery import callback_state

        snapshot = tfl.Snapshot.capture(_bn_model(), step=3)
        arrays = {f"m{i:05d}": v for i, v in enumerate(snapshot.model_values)}
        arrays.update({f"o{i:05d}": v for i, v in enumerate(snapshot.optimizer_values)})
        directory = str(tmp_path)
        np.savez(
            directory + "/" + callback_state.REWIND_FILE, step=np.asarray(3), run=np.asarray("r"), **arrays
        )
        read = callback_state.read_rewind_point(directory, "r", [v.shape for v in snapshot.model_values])
        assert read.step == 3
        assert all(np.array_equal(a, b) for a, b in zip(read.optimizer_values, snapshot.optimizer_values))


class TestReinitialize(TestCase):
    def test_fresh_draw_from_each_layers_initializer(self):
        model = _bn_model()
        before = [v.numpy().copy() for v in model_variables(model)]
        tfl.prune(model, rate=0.5)
        masks = [m for wr in tfl.prune_wrappers(model) for m in wr.get_masks()]
        tfl.reinitialize(model, seed=7)
        after = {v.path.split("/")[-1] + str(i): v.numpy() for i, v in enumerate(model_variables(model))}
        kernels = [v for k, v in after.items() if k.startswith("kernel")]
        # New values, same initializer statistics, masks respected.
        for kernel, old, mask in zip(kernels, [before[0], before[6]], masks):
            assert not np.allclose(kernel[mask], old[mask])
            np.testing.assert_array_equal(kernel[~mask], 0.0)
            limit = np.sqrt(6 / sum(kernel.shape))  # Glorot uniform
            assert np.abs(kernel).max() <= limit
        for name, value in after.items():
            if name.startswith("moving_variance") or name.startswith("gamma"):
                np.testing.assert_array_equal(value, 1.0)
            if name.startswith("moving_mean") or name.startswith("beta") or name.startswith("bias"):
                np.testing.assert_array_equal(value, 0.0)

    def test_reproducible_by_seed(self):
        a, b = _bn_model(), _bn_model()
        tfl.reinitialize(a, seed=3)
        tfl.reinitialize(b, seed=3)
        for va, vb in zip(model_variables(a), model_variables(b)):
            np.testing.assert_array_equal(va.numpy(), vb.numpy())
