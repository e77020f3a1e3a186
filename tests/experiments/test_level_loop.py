"""The level loop's plug-ins: lines with restart points of their own, analyses stored once."""

import os

import numpy as np
import pytest

import tf_lottery as tfl
from tf_lottery.experiments import run_store, schema
from tf_lottery.experiments.level_loop import Line, read_or_compute
from tf_lottery.experiments.runner import run_levels


def tiny_config(rewind_to="0it"):
    config = schema.defaults()
    config.dataset.num_samples = 1000
    config.dataset.validation = 100
    config.model.hidden = (32, 32)
    config.train.batch_size = 50
    config.train.training_steps = "3ep"
    config.pruning.rewind_to = rewind_to
    config.run.levels = 1
    config.run.branches = ""
    config.run.deterministic = False  # process-wide; the CLI tests cover it
    config.run.plots = False
    config.run.verbose = 0
    return config


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
