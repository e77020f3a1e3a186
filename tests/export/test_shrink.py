"""shrink: pruned units, filters and channels physically removed; outputs equal the masked model's."""

import os

import keras
import numpy as np
import pytest

import tf_lottery as tfl
from tests.testing import TestCase
from tf_lottery.core.units import CONSUMER, PRODUCER, UnitGroup, UnitSlice, switch_off
from tf_lottery.core.walk import prune_wrappers
from tf_lottery.export.shrink import register_internal_shrinker, shrink


def _by_name(model):
    return {w.layer.name: w for w in prune_wrappers(model)}


def _slice(wrapper, axis, role, units, positions=None):
    positions = np.arange(units)[:, None] if positions is None else positions
    return UnitSlice(wrapper, 0, axis, positions, role)


def _randomize(model, seed=0):
    """Non-zero biases, BatchNorm shifts and statistics: they must reach nothing once a unit is off."""
    rng = np.random.default_rng(seed)
    for v in model.weights:
        if v.dtype == "bool":
            continue
        value = (0.3 * rng.normal(size=v.shape)).astype("float32")
        if "variance" in v.path:
            value = np.abs(value) + 0.5
        v.assign(value)


def _switch_off(model, dead: list):
    """Masks producers and readers of the `dead` units of each group (`[(group, units)]`)."""
    wrappers = prune_wrappers(model)
    masks = {(id(w), i): m.copy() for w in wrappers for i, m in enumerate(w.get_masks())}
    for group, units in dead:
        switch_off(group, np.array(units), masks)
    for w in wrappers:
        w.set_masks([masks[(id(w), i)] for i in range(len(w.masks))])


def _mlp():
    model = tfl.prunable(
        keras.Sequential(
            [
                keras.Input((10,)),
                keras.layers.Dense(16, activation="relu", name="h1"),
                keras.layers.Dense(12, activation="relu", name="h2"),
                keras.layers.Dense(3, name="out"),
            ],
            name="mlp",
        )
    )
    _randomize(model)
    w = _by_name(model)
    g1 = UnitGroup("h1", "channels", 16, [_slice(w["h1"], 1, PRODUCER, 16), _slice(w["h2"], 0, CONSUMER, 16)])
    g2 = UnitGroup(
        "h2", "channels", 12, [_slice(w["h2"], 1, PRODUCER, 12), _slice(w["out"], 0, CONSUMER, 12)]
    )
    return model, [g1, g2]


def _conv_net():
    """Conv + BN, a residual Add with a raw-op ReLU, a depthwise conv, a Concatenate and a Flatten."""
    x = keras.Input((8, 8, 3))
    c1 = keras.layers.Conv2D(8, 3, padding="same", name="c1")(x)
    h = keras.layers.ReLU(name="r1")(keras.layers.BatchNormalization(name="bn1")(c1))
    h = keras.layers.BatchNormalization(name="bn2")(keras.layers.Conv2D(8, 3, padding="same", name="c2")(h))
    s = keras.ops.relu(h + keras.layers.Conv2D(8, 1, name="proj")(x))
    d = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(s)
    d = keras.layers.BatchNormalization(name="bn_dw")(d)
    c3 = keras.layers.Conv2D(6, 1, name="c3")(d)
    q = keras.layers.Conv2D(4, 1, name="q")(x)
    cat = keras.layers.Concatenate(name="cat")([c3, q])
    flat = keras.layers.Flatten(name="flat")(keras.layers.MaxPooling2D(2, name="pool")(cat))
    out = keras.layers.Dense(5, name="out")(flat)
    model = tfl.prunable(keras.Model(x, out, name="convnet"))
    _randomize(model)
    w = _by_name(model)
    flat_rows = np.arange(16)[None, :] * 10  # 4x4 positions of the 10 concatenated channels
    groups = [
        UnitGroup("c1", "channels", 8, [_slice(w["c1"], 3, PRODUCER, 8), _slice(w["c2"], 2, CONSUMER, 8)]),
        UnitGroup(
            "c2+proj",
            "channels",
            8,
            [
                _slice(w["c2"], 3, PRODUCER, 8),
                _slice(w["proj"], 3, PRODUCER, 8),
                _slice(w["dw"], 2, PRODUCER, 8),
                _slice(w["c3"], 2, CONSUMER, 8),
            ],
        ),
        UnitGroup(
            "c3",
            "channels",
            6,
            [
                _slice(w["c3"], 3, PRODUCER, 6),
                _slice(w["out"], 0, CONSUMER, 6, np.arange(6)[:, None] + flat_rows),
            ],
        ),
        UnitGroup(
            "q",
            "channels",
            4,
            [
                _slice(w["q"], 3, PRODUCER, 4),
                _slice(w["out"], 0, CONSUMER, 4, 6 + np.arange(4)[:, None] + flat_rows),
            ],
        ),
    ]
    return model, groups


def _max_diff(a, b, x):
    return float(np.max(np.abs(keras.ops.convert_to_numpy(a(x)) - keras.ops.convert_to_numpy(b(x)))))


def _values(model):
    return [np.array(keras.ops.convert_to_numpy(v)) for v in model.weights]


class TestShrink(TestCase):
    def test_mlp_units_are_removed_and_outputs_equal_the_masked_model(self):
        model, (g1, g2) = _mlp()
        _switch_off(model, [(g1, [1, 5, 7, 8]), (g2, [0, 11])])
        before = _values(model)
        small, report = shrink(model, groups=[g1, g2], return_report=True)
        assert isinstance(small, keras.Sequential) and small.name == "mlp"
        assert [layer.name for layer in small.layers] == ["h1", "h2", "out"]
        assert [layer.units for layer in small.layers] == [12, 10, 3]
        assert not any(isinstance(layer, tfl.PruneWrapper) for layer in small.layers)
        x = np.random.default_rng(1).normal(size=(32, 10)).astype("float32")
        assert _max_diff(model, small, x) <= 1e-5
        assert report.params_before == (10 * 16 + 16) + (16 * 12 + 12) + (12 * 3 + 3) == 419
        assert report.params_after == small.count_params() == (10 * 12 + 12) + (12 * 10 + 10) + (10 * 3 + 3)
        rows = {row.name: row for row in report.layers}
        assert (rows["h1"].units_before, rows["h1"].units_after) == (16, 12)
        assert (rows["h1"].params_before, rows["h1"].params_after) == (176, 132)
        assert (rows["out"].units_before, rows["out"].units_after, rows["out"].params_after) == (3, 3, 33)
        assert "total" in str(report) and "16 -> 12" in str(report)
        # The input model is unchanged.
        assert all(np.array_equal(a, b) for a, b in zip(before, _values(model)))

    def test_conv_bn_residual_depthwise_concat_flatten_and_raw_ops(self):
        model, groups = _conv_net()
        _switch_off(model, list(zip(groups, ([0, 3], [2, 5, 6], [1], [0, 2]))))
        small, report = shrink(model, groups=groups, return_report=True)
        layers = {layer.name: layer for layer in small.layers}
        assert [layers[n].filters for n in ("c1", "c2", "proj", "c3", "q")] == [6, 5, 5, 5, 2]
        assert layers["bn1"].gamma.shape == (6,) and layers["bn_dw"].moving_variance.shape == (5,)
        assert tuple(layers["dw"].kernel.shape) == (3, 3, 5, 1) and layers["dw"].bias.shape == (5,)
        assert tuple(layers["out"].kernel.shape) == (16 * 7, 5)
        x = np.random.default_rng(2).normal(size=(4, 8, 8, 3)).astype("float32")
        assert _max_diff(model, small, x) <= 1e-5
        assert report.params_after == small.count_params() < report.params_before
        rows = {row.name: row for row in report.layers}
        assert (rows["bn_dw"].units_before, rows["bn_dw"].units_after) == (8, 5)
        assert (rows["out"].params_before - rows["out"].params_after) == 16 * 3 * 5

    def test_a_unit_whose_readers_still_read_it_is_kept(self):
        # Producer column masked, reader rows not: relu(bias) still reaches the next layer.
        model, (g1, g2) = _mlp()
        _switch_off(model, [(g1, [2])])
        w = _by_name(model)["h1"]
        mask = w.get_masks()[0]
        mask[:, 4] = False
        w.set_masks([mask])
        small = shrink(model, groups=[g1, g2])
        assert small.layers[0].units == 15
        x = np.random.default_rng(3).normal(size=(8, 10)).astype("float32")
        assert _max_diff(model, small, x) <= 1e-5

    def test_a_layer_with_every_unit_pruned_keeps_one_read_by_nothing(self):
        model, (g1, g2) = _mlp()
        _switch_off(model, [(g1, np.arange(16))])
        with pytest.warns(
            UserWarning, match=r"every unit of 1 layer group\(s\) is pruned \(h1\).*scope='layer'"
        ):
            small = shrink(model, groups=[g1, g2])
        assert [layer.units for layer in small.layers] == [1, 12, 3]
        x = np.random.default_rng(8).normal(size=(4, 10)).astype("float32")
        assert _max_diff(model, small, x) <= 1e-5

    def test_unstructured_masks_say_nothing_can_be_removed(self):
        model, groups = _mlp()
        w = _by_name(model)["h1"]
        mask = w.get_masks()[0]
        mask[:, 4] = False  # a whole column, but its readers still read it
        mask[0, :] = False
        w.set_masks([mask])
        with pytest.raises(ValueError, match=r"nothing can be removed.*1 unit\(s\).*structure='channels'"):
            shrink(model, groups=groups)

    def test_a_model_without_wrappers_is_refused(self):
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        with pytest.raises(ValueError, match=r"`model`.*no PruneWrapper.*tfl.prunable"):
            shrink(model, groups=[])
        with pytest.raises(ValueError, match=r"`model`: expected a Sequential or functional"):
            shrink(keras.layers.Dense(2), groups=[])

    def test_saves_as_keras_and_exports(self, tmp_path):
        model, (g1, g2) = _mlp()
        _switch_off(model, [(g1, [0, 1, 2, 3]), (g2, [5])])
        small = shrink(model, groups=[g1, g2])
        x = np.random.default_rng(4).normal(size=(8, 10)).astype("float32")
        expected = keras.ops.convert_to_numpy(model(x))
        path = str(tmp_path / "small.keras")
        small.save(path)
        loaded = keras.saving.load_model(path)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)), expected, atol=1e-5)
        assert loaded.layers[0].units == 12
        saved = tfl.export_saved_model(small, str(tmp_path / "serving"))
        import tensorflow as tf

        served = tf.saved_model.load(saved).signatures["serving_default"]
        (out,) = served(tf.constant(x)).values()
        np.testing.assert_allclose(out.numpy(), expected, atol=1e-5)
        flatbuffer = tfl.export_tflite(small, str(tmp_path / "small.tflite"))
        assert os.path.getsize(flatbuffer) > 0
        (out,) = tfl.tflite_runner(flatbuffer)(inputs=x).values()
        np.testing.assert_allclose(out, expected, atol=1e-5)

    def test_a_sequential_keeps_its_input_name_so_the_served_signature_is_unchanged(self, tmp_path):
        # Was: the rebuilt Sequential's input was unnamed, so the export's input became `inputs`
        # instead of `signal` and a client of the masked model's export broke.
        model = tfl.prunable(
            keras.Sequential(
                [
                    keras.Input((8,), name="signal"),
                    keras.layers.Dense(8),
                    keras.layers.Dense(2, name="logits"),
                ]
            )
        )
        tfl.prune(model, target_sparsity=0.5, structure="channels", scope="layer")
        small = shrink(model)
        assert [t.name for t in small.inputs] == ["signal"]
        x = np.random.default_rng(5).normal(size=(2, 8)).astype("float32")
        (out,) = tfl.tflite_runner(tfl.export_tflite(small, str(tmp_path / "s.tflite"), verbose=0))(
            signal=x
        ).values()
        np.testing.assert_allclose(out, keras.ops.convert_to_numpy(model(x)), atol=1e-5)

    def test_internal_shrinker_is_called_for_its_class(self):
        class Scale(keras.layers.Layer):
            def build(self, input_shape):
                self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones")

            def call(self, x):
                return x * self.w

        calls = []

        def fn(layer):
            calls.append(layer.name)
            new = Scale(name=layer.name)
            new.build((None, 3))
            new.w.assign(layer.w * 2.0)
            return new

        register_internal_shrinker(Scale, fn)
        try:
            x = keras.Input((10,))
            out = Scale(name="scale")(keras.layers.Dense(3, name="d3")(keras.layers.Dense(16, name="h1")(x)))
            model = tfl.prunable(keras.Model(x, out))
            w = _by_name(model)
            group = UnitGroup(
                "h1", "channels", 16, [_slice(w["h1"], 1, PRODUCER, 16), _slice(w["d3"], 0, CONSUMER, 16)]
            )
            _switch_off(model, [(group, [3])])
            small = shrink(model, groups=[group])
        finally:
            from tf_lottery.export import shrink_graph as module

            module._INTERNAL_SHRINKERS.remove((Scale, fn))
        assert calls == ["scale"]
        data = np.ones((2, 10), "float32")
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(small(data)), 2 * keras.ops.convert_to_numpy(model(data)), atol=1e-5
        )

    def test_einsum_dense_units_through_dropout_on_a_sequence(self):
        x = keras.Input((5, 10))
        h = keras.layers.EinsumDense("abc,cd->abd", output_shape=(None, 16), bias_axes="d", name="ein")(x)
        h = keras.layers.Dropout(0.5, name="drop")(keras.layers.Activation("gelu", name="act")(h))
        model = tfl.prunable(keras.Model(x, keras.layers.Dense(4, name="out")(h)))
        _randomize(model)
        w = _by_name(model)
        group = UnitGroup(
            "ein", "channels", 16, [_slice(w["ein"], 1, PRODUCER, 16), _slice(w["out"], 0, CONSUMER, 16)]
        )
        _switch_off(model, [(group, [0, 9, 15])])
        small = shrink(model, groups=[group])
        layers = {layer.name: layer for layer in small.layers}
        assert tuple(layers["ein"].kernel.shape) == (10, 13) and tuple(layers["out"].kernel.shape) == (13, 4)
        data = np.random.default_rng(5).normal(size=(3, 5, 10)).astype("float32")
        assert _max_diff(model, small, data) <= 1e-5


def _prune_half(model, seed=0):
    """Switches off a random half of the units of every traced channel group."""
    from tf_lottery.core.coupling import channel_groups

    rng = np.random.default_rng(seed)
    groups = channel_groups(model)
    _switch_off(model, [(g, rng.permutation(g.units)[: g.units // 2]) for g in groups])
    return groups


def _relative_diff(a, b, x):
    a, b = keras.ops.convert_to_numpy(a(x)), keras.ops.convert_to_numpy(b(x))
    return float(np.max(np.abs(a - b))), float(np.max(np.abs(a - b)) / np.max(np.abs(a)))


class TestShrinkTracedModels(TestCase):
    def test_traced_groups_give_the_hand_built_result(self):
        model, groups = _conv_net()
        _switch_off(model, list(zip(groups, ([0, 3], [2, 5, 6], [1], [0, 2]))))
        small = shrink(model)  # groups from the tracer
        layers = {layer.name: layer for layer in small.layers}
        assert [layers[n].filters for n in ("c1", "c2", "proj", "c3", "q")] == [6, 5, 5, 5, 2]
        x = np.random.default_rng(2).normal(size=(4, 8, 8, 3)).astype("float32")
        assert _max_diff(model, small, x) <= 1e-5

    def test_reshape_and_shared_layer(self):
        x = keras.Input((4, 4, 2))
        h = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="c")(x)
        shared = keras.layers.Conv2D(6, 1, name="shared")
        h = shared(keras.layers.Conv2D(6, 1, name="mid")(h)) + shared(h)
        h = keras.layers.Reshape((4, 24), name="rows")(h)
        out = keras.layers.Dense(3, name="out")(keras.layers.Flatten()(h))
        model = tfl.prunable(keras.Model(x, out))
        _randomize(model)
        _prune_half(model)
        small, report = shrink(model, return_report=True)
        layers = {layer.name: layer for layer in small.layers}
        assert layers["c"].filters == 3 and layers["rows"].target_shape == (4, 12)
        assert report.params_after == small.count_params() < report.params_before
        data = np.random.default_rng(6).normal(size=(2, 4, 4, 2)).astype("float32")
        assert _max_diff(model, small, data) <= 1e-5

    def test_unstructured_masks_are_refused_with_the_traced_groups(self):
        model, _ = _mlp()
        tfl.prune(model, target_sparsity=0.5)
        with pytest.raises(ValueError, match=r"nothing can be removed from 'mlp'.*structure='channels'"):
            shrink(model)

    @pytest.mark.slow
    @pytest.mark.parametrize("name", ["MobileNetV2", "ResNet50"])
    def test_keras_applications(self, name):
        if name == "MobileNetV2":
            dense = keras.applications.MobileNetV2(
                (96, 96, 3), alpha=0.35, weights=None, classifier_activation=None
            )
        else:
            dense = keras.applications.ResNet50(
                input_shape=(64, 64, 3), weights=None, classifier_activation=None
            )
        model = tfl.prunable(dense)
        tfl.prune(model, target_sparsity=0.5, structure="channels", scope="layer")
        small, report = shrink(model, return_report=True)
        x = np.random.default_rng(7).normal(size=(2, *dense.input_shape[1:])).astype("float32")
        absolute, relative = _relative_diff(model, small, x)
        assert absolute <= 1e-5 and relative <= 1e-5
        assert report.params_before == dense.count_params()
        assert report.params_after == small.count_params() <= 0.5 * dense.count_params()

    def test_end_to_end_inverted_residual_net_and_a_distillers_student(self):
        def block(x, expand, name):
            h = keras.layers.Conv2D(expand, 1, use_bias=False, name=f"{name}_expand")(x)
            h = keras.layers.ReLU(6.0)(keras.layers.BatchNormalization(name=f"{name}_bn1")(h))
            h = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"{name}_dw")(h)
            h = keras.layers.ReLU(6.0)(keras.layers.BatchNormalization(name=f"{name}_bn2")(h))
            h = keras.layers.Conv2D(x.shape[-1], 1, use_bias=False, name=f"{name}_project")(h)
            return keras.layers.Add()([x, keras.layers.BatchNormalization(name=f"{name}_bn3")(h)])

        x = keras.Input((16, 16, 3))
        h = keras.layers.ReLU(6.0)(
            keras.layers.BatchNormalization()(keras.layers.Conv2D(16, 3, strides=2)(x))
        )
        h = block(block(h, 48, "b1"), 64, "b2")
        out = keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(h))
        student = tfl.prunable(keras.Model(x, out))
        _randomize(student)
        tfl.prune(student, target_sparsity=0.5, structure="channels", scope="layer")
        distiller = tfl.KDDistiller(teacher=keras.models.clone_model(student), student=student)
        small, report = shrink(distiller, return_report=True)
        layers = {layer.name: layer for layer in small.layers}
        assert layers["b1_expand"].filters == 24 and layers["b2_dw"].kernel.shape[2] == 32
        assert layers["b2_project"].filters == 8  # the residual stream: 16 channels, coupled, half kept
        data = np.random.default_rng(9).normal(size=(2, 16, 16, 3)).astype("float32")
        assert _max_diff(student, small, data) <= 1e-5
        assert report.params_after == small.count_params() <= 0.4 * report.params_before
