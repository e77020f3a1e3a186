"""RxC block sparsity: whole blocks in TFLite's layout, exact counts in blocks, masks that only shrink."""

import keras
import numpy as np
import pytest

import tf_lottery as tfl
from tests.testing import TestCase, compile_classifier, mlp, pruned_weights_are_zero, toy_data
from tf_lottery.pruning import blocks
from tf_lottery.pruning.pruner import exact_count
from tf_lottery.pruning.structure import BlockStructure

ONE_BY_FOUR = BlockStructure(1, 4)


def _model(hidden=(64, 32), input_dim=40):
    model = tfl.prunable(mlp(input_dim=input_dim, hidden=hidden))
    model(toy_data(2, input_dim=input_dim)[0])
    return model


def _masks(model):
    return [m for wr in tfl.prune_wrappers(model) for m in wr.get_masks()]


def _blocks_of(mask, block=ONE_BY_FOUR, axes=(0, 1)):
    """Alive entries per block of a Dense mask."""
    return blocks.to_blocks(mask, block, axes).sum(axis=1)


class TestLayout(TestCase):
    def test_1x4_is_four_consecutive_inputs_of_one_output_unit(self):
        # Keras Dense kernel (inputs, units): TFLite's (units, inputs) 1x4 block.
        per_block = np.zeros(2 * 3, bool)
        per_block[0] = True  # inputs 0..3 of unit 0
        mask = blocks.from_blocks(per_block, (8, 3), ONE_BY_FOUR, (0, 1))
        expected = np.zeros((8, 3), bool)
        expected[0:4, 0] = True
        np.testing.assert_array_equal(mask, expected)
        # 2x2: two units x two inputs; blocks row-major over (input blocks, unit blocks).
        per_block = np.zeros(4 * 2, bool)
        per_block[3] = True  # input block 1, unit block 1
        mask = blocks.from_blocks(per_block, (8, 4), BlockStructure(2, 2), (0, 1))
        expected = np.zeros((8, 4), bool)
        expected[2:4, 2:4] = True
        np.testing.assert_array_equal(mask, expected)

    def test_round_trip_for_convolutions(self):
        shape = (3, 3, 8, 6)  # window, in_channels, filters
        rng = np.random.default_rng(0)
        per_block = rng.random(3 * 3 * 2 * 3) < 0.5
        block = BlockStructure(2, 4)
        mask = blocks.from_blocks(per_block, shape, block, (2, 3))
        np.testing.assert_array_equal(blocks.alive_blocks(mask, block, (2, 3)), per_block)
        assert mask[1, 2, 0:4, 0:2].all() == per_block[(1 * 3 + 2) * 6 + 0]


class TestBlockPruning(TestCase):
    def test_exact_counts_in_whole_blocks_and_kept_blocks_outscore_pruned_ones(self):
        model = _model()
        result = tfl.prune(model, target_sparsity=0.75, structure="1x4")
        total = 40 * 64 + 64 * 32 + 32 * 10
        assert result["pruned"] == exact_count(0.75, total // 4) * 4
        kept, pruned = [], []
        for wrapper in tfl.prune_wrappers(model):
            kernel = np.abs(wrapper.layer.kernel.numpy())
            mask = wrapper.get_masks()[0]
            assert set(np.unique(_blocks_of(mask))) <= {0, 4}  # whole blocks only
            l1 = blocks.to_blocks(kernel, ONE_BY_FOUR, (0, 1)).sum(axis=1)
            alive = _blocks_of(mask) == 4
            kept.extend(l1[alive])
            pruned.extend(l1[~alive])
            assert np.all(kernel[~mask] == 0.0)
        assert min(kept) >= max(pruned)  # global: one threshold on the blocks' L1 norm

    def test_layer_scope_and_layer_rates_prune_each_layer_by_its_own_fraction(self):
        model = _model()
        tfl.prune(model, rate=0.5, scope="layer", layer_rates={"output": 0.25}, structure="1x4")
        for wrapper in tfl.prune_wrappers(model):
            n_blocks = wrapper.get_masks()[0].size // 4
            expected = exact_count(0.25 if wrapper.layer.name == "output" else 0.5, n_blocks)
            assert int(np.count_nonzero(_blocks_of(wrapper.get_masks()[0]) == 0)) == expected

    def test_rounds_count_alive_blocks_and_masks_only_shrink(self):
        model = _model()
        previous = _masks(model)
        n_alive = sum(m.size for m in previous) // 4
        for _ in range(3):
            tfl.prune(model, rate=0.2, structure="1x4")
            masks = _masks(model)
            for old, new in zip(previous, masks):
                assert not np.any(new & ~old)
            n_alive -= exact_count(0.2, n_alive)
            assert sum(int(m.sum()) for m in masks) == 4 * n_alive
            previous = masks

    def test_a_partly_alive_block_counts_as_alive_and_keeps_only_its_alive_entries(self):
        model = _model(hidden=(8,))
        tfl.prune(model, target_sparsity=0.3)  # unstructured first
        before = _masks(model)
        blocks_before = [blocks.alive_blocks(m, ONE_BY_FOUR, (0, 1)) for m in before]
        tfl.prune(model, rate=0.5, structure="1x4")
        after = _masks(model)
        blocks_after = [blocks.alive_blocks(m, ONE_BY_FOUR, (0, 1)) for m in after]
        n_before = sum(int(b.sum()) for b in blocks_before)
        assert sum(int(b.sum()) for b in blocks_after) == n_before - exact_count(0.5, n_before)
        for old, new in zip(before, after):
            assert not np.any(new & ~old)

    def test_ties_go_to_the_first_block_deterministically(self):
        model = _model(hidden=(8,))
        for wrapper in tfl.prune_wrappers(model):
            wrapper.layer.kernel.assign(np.ones(wrapper.layer.kernel.shape))
        tfl.prune(model, target_sparsity=0.5, scope="layer", structure="1x4")
        first = tfl.prune_wrappers(model)[0].get_masks()[0]  # (40, 8): 80 blocks, 40 go
        per_block = blocks.alive_blocks(first, ONE_BY_FOUR, (0, 1))
        np.testing.assert_array_equal(per_block, np.arange(80) >= 40)

    def test_squared_magnitude_ranks_blocks_by_l2_and_random_scorer_sums(self):
        model = _model(hidden=(8,))
        kernel = np.zeros((40, 8), np.float32)
        kernel[0:4, 0] = [2.0, 0.0, 0.0, 0.0]  # L1 2, L2 2
        kernel[0:4, 1] = [0.9, 0.9, 0.0, 0.0]  # L1 1.8, L2 1.27
        first = tfl.prune_wrappers(model)[0]
        first.layer.kernel.assign(kernel)
        tfl.prune(model, target_sparsity=79 / 80, scope="layer", structure="1x4")
        assert first.get_masks()[0][0, 0] and not first.get_masks()[0][0, 1]
        model = _model(hidden=(8,))
        kernel[0:4, 1] = [1.1, 1.1, 0.0, 0.0]  # L1 2.2 > 2, but L2 1.56 < 2
        first = tfl.prune_wrappers(model)[0]
        first.layer.kernel.assign(kernel)
        tfl.prune(model, target_sparsity=79 / 80, scope="layer", structure="1x4")
        assert first.get_masks()[0][0, 1] and not first.get_masks()[0][0, 0]
        model = _model(hidden=(8,))
        first = tfl.prune_wrappers(model)[0]
        first.layer.kernel.assign(kernel)
        scorer = tfl.scoring.squared_magnitude
        tfl.prune(model, target_sparsity=79 / 80, scope="layer", structure="1x4", scorer=scorer)
        assert first.get_masks()[0][0, 0] and not first.get_masks()[0][0, 1]
        model = _model(hidden=(8,))
        tfl.prune(model, target_sparsity=0.5, structure="1x4", scorer=tfl.scoring.RandomScorer(3))
        assert all(set(np.unique(_blocks_of(m))) <= {0, 4} for m in _masks(model))

    def test_convolutions_prune_blocks_of_input_channels_and_filters(self):
        model = tfl.prunable(
            keras.Sequential(
                [
                    keras.Input((10, 8)),
                    keras.layers.Conv1D(8, 3, name="conv"),
                    keras.layers.Conv1DTranspose(8, 3, name="deconv"),
                    keras.layers.Flatten(),
                    keras.layers.Dense(4, name="output"),
                ]
            )
        )
        model(np.zeros((1, 10, 8), "float32"))
        tfl.prune(model, target_sparsity=0.5, scope="layer", structure="2x4")
        axes = {"conv": (1, 2), "deconv": (2, 1), "output": (0, 1)}
        for wrapper in tfl.prune_wrappers(model):
            mask = wrapper.get_masks()[0]
            counts = blocks.to_blocks(mask, BlockStructure(2, 4), axes[wrapper.layer.name]).sum(axis=1)
            assert set(np.unique(counts)) == {0, 8}, wrapper.layer.name
            assert counts.mean() == 4.0

    def test_saved_model_keeps_whole_zero_blocks(self, tmp_path):
        model = _model()
        tfl.prune(model, target_sparsity=0.5, structure="1x4")
        path = str(tmp_path / "m.keras")
        model.save(path)
        loaded = keras.models.load_model(path)
        for wrapper in tfl.prune_wrappers(loaded):
            kernel = keras.ops.convert_to_numpy(wrapper.layer.kernel)
            assert blocks.violations(kernel, ONE_BY_FOUR, (0, 1)) == 0


class TestBlocksInCallbacks(TestCase):
    def test_gradual_pruning_keeps_whole_blocks_at_every_step(self):
        schedule = tfl.PolynomialDecay(0.0, 0.75, begin_step=1, end_step=9, frequency=4)
        model = compile_classifier(tfl.prunable(mlp()))
        callback = tfl.GradualPruning(schedule, scope="global", structure="1X4")
        assert callback.get_config()["structure"] == "1x4"
        x, y = toy_data(128)
        model.fit(x, y, batch_size=32, epochs=3, verbose=0, callbacks=[callback])
        masks = _masks(model)
        total_blocks = sum(m.size for m in masks) // 4
        assert sum(int(m.sum()) for m in masks) == 4 * (total_blocks - exact_count(0.75, total_blocks))
        assert all(set(np.unique(_blocks_of(m))) <= {0, 4} for m in masks)
        assert pruned_weights_are_zero(model)

    def test_lottery_callback_prunes_whole_blocks_each_round(self):
        model = compile_classifier(tfl.prunable(mlp()))
        lottery = tfl.LotteryCallback(rounds=3, pruning_rate=0.5, structure="1x4", monitor="loss", verbose=0)
        assert tfl.LotteryCallback.from_config(lottery.get_config()).structure == "1x4"
        x, y = toy_data(64)
        model.fit(x, y, batch_size=32, epochs=3, verbose=0, callbacks=[lottery])
        n_blocks = sum(m.size for m in _masks(model)) // 4
        alive = n_blocks
        for record in lottery.history:
            assert record["sparsity"] == pytest.approx(1 - alive / n_blocks)
            alive -= exact_count(0.5, alive)
        assert all(set(np.unique(_blocks_of(m))) <= {0, 4} for m in _masks(model))

    def test_lottery_callback_refuses_a_misfit_layer_before_training(self):
        model = compile_classifier(tfl.prunable(mlp(input_dim=10)))
        lottery = tfl.LotteryCallback(rounds=2, pruning_rate=0.5, structure="1x4", verbose=0)
        x, y = toy_data(32, input_dim=10)
        before = [w.copy() for w in model.get_weights()]
        with pytest.raises(ValueError, match=r"Received layer 'dense\w*' with 64 outputs and 10 inputs"):
            model.fit(x, y, epochs=2, verbose=0, callbacks=[lottery])
        for old, new in zip(before, model.get_weights()):
            np.testing.assert_array_equal(old, new)


@pytest.mark.slow
def test_the_gradual_kind_takes_blocks_from_the_command_line_config(tmp_path):
    import os

    from tests.experiments.kinds.test_gradual import tiny_config
    from tf_lottery.experiments.kinds import gradual

    config = tiny_config(final_sparsity=0.75, structure="1x4")
    gradual.validate(config)
    summary = gradual.run_experiment(config, str(tmp_path))
    ticket = tfl.Ticket.load(os.path.join(summary["root"], "replicate_0", "round_0", "end.npz"))
    assert ticket.sparsity == 0.75
    for mask in ticket.masks:
        assert set(np.unique(_blocks_of(mask))) <= {0, 4}


@pytest.mark.slow
def test_the_lottery_kind_prunes_blocks_at_each_level_from_the_pruning_group(tmp_path):
    import os

    from tests.testing import tiny_run_config
    from tf_lottery.experiments import run_experiment

    config = tiny_run_config(training_steps="1ep", branches="")
    config.run.levels = 2
    config.pruning.structure = "1x4"
    summary = run_experiment(config, str(tmp_path), log=lambda line: None)
    replicate = os.path.join(summary["root"], "replicate_0")
    previous = None
    for level in (1, 2):
        ticket = tfl.Ticket.load(os.path.join(replicate, f"round_{level}", "start.npz"))
        n_blocks = sum(m.size for m in ticket.masks) // 4
        assert sum(int(m.sum()) for m in ticket.masks) == 4 * (
            n_blocks - exact_count(1 - 0.8**level, n_blocks)
        )
        assert all(set(np.unique(_blocks_of(m))) <= {0, 4} for m in ticket.masks)
        if previous is not None:
            assert all(not np.any(new & ~old) for old, new in zip(previous, ticket.masks))
        previous = ticket.masks


@pytest.mark.parametrize(
    "change, message",
    [
        (
            dict(branches="reinit,random_global"),
            r"`config.run.branches`: expected no random_\* control with pruning.structure='1x4' .*"
            r"drop \['random_global'\]",
        ),
        (dict(experiment="gradual"), r"`config.pruning.structure`: expected '' \(the gradual kind takes"),
    ],
)
def test_the_command_line_refuses_blocks_where_they_do_not_apply(change, message):
    from tests.testing import tiny_run_config
    from tf_lottery.experiments import registry
    from tf_lottery.experiments.kinds import gradual

    config = gradual.defaults() if change.get("experiment") == "gradual" else tiny_run_config()
    config.pruning.structure = "1x4"
    if "branches" in change:
        config.run.branches = change["branches"]
    with pytest.raises(ValueError, match=message):
        registry.validate(config)


def test_the_gradual_kind_refuses_a_misfit_block_before_writing(tmp_path):
    import os

    from tests.experiments.kinds.test_gradual import tiny_config
    from tf_lottery.experiments.kinds import gradual

    with pytest.raises(
        ValueError, match=r"`config.gradual.structure`='1x16': .*with 32 outputs and 40 inputs"
    ):
        gradual.run_experiment(tiny_config(structure="1x16"), str(tmp_path))
    assert os.listdir(tmp_path) == []
