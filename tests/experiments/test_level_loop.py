"""The level loop's plug-ins: lines with restart points of their own, analyses stored once."""

import os

import numpy as np
import pytest

import tf_lottery as tfl
from tests.testing import tiny_run_config
from tf_lottery.experiments import run_store
from tf_lottery.experiments.level_loop import Line, read_or_compute
from tf_lottery.experiments.runner import replicate_for, run_levels


def tiny_config(rewind_to="0it"):
    return tiny_run_config(rewind_to, branches="")


def test_a_line_restarting_at_a_point_is_the_ticket_rewound_there(tmp_path):
    late = Line("late", restart="1ep")
    lines = run_levels(tiny_config(), str(tmp_path / "lines"), main=Line("ticket"), arms=(late,))
    rewound = run_levels(tiny_config(rewind_to="1ep"), str(tmp_path / "rewound"))
    # Level 0 records the line's point beside the rewind point (step 0 here).
    point, _ = run_store.load_state(os.path.join(lines["root"], "replicate_0", "rewind_14.npz"))
    reference, _ = run_store.load_state(os.path.join(rewound["root"], "replicate_0", "rewind.npz"))
    assert point.step == reference.step == 14
    for a, b in zip(
        point.model_values + point.optimizer_values, reference.model_values + reference.optimizer_values
    ):
        np.testing.assert_array_equal(a, b)
    for what in ("start", "end"):
        got = tfl.Ticket.load(
            os.path.join(lines["root"], "replicate_0", "branch_late", "round_1", f"{what}.npz")
        )
        want = tfl.Ticket.load(os.path.join(rewound["root"], "replicate_0", "round_1", f"{what}.npz"))
        for a, b in zip(got.masks + got.weights, want.masks + want.weights):
            np.testing.assert_array_equal(a, b)
    metrics = run_store.read_metrics(os.path.join(lines["root"], "replicate_0", "branch_late", "round_1"))
    assert (metrics["start_step"], metrics["end_step"]) == (14, 42)


def test_a_restart_point_must_be_a_point_before_the_end_of_training(tmp_path):
    with pytest.raises(ValueError, match=r"Invalid value for argument `rewind_to`: expected '<N>it'"):
        Line("late", restart="5x")
    with pytest.raises(ValueError, match=r"`from_init=True` restarts at initialisation"):
        Line("late", from_init=True, restart="1ep")
    with pytest.raises(ValueError, match=r"line 'late': '3ep' is step 42, not before the end of training"):
        run_levels(tiny_config(), str(tmp_path), arms=(Line("late", restart="3ep"),))


def test_an_analysis_is_computed_once_and_read_back(tmp_path):
    path = str(tmp_path / "analysis.json")
    calls = []

    def compute():
        calls.append(1)
        return {"rows": [{"barrier": 0.25, "path": (0.5, 0.75)}]}

    first = read_or_compute(path, compute)
    assert first == {"rows": [{"barrier": 0.25, "path": [0.5, 0.75]}]}
    assert read_or_compute(path, compute) == first and len(calls) == 1
    assert [name for name in os.listdir(tmp_path) if name.endswith(".tmp")] == []


def test_evaluation_in_memory_equals_keras_evaluate():
    import keras
    import numpy as np
    import tensorflow as tf

    from tf_lottery.experiments import trainer

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(3)]
    )
    model.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        steps_per_execution=7,
    )
    rng = np.random.default_rng(0)
    dataset = tf.data.Dataset.from_tensor_slices(
        (rng.normal(size=(250, 8)).astype("float32"), rng.integers(0, 3, 250))
    ).batch(64)
    expected = model.evaluate(dataset, verbose=0, return_dict=True)
    loop = trainer._KerasLoop(model)
    assert loop.evaluate(dataset) == {key: float(value) for key, value in expected.items()}
    assert len(trainer._in_memory(dataset)) == 4  # held once, reused
    assert loop.evaluate(dataset) == {key: float(value) for key, value in expected.items()}
    # Too large to hold: Keras' evaluate, same numbers.
    previous, trainer.EVAL_IN_MEMORY_BYTES = trainer.EVAL_IN_MEMORY_BYTES, 100
    try:
        other = dataset.map(lambda x, y: (x, y))
        assert trainer._in_memory(other) is None
        assert loop.evaluate(other) == pytest.approx({key: float(value) for key, value in expected.items()})
    finally:
        trainer.EVAL_IN_MEMORY_BYTES = previous
    # Batches split over several calls (reset in the first, results from the last): same numbers,
    # also for a model whose metrics were last updated by training.
    previous, trainer.EVAL_BATCHES_PER_CALL = trainer.EVAL_BATCHES_PER_CALL, 3
    try:
        grouped = trainer._KerasLoop(model)
        trainer._TEST_STEPS.pop(model)  # traced anew with the smaller groups
        assert grouped.evaluate(dataset) == {key: float(value) for key, value in expected.items()}
        model.fit(dataset, epochs=1, verbose=0)
        trained = model.evaluate(dataset, verbose=0, return_dict=True)
        assert trained != expected
        assert grouped.evaluate(dataset) == {key: float(value) for key, value in trained.items()}
    finally:
        trainer.EVAL_BATCHES_PER_CALL = previous


def _end(root, level=0):
    return tfl.Ticket.load(os.path.join(root, "replicate_0", f"round_{level}", "end.npz"))


def test_data_order_seed_set_to_what_seed_implied_gives_identical_training(tmp_path):
    config = tiny_config()
    config.run.levels = 0
    default = run_levels(config, str(tmp_path / "default"))
    config.train.data_order_seed = 0  # seed 0 + replicate 0: what the data order was seeded with
    same = run_levels(config, str(tmp_path / "same"))
    assert same["hash"] != default["hash"]  # a non-default value is part of the run's name
    for a, b in zip(_end(default["root"]).weights, _end(same["root"]).weights):
        np.testing.assert_array_equal(a, b)
    config.train.data_order_seed = 7
    other = run_levels(config, str(tmp_path / "other"))
    assert not np.array_equal(_end(default["root"]).weights[0], _end(other["root"]).weights[0])


def test_data_order_seed_is_shared_by_replicates_and_the_init_is_not(tmp_path):
    from tf_lottery.data.registry import load_dataset

    config = tiny_config()
    config.run.replicates = 2
    config.train.data_order_seed = 5
    data = load_dataset(config.dataset)
    store = run_store.RunStore(str(tmp_path), config)
    replicates = [replicate_for(config, store, r, data, log=lambda line: None) for r in (0, 1)]
    assert [r._plan(0).seed for r in replicates] == [5, 5]
    assert not np.array_equal(replicates[0].initial.model_values[0], replicates[1].initial.model_values[0])
    config.train.data_order_seed = -1
    assert replicate_for(config, store, 1, data, log=lambda line: None)._plan(0).seed == 1


def test_eval_on_train_records_the_training_set_accuracy(tmp_path):
    from tf_lottery.data.registry import load_dataset
    from tf_lottery.experiments.network import build_network

    config = tiny_config()
    config.run.levels = 0
    config.train.eval_on_train = True
    root = run_levels(config, str(tmp_path))["root"]
    evals = run_store.read_metrics(os.path.join(root, "replicate_0", "round_0"))["evals"]
    assert [e["step"] for e in evals] == [14, 28, 42]
    assert all("train_eval_accuracy" in e and "train_eval_loss" in e for e in evals)
    # Independent check: the stored end weights classify the 900 training examples as recorded.
    data = load_dataset(config.dataset)
    model = build_network(config, data, 0)
    _end(root).apply(model)
    predicted = np.argmax(model.predict(data.x_train, verbose=0), axis=1)
    assert evals[-1]["train_eval_accuracy"] == pytest.approx(np.mean(predicted == data.y_train), abs=1e-6)


def test_a_frozen_output_layer_ends_every_level_as_it_started(tmp_path):
    config = tiny_config()
    config.model.output_frozen = True
    config.model.model_init = "kaiming_normal"
    root = run_levels(config, str(tmp_path))["root"]
    for level in (0, 1):
        start = tfl.Ticket.load(os.path.join(root, "replicate_0", f"round_{level}", "start.npz"))
        end = _end(root, level)
        np.testing.assert_array_equal(end.weights[4], start.weights[4])  # output kernel
        np.testing.assert_array_equal(end.weights[5], start.weights[5])  # output bias
        assert not np.array_equal(end.weights[0], start.weights[0])  # fc1 trained
    # model_init drew the kernels: N(0, 2 / fan_in), fan_in 40 for fc1.
    assert tfl.Ticket.load(os.path.join(root, "replicate_0", "round_0", "start.npz")).weights[0].std() == (
        pytest.approx(np.sqrt(2 / 40), rel=0.05)
    )


def test_a_rewind_step_inside_an_execution_block_is_captured_exactly(tmp_path):
    # steps_per_execution=7 and a rewind point at step 5: the trainer ends a chunk at step 5,
    # so the rewind state is that of step 5 exactly, as with one step per execution.
    states = {}
    for spe in (1, 7):
        config = tiny_config(rewind_to="5it")
        config.run.steps_per_execution = spe
        config.run.levels = 0
        result = run_levels(config, str(tmp_path / f"spe{spe}"))
        states[spe], _ = run_store.load_state(os.path.join(result["root"], "replicate_0", "rewind.npz"))
    assert states[1].step == states[7].step == 5
    for a, b in zip(states[1].model_values, states[7].model_values):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
