"""`structure="channels"`: whole units pruned with their coupled slices, counted in units."""

import keras
import numpy as np
import pytest

import tf_lottery as tfl
from tests.testing import TestCase, compile_classifier, toy_data
from tf_lottery.core import coupling
from tf_lottery.core.units import unit_alive
from tf_lottery.core.walk import prune_wrappers
from tf_lottery.pruning import structure, units_pruning

L = keras.layers


def _mlp():
    return tfl.prunable(
        keras.Sequential(
            [
                keras.Input((6,)),
                L.Dense(10, activation="relu", name="h1"),
                L.Dense(6, activation="relu", name="h2"),
                L.Dense(4, activation="relu", name="h3"),
                L.Dense(3, name="output"),
            ]
        )
    )


def _masks(model) -> dict:
    return {(id(wr), i): m for wr in prune_wrappers(model) for i, m in enumerate(wr.get_masks())}


def _alive(model) -> dict:
    masks = _masks(model)
    return {g.name: unit_alive(g, masks) for g in coupling.channel_groups(model)}


def _kernel(model, name):
    return keras.ops.convert_to_numpy(model.get_layer(f"prune_{name}").layer.kernel)


def _l1(model, name):
    return np.abs(_kernel(model, name)).sum(axis=0)


def _resnet_block(exclude=None):
    inputs = keras.Input((6, 6, 3))
    stem = L.Conv2D(8, 1, name="stem")(inputs)
    stem = L.BatchNormalization(name="stem_bn")(stem)
    branch = L.Conv2D(8, 3, padding="same", activation="relu", name="branch")(stem)
    branch = L.BatchNormalization(name="branch_bn")(branch)
    x = L.ReLU()(L.Add(name="add")([stem, branch]))
    head = L.Conv2D(6, 1, name="head")(x)
    head = L.BatchNormalization(name="head_bn")(head)
    outputs = L.Dense(2, name="output")(L.GlobalAveragePooling2D()(L.ReLU()(head)))
    return tfl.prunable(keras.Model(inputs, outputs), exclude=exclude)


class TestChannelPruning(TestCase):
    def test_global_target_counts_units_and_keeps_the_largest_norms(self):
        model = _mlp()
        result = tfl.prune(model, target_sparsity=0.45, structure="channels")
        # 20 prunable units (the output layer's are not): round(0.45 * 20) = 9.
        assert (result["units_pruned"], result["units_alive"], result["units_total"]) == (9, 11, 20)
        alive = _alive(model)
        assert sum(int((~a).sum()) for a in alive.values()) == 9
        # Whole units: a pruned unit's column and the next layer's row are both off.
        h1_kernel, h2_mask = _kernel(model, "h1"), model.get_layer("prune_h2").get_masks()[0]
        assert not h1_kernel[:, ~alive["h1"]].any() and not h2_mask[~alive["h1"]].any()
        assert h2_mask[alive["h1"]][:, alive["h2"]].all()
        assert result["sparsity"] != pytest.approx(0.45)

    def test_global_ranking_prunes_the_lowest_l1_norms_across_layers(self):
        model = _mlp()
        norms = {n: _l1(model, n) for n in ("h1", "h2", "h3")}
        tfl.prune(model, target_sparsity=0.5, structure="channels")
        alive = _alive(model)
        kept = np.concatenate([norms[n][alive[n]] for n in norms])
        pruned = np.concatenate([norms[n][~alive[n]] for n in norms])
        assert pruned.size == 10 and kept.min() >= pruned.max()

    def test_every_group_keeps_its_best_unit(self):
        model = _mlp()
        layer = model.get_layer("prune_h3").layer
        layer.kernel.assign(keras.ops.convert_to_numpy(layer.kernel) * 1e-3)  # h3 ranks last globally
        result = tfl.prune(model, target_sparsity=0.8, structure="channels")
        alive = _alive(model)
        assert result["units_pruned"] == 16 and int(alive["h3"].sum()) == 1
        # h3's best unit survives; no unit dies because the layer before lost all of its units.
        assert result["units_alive"] == sum(int(a.sum()) for a in alive.values()) == 4
        with pytest.raises(ValueError, match=r"0\.9 would prune 2 more units of .* only 1 can go while"):
            tfl.prune(model, target_sparsity=0.9, structure="channels")

    def test_layer_scope_prunes_each_group_by_the_same_fraction(self):
        model = _mlp()
        tfl.prune(model, target_sparsity=0.5, structure="channels", scope="layer")
        alive = _alive(model)
        assert {n: int((~a).sum()) for n, a in alive.items()} == {"h1": 5, "h2": 3, "h3": 2}

    def test_rate_prunes_alive_units_and_masks_only_shrink(self):
        model = _mlp()
        tfl.prune(model, target_sparsity=0.5, structure="channels")
        before = _masks(model)
        result = tfl.prune(model, rate=0.5, structure="channels")
        assert result["units_pruned"] == 5 and result["units_alive"] == 5
        for key, mask in _masks(model).items():
            assert not (mask & ~before[key]).any()
        with pytest.raises(ValueError, match="below the current fraction of pruned units 0.7500"):
            tfl.prune(model, target_sparsity=0.5, structure="channels")

    def test_ties_and_determinism(self):
        model = _mlp()
        for wrapper in prune_wrappers(model):
            wrapper.layer.kernel.assign(np.ones(wrapper.layer.kernel.shape))
        tfl.prune(model, target_sparsity=0.5, structure="channels", scope="layer")
        alive = _alive(model)
        np.testing.assert_array_equal(alive["h1"], np.arange(10) >= 5)  # ties: the first units go first
        twin = _mlp()
        for wrapper in prune_wrappers(twin):
            wrapper.layer.kernel.assign(np.ones(wrapper.layer.kernel.shape))
        tfl.prune(twin, target_sparsity=0.5, structure="channels", scope="layer")
        for x, y in zip(_masks(model).values(), _masks(twin).values()):
            np.testing.assert_array_equal(x, y)

    def test_l2_random_and_callable_scorers(self):
        model = _mlp()
        kernel = np.zeros((6, 10), "float32")
        kernel[0, :] = np.arange(10)  # unit 9 has the largest L1 and L2
        kernel[1:, 0] = 4.0  # unit 0: L1 20, L2 ~8.9; unit 9: L1 9, L2 9
        model.get_layer("prune_h1").layer.kernel.assign(kernel)
        tfl.prune(model, target_sparsity=0.0, structure="channels", layer_rates={"h1": 0.9}, scorer="l2")
        np.testing.assert_array_equal(np.flatnonzero(_alive(model)["h1"]), [9])
        model = _mlp()
        model.get_layer("prune_h1").layer.kernel.assign(kernel)
        tfl.prune(model, target_sparsity=0.0, structure="channels", layer_rates={"h1": 0.9}, scorer="l1")
        np.testing.assert_array_equal(np.flatnonzero(_alive(model)["h1"]), [0])

        def by_index(wrappers):
            # Scores summed over each unit: unit u of every layer scores u * fan-in.
            return [
                np.broadcast_to(np.arange(w.shape[1]), w.shape) for wr in wrappers for w in wr.pruned_weights
            ]

        model = _mlp()
        tfl.prune(model, target_sparsity=0.5, structure="channels", scope="layer", scorer=by_index)
        np.testing.assert_array_equal(np.flatnonzero(_alive(model)["h1"]), [5, 6, 7, 8, 9])
        model = _mlp()
        result = tfl.prune(model, target_sparsity=0.5, structure="channels", scorer="random")
        assert result["units_pruned"] == 10

    def test_taylor_scores_are_summed_over_each_unit(self):
        model = _mlp()
        compile_classifier(model)
        x, y = toy_data(32, 6, 3)
        scorer = tfl.scoring.TaylorScorer(model, x, y)
        per_weight = dict(zip(["h1", "h2", "h3", "output"], scorer(prune_wrappers(model))))
        tfl.prune(model, target_sparsity=0.5, structure="channels", scope="layer", scorer=scorer)
        alive = _alive(model)
        for name in ("h1", "h2", "h3"):
            unit_scores = per_weight[name].sum(axis=0)
            assert unit_scores[alive[name]].min() >= unit_scores[~alive[name]].max()

    def test_a_subclassed_model_has_no_traced_units(self):
        class Net(keras.Model):
            def __init__(self):
                super().__init__()
                self.hidden = L.Dense(4)
                self.head = L.Dense(2)

            def call(self, x):
                return self.head(self.hidden(x))

        model = Net()
        model(np.zeros((1, 3), "float32"))
        model = tfl.prunable(model)
        with pytest.raises(ValueError, match=r"'channels' are traced in Sequential and functional models"):
            tfl.prune(model, rate=0.5, structure="channels")

    def test_bn_gamma_scores_by_the_batchnorm_after_the_producers(self):
        model = _resnet_block()
        bn = model.get_layer("head_bn")
        bn.gamma.assign(np.array([0.5, -3.0, 0.1, 2.0, -0.2, 1.0], "float32"))
        model.get_layer("stem_bn").gamma.assign(np.arange(8, dtype="float32"))
        model.get_layer("branch_bn").gamma.assign(-np.arange(8, dtype="float32")[::-1])
        tfl.prune(model, target_sparsity=0.5, structure="channels", scope="layer", scorer="bn_gamma")
        alive = _alive(model)
        np.testing.assert_array_equal(np.flatnonzero(alive["head"]), [1, 3, 5])
        # |stem gamma| + |branch gamma| = 7 for every unit: ties, the first four go.
        np.testing.assert_array_equal(np.flatnonzero(alive["stem+branch"]), [4, 5, 6, 7])

    def test_pruning_is_exact_on_a_residual_block(self):
        model = _resnet_block()
        x = np.random.default_rng(0).normal(size=(3, 6, 6, 3)).astype("float32")
        tfl.prune(model, target_sparsity=0.5, structure="channels", scope="layer")
        before = keras.ops.convert_to_numpy(model(x, training=False))
        # What pruned units still compute (biases, BatchNorm shifts) must reach nothing.
        alive = _alive(model)
        rng = np.random.default_rng(1)
        for layer, unit in [("stem", "stem+branch"), ("branch", "stem+branch"), ("head", "head")]:
            bias = model.get_layer(f"prune_{layer}").layer.bias
            value = keras.ops.convert_to_numpy(bias).copy()
            value[~alive[unit]] = rng.normal(size=int((~alive[unit]).sum())) * 10
            bias.assign(value)
        for name, unit in [("stem_bn", "stem+branch"), ("head_bn", "head")]:
            beta = model.get_layer(name).beta
            value = keras.ops.convert_to_numpy(beta).copy()
            value[~alive[unit]] = 7.0
            beta.assign(value)
        after = keras.ops.convert_to_numpy(model(x, training=False))
        np.testing.assert_allclose(after, before, rtol=0, atol=1e-6)

    def test_layer_rates_prune_their_groups_alone(self):
        model = _resnet_block()
        tfl.prune(model, target_sparsity=0.25, structure="channels", layer_rates={"head": 0.5})
        alive = _alive(model)
        assert int((~alive["head"]).sum()) == 3 and int((~alive["stem+branch"]).sum()) == 2
        # A layer that only reads the units (the branch conv reads the stem's) names their group too.
        model = _resnet_block()
        tfl.prune(model, target_sparsity=0.0, structure="channels", layer_rates={"branch": 0.5})
        assert int((~_alive(model)["stem+branch"]).sum()) == 4

    def test_lottery_callback_prunes_units_each_round(self):
        model = _mlp()
        compile_classifier(model)
        x, y = toy_data(64, 6, 3)
        callback = tfl.LotteryCallback(
            rounds=3, pruning_rate=0.5, structure="channels", monitor="loss", verbose=0
        )
        model.fit(x, y, batch_size=32, epochs=3, callbacks=[callback], verbose=0)
        # Two prunings at 50% of the alive units: 20 -> 10 -> 5.
        assert sum(int(a.sum()) for a in _alive(model).values()) == 5
        assert callback.structure == "channels"

    def test_gradual_pruning_reaches_the_unit_target(self):
        model = _mlp()
        compile_classifier(model)
        x, y = toy_data(64, 6, 3)
        schedule = tfl.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=4, frequency=2)
        callback = tfl.GradualPruning(schedule, structure="channels", scope="global")
        model.fit(x, y, batch_size=16, epochs=2, callbacks=[callback], verbose=0)
        assert sum(int((~a).sum()) for a in _alive(model).values()) == 10
        assert units_pruning.unit_sparsity(model, structure.parse("channels")) == 0.5


def _perturb_pruned_channels(model, seed=0) -> int:
    """Sets every bias and BatchNorm shift of a pruned channel, anywhere in the graph, to noise."""
    trace = coupling.trace_channels(model)
    masks = _masks(model)
    dead = [~unit_alive(g, masks) for g in trace.groups]
    rng = np.random.default_rng(seed)
    changed = 0
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)
        if isinstance(inner, L.BatchNormalization):
            variable, layout = inner.beta, trace.layouts[layer.name][0][0]
        elif getattr(inner, "bias", None) is not None and layer.name in trace.layouts:
            variable, layout = inner.bias, trace.layouts[layer.name][1][0]
        else:
            continue
        channels = [
            c
            for c, e in enumerate(layout.tolist())
            if e in trace.element_unit and dead[trace.element_unit[e][0]][trace.element_unit[e][1]]
        ]
        if channels and len(layout) == variable.shape[0]:
            value = keras.ops.convert_to_numpy(variable).copy()
            value[channels] = rng.normal(size=len(channels)) * 3
            variable.assign(value)
            changed += len(channels)
    return changed


@pytest.mark.slow
class TestApplications(TestCase):
    @pytest.mark.parametrize("name", ["MobileNetV2", "ResNet50"])
    def test_half_the_channels_pruned_leaves_outputs_exact(self, name):
        size = (96, 96, 3) if name == "MobileNetV2" else (64, 64, 3)
        extra = {"alpha": 0.35} if name == "MobileNetV2" else {}
        application = getattr(keras.applications, name)
        model = tfl.prunable(application(input_shape=size, weights=None, classifier_activation=None, **extra))
        result = tfl.prune(model, target_sparsity=0.5, structure="channels", scope="layer")
        assert result["units_pruned"] == sum(
            int(np.floor(0.5 * g.units + 0.5)) for g in coupling.channel_groups(model)
        )
        x = np.random.default_rng(0).normal(size=(1, *size)).astype("float32")
        before = keras.ops.convert_to_numpy(model(x, training=False))
        assert _perturb_pruned_channels(model) > 1000
        after = keras.ops.convert_to_numpy(model(x, training=False))
        np.testing.assert_allclose(after, before, rtol=0, atol=1e-5)


def test_the_command_line_takes_channels_in_the_pruning_group():
    from tests.testing import tiny_run_config
    from tf_lottery.experiments import registry

    config = tiny_run_config()
    config.pruning.structure = "channels"
    config.run.branches = "reinit"
    registry.validate(config)
    config.run.branches = "reinit,random_global"
    with pytest.raises(
        ValueError,
        match=r"no random_\* control with pruning.structure='channels' \(they draw single weights, not channels\)",
    ):
        registry.validate(config)


@pytest.mark.slow
def test_the_lottery_kind_prunes_whole_units_at_each_level(tmp_path):
    import os

    from tests.testing import tiny_run_config
    from tf_lottery.experiments import run_experiment

    config = tiny_run_config(training_steps="1ep", branches="reinit")
    config.run.levels = 2
    config.pruning.structure = "channels"
    summary = run_experiment(config, str(tmp_path), log=lambda line: None)
    replicate = os.path.join(summary["root"], "replicate_0")
    previous = None
    for level in (1, 2):
        ticket = tfl.Ticket.load(os.path.join(replicate, f"round_{level}", "start.npz"))
        # Hidden units are whole: a unit's input column is dead exactly when its output row is.
        kernels = [m for m in ticket.masks if m.ndim == 2]
        for producer, reader in zip(kernels, kernels[1:]):
            np.testing.assert_array_equal(producer.any(axis=0), reader.any(axis=1))
        dead = sum(int((~k.any(axis=0)).sum()) for k in kernels[:-1])
        assert dead > 0
        if previous is not None:
            assert all(not np.any(new & ~old) for old, new in zip(previous, ticket.masks))
        previous = ticket.masks
