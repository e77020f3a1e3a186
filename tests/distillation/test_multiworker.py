"""MultiWorkerMirroredStrategy: two worker processes on 127.0.0.1 run one KD
pruning round with `LotteryCallback` and end with identical masks and weights.

The test starts this file as a script twice, once per worker, each with its
own `TF_CONFIG`; each worker writes its student's masks and weights to an
`.npz` file that the test compares.
"""

import os
import pathlib
import sys

import numpy as np
import pytest

ROOT = str(pathlib.Path(__file__).resolve().parents[2])
WORKERS = 2
TIMEOUT_S = 300


@pytest.mark.slow  # two worker processes end to end (~24 s); the 2-replica KD tests stay in the default suite
def test_two_workers_end_one_kd_pruning_round_with_identical_masks(tmp_path):
    from tests.testing import run_workers

    run_workers(
        [
            [sys.executable, os.path.abspath(__file__), str(tmp_path / f"worker{i}.npz")]
            for i in range(WORKERS)
        ],
        cwd=ROOT,
        timeout_s=TIMEOUT_S,
    )

    results = [np.load(tmp_path / f"worker{index}.npz") for index in range(WORKERS)]
    assert results[0].files == results[1].files
    masks = [k for k in results[0].files if k.startswith("mask")]
    assert len(masks) == 3
    for key in results[0].files:
        np.testing.assert_array_equal(results[0][key], results[1][key], err_msg=key)
    alive = sum(int(results[0][k].sum()) for k in masks)
    total = sum(results[0][k].size for k in masks)
    assert 1 - alive / total == pytest.approx(0.5, abs=1e-3)
    assert float(results[0]["num_replicas"]) == WORKERS
    assert results[0]["sparsities"][0] == 0.0 and np.all(np.isfinite(results[0]["losses"]))


def _worker(output_path: str) -> None:
    import tensorflow as tf

    # Must exist before any other TensorFlow op runs in this process.
    strategy = tf.distribute.MultiWorkerMirroredStrategy()

    import keras

    import tf_lottery as tfl
    from tests.testing import mlp, toy_data
    from tf_lottery.distillation import KDDistiller, with_teacher_logits

    keras.utils.set_random_seed(0)
    teacher_weights = mlp(name="teacher").get_weights()
    student_weights = mlp(name="student").get_weights()
    with strategy.scope():
        teacher = mlp(name="teacher")
        teacher.set_weights(teacher_weights)
        student = mlp(name="student")
        student.set_weights(student_weights)
        distiller = KDDistiller(teacher, tfl.prunable(student))
        distiller.compile(keras.optimizers.SGD(0.05, momentum=0.9))
        distiller.optimizer.build(distiller.trainable_variables)

    reference_teacher = mlp(name="teacher")  # outside the strategy: a plain local predict
    reference_teacher.set_weights(teacher_weights)
    x, y = toy_data(256, seed=1)
    data = with_teacher_logits(x, y, reference_teacher, 64, shuffle=False)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    batches = strategy.experimental_distribute_dataset(data.with_options(options))

    # Keras 3.15's fit() fails under MultiWorkerMirroredStrategy for any model
    # (keras-team/keras#20585), so the same train_step runs in a custom loop
    # and LotteryCallback is driven through the Keras callback API.
    @tf.function
    def train_step(batch):
        strategy.run(distiller.train_step, args=(batch,))

    epochs, steps = 2, 4
    lottery = tfl.LotteryCallback(rounds=2, pruning_rate=0.5, rewind_to="0it", verbose=0)
    callbacks = keras.callbacks.CallbackList([lottery], model=distiller, epochs=epochs, steps=steps)
    callbacks.on_train_begin()
    for epoch in range(epochs):
        distiller.reset_metrics()
        callbacks.on_epoch_begin(epoch)
        for step, batch in enumerate(batches):
            train_step(batch)
            callbacks.on_train_batch_end(step)
        assert step + 1 == steps
        logs = {name: float(value) for name, value in distiller.get_metrics_result().items()}
        callbacks.on_epoch_end(epoch, logs)
    callbacks.on_train_end()

    arrays = {
        "num_replicas": np.asarray(strategy.num_replicas_in_sync),
        "losses": np.asarray([r["metrics"]["loss"] for r in lottery.history]),
        "sparsities": np.asarray([r["sparsity"] for r in lottery.history]),
    }
    for index, wrapper in enumerate(tfl.prune_wrappers(distiller)):
        arrays[f"mask{index}"] = wrapper.get_masks()[0]
    for index, variable in enumerate(distiller.student.weights):
        arrays[f"weight{index}"] = np.asarray(variable.numpy())
    np.savez(output_path, **arrays)


if __name__ == "__main__":
    _worker(sys.argv[1])
