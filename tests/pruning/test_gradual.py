"""GradualPruning: prunes at the schedule's steps, exact counts, masks only shrink."""

import warnings

import keras
import numpy as np
import pytest

import tf_lottery as tfl
from tests.testing import (
    TestCase,
    compile_classifier,
    mlp,
    pruned_weights_are_zero,
    toy_data,
    two_replica_strategy,
)
from tf_lottery.pruning.gradual import unreachable_target_message
from tf_lottery.pruning.pruner import exact_count

BATCH = 32
N = 512  # 16 batches per epoch


def _masks(model):
    return [m for wr in tfl.prune_wrappers(model) for m in wr.get_masks()]


class MaskProbe(keras.callbacks.Callback):
    """Records the masks before every batch and the logged sparsity after it."""

    def __init__(self):
        super().__init__()
        self.before, self.logged = [], []

    def on_train_batch_begin(self, batch, logs=None):
        self.before.append(_masks(self.model))

    def on_train_batch_end(self, batch, logs=None):
        self.logged.append(logs["sparsity"])


def _fit(callback, epochs=3, probe=None, model=None, n=N, **compile_kwargs):
    model = model or compile_classifier(tfl.prunable(mlp()), **compile_kwargs)
    x, y = toy_data(n)
    callbacks = [callback] + ([probe] if probe else [])
    history = model.fit(x, y, batch_size=BATCH, epochs=epochs, verbose=0, callbacks=callbacks)
    return model, history


class TestGradualPruning(TestCase):
    def test_prunes_before_each_scheduled_batch_with_exact_counts_and_masks_only_shrink(self):
        schedule = tfl.PolynomialDecay(0.0, 0.8, begin_step=3, end_step=39, frequency=4)
        probe = MaskProbe()
        model, history = _fit(tfl.GradualPruning(schedule, scope="global"), probe=probe)
        total = sum(m.size for m in probe.before[0])
        scheduled = [s for s in range(1, 49) if schedule(s)[0]]
        assert scheduled == list(range(3, 40, 4))
        for step in range(1, 49):  # step s is batch s (1-based); its masks are in before[s - 1]
            masks = probe.before[step - 1]
            pruned = total - sum(int(m.sum()) for m in masks)
            latest = [s for s in scheduled if s <= step]
            assert pruned == (exact_count(schedule(latest[-1])[1], total) if latest else 0), step
            if step > 1:
                for old, new in zip(probe.before[step - 2], masks):
                    assert not np.any(new & ~old)  # masks only shrink
            assert probe.logged[step - 1] == pytest.approx(pruned / total)
        assert history.history["sparsity"][-1] == pytest.approx(exact_count(0.8, total) / total)
        assert pruned_weights_are_zero(model)

    def test_steps_per_execution_prunes_at_the_first_boundary_at_or_after_the_step(self):
        schedule = tfl.PolynomialDecay(0.0, 0.7, begin_step=4, end_step=44, frequency=5)
        callback = tfl.GradualPruning(schedule, scope="global")
        probe = MaskProbe()
        # 15 batches per epoch in blocks of 3: Keras returns to the host before
        # steps 1, 4, 7, ..., 43 (blocks do not cross epochs).
        model, _ = _fit(callback, probe=probe, n=480, steps_per_execution=3)
        total = sum(m.size for m in probe.before[0])
        scheduled = [s for s in range(1, 46) if schedule(s)[0] and schedule(s)[1] > 0]
        assert [s for s, _ in callback.events] == scheduled
        assert len(probe.before) == 15
        for block, masks in enumerate(probe.before):
            first_step = 3 * block + 1
            latest = [s for s in scheduled if s <= first_step]
            pruned = total - sum(int(m.sum()) for m in masks)
            assert pruned == (exact_count(schedule(latest[-1])[1], total) if latest else 0)
            assert probe.logged[block] == pytest.approx(pruned / total)
        # 44 is scheduled inside the last block (43-45): applied when training ends.
        assert callback.events[-1][0] == 44
        assert total - sum(int(m.sum()) for m in probe.before[-1]) < exact_count(0.7, total)
        pruned = total - sum(int(m.sum()) for m in _masks(model))
        assert pruned == exact_count(0.7, total)
        assert pruned_weights_are_zero(model)

    def test_xla_compiled_steps(self):
        schedule = tfl.PolynomialDecay(0.0, 0.75, begin_step=1, end_step=41, frequency=8)
        model, history = _fit(
            tfl.GradualPruning(schedule, scope="global"), jit_compile=True, steps_per_execution=4
        )
        total = sum(m.size for m in _masks(model))
        assert history.history["sparsity"][-1] == pytest.approx(exact_count(0.75, total) / total)
        assert pruned_weights_are_zero(model)

    def test_the_count_continues_across_fit_calls(self):
        schedule = tfl.ConstantSparsity(0.5, begin_step=20, frequency=100)
        callback = tfl.GradualPruning(schedule)
        with pytest.warns(UserWarning, match=r"cannot reach .* steps 1 to 16 .*`begin_step=20` is after"):
            model, history = _fit(callback, epochs=1)  # steps 1-16
        assert history.history["sparsity"] == [0.0]
        _, history = _fit(callback, epochs=1, model=model)  # steps 17-32
        assert callback.events[0][0] == 20
        assert history.history["sparsity"][0] == pytest.approx(0.5, abs=1e-3)

    def test_layer_scope_and_layer_rates(self):
        schedule = tfl.PolynomialDecay(0.0, 0.6, begin_step=1, end_step=29, frequency=4)
        model, _ = _fit(tfl.GradualPruning(schedule, scope="layer", layer_rates={"output": 0.3}), epochs=2)
        for wrapper in tfl.prune_wrappers(model):
            mask = wrapper.get_masks()[0]
            rate = 0.3 if wrapper.layer.name == "output" else 0.6
            assert mask.size - mask.sum() == exact_count(rate, mask.size), wrapper.layer.name

    def test_n_m_structure_holds_after_training(self):
        from tf_lottery.pruning.structure import model_violations

        schedule = tfl.PolynomialDecay(0.0, 0.5, begin_step=1, end_step=33, frequency=8)
        model, _ = _fit(tfl.GradualPruning(schedule, structure="2:4"), epochs=3)
        assert set(model_violations(model, "2:4").values()) == {0}
        for wrapper in tfl.prune_wrappers(model):
            groups = wrapper.get_masks()[0].reshape(-1, 4, wrapper.get_masks()[0].shape[-1])
            assert np.all(groups.sum(axis=1) == 2)

    def test_mirrored_strategy(self):
        strategy = two_replica_strategy()
        schedule = tfl.PolynomialDecay(0.0, 0.75, begin_step=1, end_step=13, frequency=3)
        with strategy.scope():
            model = compile_classifier(
                tfl.prunable(mlp()), optimizer=keras.optimizers.SGD(0.05, momentum=0.9)
            )
        callback = tfl.GradualPruning(schedule, scope="global")
        _, history = _fit(callback, epochs=2, model=model)
        total = sum(m.size for m in _masks(model))
        assert history.history["sparsity"][-1] == pytest.approx(exact_count(0.75, total) / total)
        assert [s for s, _ in callback.events] == [4, 7, 10, 13]  # step 1 is at 0%
        assert pruned_weights_are_zero(model)
        for wrapper in tfl.prune_wrappers(model):
            replicas = [np.asarray(v) for v in wrapper.layer.kernel.value.values]
            np.testing.assert_array_equal(replicas[0], replicas[1])
            masks = [np.asarray(v) for v in wrapper.masks[0].value.values]
            np.testing.assert_array_equal(masks[0], masks[1])

    def test_default_scope_is_per_layer_as_in_tfmot(self):
        # Was: global by default, so a tfmot port gave conv ~28% / dense ~80% instead of 80% / 80%.
        def conv_dense():
            model = keras.Sequential(
                [
                    keras.Input((8, 8, 1)),
                    keras.layers.Conv2D(8, 3, activation="relu", name="conv"),
                    keras.layers.Flatten(),
                    keras.layers.Dense(4, name="output"),
                ]
            )
            return compile_classifier(tfl.prunable(model))

        x = np.random.default_rng(0).normal(size=(64, 8, 8, 1)).astype("float32")
        y = np.random.default_rng(1).integers(0, 4, 64)
        end_step = int(np.ceil(64 / 16)) * 2  # tfmot's guide: ceil(num_images / batch_size) * epochs
        schedule = tfl.PolynomialDecay(0.5, 0.8, begin_step=0, end_step=end_step, frequency=2)
        sparsities = {}
        for scope in (None, "global"):
            model = conv_dense()
            kwargs = {} if scope is None else {"scope": scope}
            model.fit(
                x, y, batch_size=16, epochs=2, verbose=0, callbacks=[tfl.GradualPruning(schedule, **kwargs)]
            )
            sparsities[scope] = {
                wr.layer.name: 1.0 - wr.get_masks()[0].mean() for wr in tfl.prune_wrappers(model)
            }
        for name, size in (("conv", 72), ("output", 1152)):
            assert sparsities[None][name] == exact_count(0.8, size) / size, name
        # Global keeps the same overall count but spreads it unevenly (the old default).
        assert sparsities["global"]["output"] - sparsities["global"]["conv"] > 0.2

    def test_warns_when_a_tfmot_port_cannot_reach_its_target_in_this_fit(self):
        # tfmot's guide on 64 examples: end_step = ceil(64 / 32) * 2 = 4, default frequency=100.
        end_step = int(np.ceil(64 / BATCH)) * 2
        schedule = tfl.PolynomialDecay(0.50, 0.80, begin_step=0, end_step=end_step)
        with pytest.warns(UserWarning) as record:
            model, _ = _fit(tfl.GradualPruning(schedule), epochs=2, n=64)
        messages = [str(w.message) for w in record if "GradualPruning" in str(w.message)]
        assert len(messages) == 1
        assert "end_step=4" in messages[0] and "frequency=100" in messages[0]
        assert "runs steps 1 to 4 (2 epoch(s) of 2 steps)" in messages[0]
        assert "no step of this fit is a pruning step, so the sparsity stays 0" in messages[0]
        assert "e.g. `frequency=1`" in messages[0]
        assert all(m.all() for m in _masks(model))  # what the warning says: nothing was pruned
        # Partly reachable: the last pruning step (100) is short of end_step=150.
        partial = tfl.PolynomialDecay(0.5, 0.8, begin_step=0, end_step=150)
        text = unreachable_target_message(partial, 0, 75, 2, 0.0)
        assert "last pruning step in this fit is step 100, at sparsity 0.7889" in text
        assert "e.g. `frequency=15`" in text

    def test_no_warning_when_the_schedule_is_reachable(self):
        end_step = int(np.ceil(64 / BATCH)) * 2
        schedule = tfl.PolynomialDecay(0.50, 0.80, begin_step=0, end_step=end_step, frequency=1)
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            model, _ = _fit(tfl.GradualPruning(schedule), epochs=2, n=64)
        assert not [w for w in record if "GradualPruning" in str(w.message)]
        for mask in _masks(model):
            assert mask.size - mask.sum() == exact_count(0.8, mask.size)
        # tfmot's guide at full size: end_step=844 is not on a pruning step, but step 800
        # reaches 0.79996: within 1e-3 of the target, so no warning.
        big = tfl.PolynomialDecay(0.5, 0.8, begin_step=0, end_step=844)
        assert unreachable_target_message(big, 0, 422, 2, 0.0) is None

    def test_config_round_trip(self):
        callback = tfl.GradualPruning(
            tfl.PolynomialDecay(0.1, 0.7, 0, 100), scope="layer", layer_rates={"out*": 0.5}, structure="1:4"
        )
        clone = tfl.GradualPruning.from_config(callback.get_config())
        assert clone.get_config() == callback.get_config()
        assert clone.schedule == callback.schedule
        restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(callback))
        assert restored.get_config() == callback.get_config()

    def test_bad_arguments(self):
        schedule = tfl.ConstantSparsity(0.6, 0)
        with pytest.raises(
            ValueError, match=r"final sparsity 0\.6 is above 0\.5, the most structure '2:4' allows"
        ):
            tfl.GradualPruning(schedule, structure="2:4")
        with pytest.raises(ValueError, match=r"`scope`: expected one of \('global', 'layer'\)"):
            tfl.GradualPruning(schedule, scope="net")
        with pytest.raises(ValueError, match=r"`layer_rates\['output'\]`: expected a float in \[0, 1\)"):
            tfl.GradualPruning(schedule, layer_rates={"output": 1.5})
        with pytest.raises(ValueError, match=r"`schedule`: expected a PruningSchedule"):
            tfl.GradualPruning(0.5)
        with pytest.raises(ValueError, match="has no PruneWrapper layers"):
            _fit(tfl.GradualPruning(schedule), model=compile_classifier(mlp()))


@pytest.mark.parametrize(
    "name, kwargs",
    [
        (
            "PolynomialDecay",
            dict(initial_sparsity=0.1, final_sparsity=0.8, begin_step=2, end_step=14, frequency=3),
        ),
        ("ConstantSparsity", dict(target_sparsity=0.6, begin_step=4, end_step=-1, frequency=5)),
    ],
)
def test_prunes_at_the_same_batches_to_the_same_counts_as_tfmot(name, kwargs):
    tfmot = pytest.importorskip("tensorflow_model_optimization")
    import tf_keras

    x, y = toy_data(64, input_dim=8, classes=4)

    def layer_sparsities(kernels_and_masks):
        return [1.0 - float(np.mean(mask)) for mask in kernels_and_masks]

    # tfmot, under tf_keras: per-layer mask sparsity after every batch.
    theirs = []
    model = tf_keras.Sequential([tf_keras.layers.Dense(16, input_shape=(8,)), tf_keras.layers.Dense(4)])
    model = tfmot.sparsity.keras.prune_low_magnitude(
        model, pruning_schedule=getattr(tfmot.sparsity.keras, name)(**kwargs)
    )
    model.compile("sgd", tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    masks = [v for v in model.weights if "mask" in v.name]
    record = tf_keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda b, logs: theirs.append(layer_sparsities([m.numpy() for m in masks]))
    )
    model.fit(
        x, y, batch_size=4, epochs=1, verbose=0, callbacks=[tfmot.sparsity.keras.UpdatePruningStep(), record]
    )

    ours = []
    model = tfl.prunable(keras.Sequential([keras.Input((8,)), keras.layers.Dense(16), keras.layers.Dense(4)]))
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda b, logs: ours.append(layer_sparsities(_masks(model)))
    )
    schedule = getattr(tfl, name)(**kwargs)
    model.fit(
        x,
        y,
        batch_size=4,
        epochs=1,
        verbose=0,
        callbacks=[tfl.GradualPruning(schedule, scope="layer"), record],
    )

    assert len(ours) == len(theirs) == 16
    np.testing.assert_allclose(ours, theirs, atol=1e-9)
    assert max(ours[-1]) > 0.5
