"""Channel groups of graph models: which units couple, and that masking a unit cuts it off exactly."""

import keras
import numpy as np
import pytest

import tf_lottery as tfl
from tests.testing import TestCase
from tf_lottery.core import coupling, units
from tf_lottery.core.walk import prune_wrappers

L = keras.layers


def _masks(model) -> dict:
    return {(id(wr), i): m for wr in prune_wrappers(model) for i, m in enumerate(wr.get_masks())}


def _write(model, masks) -> None:
    for wr in prune_wrappers(model):
        wr.set_masks([masks[(id(wr), i)] for i in range(len(wr.masks))])


def _prune_every_other(model, groups) -> dict:
    """Switches off the odd units of every group; returns `{group name: pruned units}`."""
    masks = _masks(model)
    pruned = {}
    for group in groups:
        chosen = np.arange(1, group.units, 2)
        units.switch_off(group, chosen, masks)
        pruned[group.name] = chosen
    _write(model, masks)
    return pruned


def _perturb(variable, index, rng) -> int:
    value = keras.ops.convert_to_numpy(variable).copy()
    value[index] = rng.normal(size=index.size) * 5
    variable.assign(value)
    return index.size


def _perturb_pruned(model, groups, pruned, seed=0) -> int:
    """Sets what the pruned units still compute (their biases, BatchNorm shifts) to random numbers."""
    rng = np.random.default_rng(seed)
    betas = {id(layer.gamma): layer.beta for layer in model.layers if isinstance(layer, L.BatchNormalization)}
    changed = 0
    for group in groups:
        chosen = pruned[group.name]
        for s in group.producers():
            bias = getattr(s.wrapper.layer, "bias", None)
            if bias is not None:
                changed += _perturb(bias, np.ravel(s.positions[chosen]), rng)
        for gamma, positions in group.gammas:
            if betas.get(id(gamma)) is not None:
                changed += _perturb(betas[id(gamma)], np.ravel(positions[chosen]), rng)
    return changed


def _check_exact(model, x, groups):
    """Pruning every other unit, then changing what those units compute, leaves the outputs unchanged."""
    pruned = _prune_every_other(model, groups)
    before = keras.ops.convert_to_numpy(model(x, training=False))
    assert _perturb_pruned(model, groups, pruned) > 0
    after = keras.ops.convert_to_numpy(model(x, training=False))
    np.testing.assert_allclose(after, before, rtol=0, atol=1e-6)
    return pruned


def _slice_summary(group):
    return [(s.wrapper.layer.name, s.axis, s.role, s.positions.shape) for s in group.slices]


class TestChannelGroups(TestCase):
    def test_sequential_mlp_groups_and_output_refused(self):
        model = tfl.prunable(
            keras.Sequential(
                [
                    keras.Input((5,)),
                    L.Dense(6, activation="relu", name="h1"),
                    L.Dropout(0.2),
                    L.Dense(4, name="h2"),
                    L.Dense(3, name="out"),
                ]
            )
        )
        trace = coupling.trace_channels(model)
        assert [g.name for g in trace.groups] == ["h1", "h2"]
        h1 = trace.groups[0]
        assert h1.units == 6
        assert _slice_summary(h1) == [("h1", 1, units.PRODUCER, (6, 1)), ("h2", 0, units.CONSUMER, (6, 1))]
        np.testing.assert_array_equal(h1.slices[0].positions[:, 0], np.arange(6))
        assert "model output 'out'" in trace.refused["out"]
        _check_exact(model, np.random.default_rng(0).normal(size=(4, 5)), trace.groups)

    def test_conv_batchnorm_gamma_recorded(self):
        inputs = keras.Input((8, 8, 3))
        x = L.Conv2D(6, 3, name="conv")(inputs)
        x = L.BatchNormalization(name="bn")(x)
        x = L.ReLU()(x)
        x = L.MaxPooling2D()(x)
        x = L.GlobalAveragePooling2D()(x)
        outputs = L.Dense(2, name="out")(x)
        model = tfl.prunable(keras.Model(inputs, outputs))
        (group,) = coupling.channel_groups(model)
        assert group.name == "conv" and group.units == 6
        assert group.gamma is model.get_layer("bn").gamma
        ((gamma, positions),) = group.gammas
        np.testing.assert_array_equal(positions[:, 0], np.arange(6))
        assert {"bn", "re_lu", "max_pooling2d", "global_average_pooling2d", "out"} <= set(group.layers)

    def test_residual_add_couples_both_branches_and_readers(self):
        inputs = keras.Input((6, 6, 3))
        stem = L.Conv2D(4, 1, name="stem")(inputs)
        stem = L.BatchNormalization(name="stem_bn")(stem)
        branch = L.Conv2D(4, 3, padding="same", name="branch")(stem)
        branch = L.BatchNormalization(name="branch_bn")(branch)
        x = L.Activation("relu")(L.Add(name="add")([stem, branch]))
        head = L.Conv2D(5, 1, name="head")(x)
        outputs = L.Dense(2, name="out")(L.GlobalAveragePooling2D()(head))
        model = tfl.prunable(keras.Model(inputs, outputs))
        groups = {g.name: g for g in coupling.channel_groups(model)}
        assert set(groups) == {"stem+branch", "head"}
        residual = groups["stem+branch"]
        assert _slice_summary(residual) == [
            ("stem", 3, units.PRODUCER, (4, 1)),
            ("branch", 3, units.PRODUCER, (4, 1)),
            ("branch", 2, units.CONSUMER, (4, 1)),
            ("head", 2, units.CONSUMER, (4, 1)),
        ]
        assert len(residual.gammas) == 2
        masks = _masks(model)
        units.switch_off(residual, np.array([2]), masks)
        _write(model, masks)
        kernels = {
            n: keras.ops.convert_to_numpy(model.get_layer(f"prune_{n}").layer.kernel)
            for n in ("stem", "branch", "head")
        }
        assert not kernels["stem"][..., 2].any() and not kernels["branch"][..., 2].any()
        assert not kernels["branch"][..., 2, :].any() and not kernels["head"][..., 2, :].any()
        assert kernels["stem"][..., 1].all() and kernels["head"][..., 1, :].all()
        alive = units.unit_alive(residual, _masks(model))
        np.testing.assert_array_equal(alive, [True, True, False, True])

    def test_residual_pruning_is_exact(self):
        inputs = keras.Input((6, 6, 3))
        stem = L.Conv2D(4, 1, name="stem")(inputs)
        branch = L.Conv2D(4, 3, padding="same", activation="relu", name="branch")(stem)
        branch = L.BatchNormalization(name="branch_bn")(branch)
        x = keras.ops.relu(stem + branch)
        head = L.Conv2D(5, 1, name="head")(x)
        outputs = L.Dense(2, name="out")(L.Flatten()(head))
        model = tfl.prunable(keras.Model(inputs, outputs))
        groups = coupling.channel_groups(model)
        assert [g.name for g in groups] == ["stem+branch", "head"]
        _check_exact(model, np.random.default_rng(1).normal(size=(2, 6, 6, 3)), groups)

    def test_concatenate_offsets_the_readers_rows(self):
        inputs = keras.Input((5, 5, 2))
        a = L.Conv2D(3, 1, name="a")(inputs)
        b = L.Conv2D(4, 1, name="b")(inputs)
        x = L.Concatenate(name="cat")([a, b])
        reader = L.Conv2D(2, 1, name="reader")(x)
        outputs = L.GlobalAveragePooling2D()(reader)
        model = tfl.prunable(keras.Model(inputs, L.Dense(1, name="out")(outputs)))
        groups = {g.name: g for g in coupling.channel_groups(model)}
        assert set(groups) == {"a", "b", "reader"}
        np.testing.assert_array_equal(groups["a"].consumers()[0].positions[:, 0], [0, 1, 2])
        np.testing.assert_array_equal(groups["b"].consumers()[0].positions[:, 0], [3, 4, 5, 6])
        _check_exact(model, np.random.default_rng(2).normal(size=(2, 5, 5, 2)), list(groups.values()))

    def test_raw_concatenate_is_traced(self):
        inputs = keras.Input((4,))
        a = L.Dense(3, name="a")(inputs)
        b = L.Dense(2, name="b")(inputs)
        x = keras.ops.concatenate([b, a], axis=-1)
        model = tfl.prunable(keras.Model(inputs, L.Dense(1, name="out")(keras.ops.tanh(x))))
        groups = {g.name: g for g in coupling.channel_groups(model)}
        np.testing.assert_array_equal(groups["a"].consumers()[0].positions[:, 0], [2, 3, 4])
        np.testing.assert_array_equal(groups["b"].consumers()[0].positions[:, 0], [0, 1])

    def test_flatten_reads_each_unit_at_every_position(self):
        inputs = keras.Input((2, 3, 1))
        x = L.Conv2D(4, 1, name="conv")(inputs)
        x = L.Flatten()(x)
        model = tfl.prunable(keras.Model(inputs, L.Dense(2, name="out")(x)))
        (group,) = coupling.channel_groups(model)
        reader = group.consumers()[0]
        assert reader.axis == 0 and reader.positions.shape == (4, 6)
        np.testing.assert_array_equal(reader.positions[1], 1 + 4 * np.arange(6))
        _check_exact(model, np.random.default_rng(3).normal(size=(2, 2, 3, 1)), [group])

    def test_depthwise_channels_follow_their_producer(self):
        inputs = keras.Input((6, 6, 3))
        x = L.Conv2D(4, 1, name="expand")(inputs)
        x = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="dw")(x)
        x = L.BatchNormalization()(x)
        x = L.Conv2D(3, 1, name="project")(x)
        model = tfl.prunable(keras.Model(inputs, L.Dense(1, name="out")(L.GlobalMaxPooling2D()(x))))
        groups = {g.name: g for g in coupling.channel_groups(model)}
        expand = groups["expand"]
        assert _slice_summary(expand) == [
            ("expand", 3, units.PRODUCER, (4, 1)),
            ("dw", 2, units.CONSUMER, (4, 1)),
            ("project", 2, units.CONSUMER, (4, 2)),
        ]
        np.testing.assert_array_equal(expand.slices[2].positions[1], [2, 3])
        _check_exact(model, np.random.default_rng(4).normal(size=(2, 6, 6, 3)), list(groups.values()))

    def test_unwrapped_partner_makes_the_group_unprunable(self):
        inputs = keras.Input((6, 6, 3))
        a = L.Conv2D(4, 1, name="a")(inputs)
        b = L.Conv2D(4, 1, name="b")(inputs)
        x = L.Conv2D(2, 1, name="reader")(L.Add()([a, b]))
        model = tfl.prunable(keras.Model(inputs, L.Dense(1, name="out")(L.Flatten()(x))), exclude=["b"])
        trace = coupling.trace_channels(model)
        assert [g.name for g in trace.groups] == ["reader"]
        assert "'b', which is not wrapped" in trace.refused["a"]

    def test_unwrapped_reader_makes_the_group_unprunable(self):
        model = tfl.prunable(
            keras.Sequential(
                [keras.Input((3,)), L.Dense(4, name="h"), L.Dense(4, name="plain"), L.Dense(1, name="out")]
            ),
            exclude=["plain"],
        )
        trace = coupling.trace_channels(model)
        assert trace.groups == []
        assert "read by 'plain', which is not wrapped" in trace.refused["h"]

    def test_stops_at_unknown_ops_grouped_convs_and_channel_mixing(self):
        inputs = keras.Input((4, 4, 4))
        g = L.Conv2D(4, 1, groups=2, name="grouped")(inputs)
        s = L.Conv2D(4, 1, name="to_reshape")(inputs)
        s = L.Reshape((4, 4, 2, 2))(s)
        m = L.Dense(4, activation="softmax", name="mixing")(inputs)
        n = L.Dense(4, name="to_layernorm")(inputs)
        n = L.LayerNormalization()(n)
        x = L.Concatenate()([g, L.Reshape((4, 4, 4))(s), m, n])
        model = tfl.prunable(keras.Model(inputs, L.Dense(1, name="out")(x)))
        trace = coupling.trace_channels(model)
        assert trace.groups == []
        assert "grouped convolution 'grouped' (groups=2)" in trace.refused["grouped"]
        assert "'reshape' (Reshape)" in trace.refused["to_reshape"]
        assert "activation of 'mixing', which may mix channels" in trace.refused["mixing"]
        assert "LayerNormalization" in trace.refused["to_layernorm"]

    def test_shared_layer_and_nested_model(self):
        inner = keras.Sequential(
            [keras.Input((4,)), L.Dense(5, name="inner_a"), L.Dense(4, name="inner_b")], name="inner"
        )
        inputs = keras.Input((4,))
        shared = L.Dense(4, name="shared")
        x = shared(inner(inputs))
        y = shared(inputs)
        outputs = L.Dense(1, name="out")(L.Concatenate()([x, y]))
        model = tfl.prunable(keras.Model(inputs, outputs))
        groups = {g.name: g for g in coupling.channel_groups(model)}
        # `shared` reads both `inner_b`'s units and the model input through the same rows.
        assert set(groups) == {"inner_a", "shared"}
        assert _slice_summary(groups["shared"])[1:] == [("out", 0, units.CONSUMER, (4, 2))]
        _check_exact(model, np.random.default_rng(5).normal(size=(3, 4)), list(groups.values()))

    def test_no_graph_and_no_heads(self):
        model = tfl.prunable(keras.Sequential([L.Dense(3)]))
        assert coupling.channel_groups(model) == []
        with pytest.raises(ValueError, match="'heads' found no attention heads in model"):
            coupling.head_groups(model)

    def test_internal_channel_groups_of_registered_providers(self):
        class Twin(L.Dense):
            pass

        def provider(wrapper):
            kernel = units.UnitSlice(wrapper, 0, 1, np.arange(3)[:, None], units.PRODUCER)
            return [
                units.UnitGroup("twin_inner", "channels", 3, [kernel]),
                units.UnitGroup("h", "heads", 3, [kernel]),
            ]

        units.register_internal_units(Twin, provider)
        try:
            model = tfl.prunable(keras.Sequential([keras.Input((2,)), Twin(3, name="twin")]))
            assert [g.name for g in coupling.channel_groups(model)] == ["twin_inner"]
            assert [g.name for g in coupling.head_groups(model)] == ["h"]
        finally:
            units._INTERNAL_PROVIDERS.remove((Twin, provider))


@pytest.mark.slow
class TestApplications(TestCase):
    def test_mobilenet_v2_groups_are_consistent_and_exact(self):
        model = tfl.prunable(
            keras.applications.MobileNetV2(
                input_shape=(96, 96, 3), alpha=0.35, weights=None, classifier_activation=None
            )
        )
        groups = coupling.channel_groups(model)
        names = [g.name for g in groups]
        assert "block_1_project+block_2_project" in names
        for group in groups:
            for s in group.slices:
                shape = s.wrapper.pruned_weights[s.index].shape
                assert s.positions.shape[0] == group.units
                assert s.positions.max() < shape[s.axis]
        _check_exact(model, np.random.default_rng(6).normal(size=(1, 96, 96, 3)).astype("float32"), groups)


class TestMoreLayers(TestCase):
    def test_separable_transpose_and_einsum_dense_are_exact(self):
        inputs = keras.Input((6, 6, 3))
        x = L.Conv2D(4, 1, name="first")(inputs)
        x = L.SeparableConv2D(5, 3, padding="same", depth_multiplier=2, name="separable")(x)
        x = L.Conv2DTranspose(6, 3, name="transpose")(x)
        x = L.EinsumDense("abcd,de->abce", output_shape=(8, 8, 7), bias_axes="e", name="einsum")(x)
        x = L.GlobalAveragePooling2D()(x)
        model = tfl.prunable(keras.Model(inputs, L.Dense(2, name="out")(x)))
        groups = {g.name: g for g in coupling.channel_groups(model)}
        assert set(groups) == {"first", "separable", "transpose", "einsum"}
        assert _slice_summary(groups["first"]) == [
            ("first", 3, units.PRODUCER, (4, 1)),
            ("separable", 2, units.CONSUMER, (4, 1)),
            ("separable", 2, units.CONSUMER, (4, 2)),
        ]
        assert _slice_summary(groups["separable"])[1] == ("transpose", 3, units.CONSUMER, (5, 1))
        assert _slice_summary(groups["transpose"]) == [
            ("transpose", 2, units.PRODUCER, (6, 1)),
            ("einsum", 0, units.CONSUMER, (6, 1)),
        ]
        _check_exact(model, np.random.default_rng(7).normal(size=(2, 6, 6, 3)), list(groups.values()))

    def test_embedding_units_are_read_by_the_next_layer(self):
        inputs = keras.Input((5,), dtype="int32")
        x = L.Embedding(20, 6, name="embed")(inputs)
        x = L.Dense(4, activation="gelu", name="ffn")(x)
        model = tfl.prunable(keras.Model(inputs, L.Dense(2, name="out")(L.GlobalAveragePooling1D()(x))))
        groups = {g.name: g for g in coupling.channel_groups(model)}
        assert _slice_summary(groups["embed"]) == [
            ("embed", 1, units.PRODUCER, (6, 1)),
            ("ffn", 0, units.CONSUMER, (6, 1)),
        ]
        _check_exact(model, np.arange(10).reshape(2, 5) % 20, [groups["ffn"]])
