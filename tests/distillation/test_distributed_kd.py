"""KD tickets under MirroredStrategy (2 logical CPUs): same masks as 1 replica.

Not tested here (they fail for plain Keras models too under MirroredStrategy on
logical CPUs in this TF/Keras version): `jit_compile=True` and
`steps_per_execution > 1`. XLA compilation of the step is tested on one device
in test_kd_distiller.py.
"""

import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_lottery as tfl
from tests.testing import TestCase, mlp, pruned_weights_are_zero, toy_data, two_replica_strategy
from tf_lottery.distillation import KDDistiller, array_batches, with_teacher_logits

HOST_CALL_OPS = {"PyFunc", "PyFuncStateless", "EagerPyFunc"}


@functools.cache
def _teacher_and_student_weights():
    """Weights of a trained teacher and an initial student (computed once per session)."""
    teacher = mlp(name="teacher")
    teacher.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    teacher.fit(*toy_data(256), batch_size=64, epochs=3, verbose=0)
    return teacher.get_weights(), mlp(name="student").get_weights()


def _kd_ticket_round(strategy, teacher_weights, student_weights, cached=True):
    """One KD-ticket IMP round: KD-train dense, prune 60% globally, rewind to 0it, KD-train."""
    with strategy.scope():
        teacher = mlp(name="teacher")
        teacher.set_weights(teacher_weights)
        student = mlp(name="student")
        student.set_weights(student_weights)
        distiller = KDDistiller(teacher, tfl.prunable(student))
        distiller.compile(keras.optimizers.SGD(0.05, momentum=0.9), metrics=["accuracy"])
    lottery = tfl.LotteryCallback(rounds=2, pruning_rate=0.6, rewind_to="0it", verbose=0)
    x, y = toy_data(256, seed=1)
    options = dict(batch_size=64, shuffle=False)
    data = with_teacher_logits(x, y, teacher, **options) if cached else array_batches((x, y), **options)
    history = distiller.fit(data, epochs=4, callbacks=[lottery], verbose=0)
    return distiller, lottery, history.history


def _replica_values(variable):
    return [np.asarray(v) for v in variable.value.values]


def _op_types(graph_def):
    types = {node.op for node in graph_def.node}
    for function in graph_def.library.function:
        types |= {node.op for node in function.node_def}
    return types


class TestDistributedKD(TestCase):
    def test_two_replicas_end_with_the_masks_and_metrics_of_one(self):
        teacher_weights, student_weights = _teacher_and_student_weights()
        strategy = two_replica_strategy()
        assert strategy.num_replicas_in_sync == 2
        one, one_lottery, one_history = _kd_ticket_round(
            tf.distribute.get_strategy(), teacher_weights, student_weights
        )
        two, two_lottery, two_history = _kd_ticket_round(strategy, teacher_weights, student_weights)

        for a, b in zip(tfl.prune_wrappers(one), tfl.prune_wrappers(two)):
            np.testing.assert_array_equal(a.get_masks()[0], b.get_masks()[0])
        assert (
            one_lottery.history[-1]["sparsity"]
            == two_lottery.history[-1]["sparsity"]
            == pytest.approx(0.6, abs=1e-3)
        )
        for key in ("loss", "student_loss", "distillation_loss", "accuracy"):
            np.testing.assert_allclose(one_history[key], two_history[key], rtol=1e-4, atol=1e-5)
        for a, b in zip(one.student.weights, two.student.weights):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)

        for wrapper in tfl.prune_wrappers(two):
            masks = _replica_values(wrapper.masks[0])
            kernels = _replica_values(wrapper.layer.kernel)
            assert len(masks) == len(kernels) == 2
            np.testing.assert_array_equal(masks[0], masks[1])
            np.testing.assert_array_equal(kernels[0], kernels[1])
            np.testing.assert_array_equal(kernels[1][~masks[1]], 0.0)

    def test_teacher_in_the_step_under_strategy_rewinds_and_keeps_replicas_identical(self):
        teacher_weights, student_weights = _teacher_and_student_weights()
        distiller, lottery, history = _kd_ticket_round(
            two_replica_strategy(), teacher_weights, student_weights, cached=False
        )
        assert np.all(np.isfinite(history["loss"]))
        assert pruned_weights_are_zero(distiller)
        for weight, value in zip(distiller.teacher.weights, teacher_weights):
            for replica in _replica_values(weight):
                np.testing.assert_array_equal(replica, value)
        for variable in distiller.student.weights:
            replicas = _replica_values(variable)
            np.testing.assert_array_equal(replicas[0], replicas[1])
        assert lottery.snapshot.step == 0 and lottery.history[-1]["sparsity"] == pytest.approx(0.6, abs=1e-3)

    def test_distributed_train_step_has_no_host_calls(self):
        strategy = two_replica_strategy()
        with strategy.scope():
            distiller = KDDistiller(mlp(name="teacher"), tfl.prunable(mlp(name="student")))
            distiller.compile(keras.optimizers.SGD(0.05, momentum=0.9), metrics=["accuracy"])
        tfl.prune(distiller, target_sparsity=0.5)
        x, y = toy_data(64, seed=2)
        distiller.evaluate(x, y, verbose=0)  # builds the metrics
        with strategy.scope():
            distiller.optimizer.build(distiller.trainable_variables)
        options = dict(batch_size=64, drop_remainder=True)
        for data in (
            with_teacher_logits(x, y, distiller.teacher, **options),
            array_batches((x, y), **options),
        ):
            batch = next(iter(strategy.experimental_distribute_dataset(data)))

            @tf.function
            def step(batch):
                return strategy.run(distiller.train_step, args=(batch,))

            graph_def = step.get_concrete_function(batch).graph.as_graph_def()
            types = _op_types(graph_def)
            assert "MatMul" in types  # the step is really in the graph
            assert not types & HOST_CALL_OPS
