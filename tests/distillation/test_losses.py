"""KDDistiller's label loss in every form Keras' compile takes: name, function, Loss instance."""

import keras
import numpy as np
import pytest

import tf_lottery as tfl
from tests.testing import TestCase, mlp, toy_data
from tf_lottery.distillation import KDDistiller
from tf_lottery.distillation.losses import PerExampleLoss, label_loss


def _per_example_logit_ce(y_true, y_pred):
    return keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)


def _distiller(loss):
    teacher = mlp(name="teacher")
    distiller = KDDistiller(teacher, tfl.prunable(mlp()), kd_weight=0.5, temperature=2.0)
    distiller.compile(keras.optimizers.SGD(0.05), loss=loss)
    return distiller


# Every form gives the crossentropy of the student's logits (the student outputs logits).
LOGIT_CE_FORMS = {
    "name": "sparse_categorical_crossentropy",
    "class_name": "SparseCategoricalCrossentropy",
    "keras_function": keras.losses.sparse_categorical_crossentropy,
    "loss_instance": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    "own_function": _per_example_logit_ce,
    "default": None,
}


class TestLabelLoss(TestCase):
    @pytest.mark.parametrize("form", sorted(LOGIT_CE_FORMS))
    def test_every_form_compiles_trains_and_gives_the_logit_crossentropy(self, form):
        # Was: any name or function raised AttributeError (keras.losses.LossFunctionWrapper).
        distiller = _distiller(LOGIT_CE_FORMS[form])
        x, y = toy_data(64, seed=3)
        expected = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, distiller.student(x))
        logs = distiller.evaluate(x, y, batch_size=64, verbose=0, return_dict=True)
        assert logs["student_loss"] == pytest.approx(float(expected), rel=1e-5)
        history = distiller.fit(x, y, batch_size=32, epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0])

    def test_a_loss_without_logits_is_used_as_given(self):
        distiller = _distiller("mse")
        x, _ = toy_data(32, seed=4)
        y = np.zeros((32, 10), "float32")
        logs = distiller.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
        expected = float(keras.ops.mean(keras.ops.square(distiller.student(x))))
        assert logs["student_loss"] == pytest.approx(expected, rel=1e-5)

    @pytest.mark.parametrize("form", ["name", "keras_function", "loss_instance"])
    def test_the_compile_config_round_trips(self, form):
        distiller = _distiller(LOGIT_CE_FORMS[form])
        config = distiller.get_compile_config()
        clone = _distiller(None)
        clone.compile_from_config(config)
        assert isinstance(clone._label_loss, keras.losses.SparseCategoricalCrossentropy)
        assert clone._label_loss.get_config()["from_logits"] is True

    def test_a_function_loss_round_trips_as_a_registered_loss(self):
        loss = label_loss("mse")
        assert isinstance(loss, PerExampleLoss) and loss.name == "mean_squared_error"
        clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
        y, p = np.ones((4, 3), "float32"), np.zeros((4, 3), "float32")
        assert float(clone(y, p)) == pytest.approx(1.0)

    @pytest.mark.parametrize(
        "loss, message",
        [
            (
                "crossentropy_of_dreams",
                r"`loss`: expected a loss Keras knows by name.*Received: loss='crossentropy_of_dreams'",
            ),
            (3, r"`loss`: expected a loss name, a function.*Received: loss=3 of type int"),
        ],
    )
    def test_unknown_losses_are_named(self, loss, message):
        with pytest.raises(ValueError, match=message):
            _distiller(loss)


def test_a_lambda_gets_a_name_keras_accepts():
    assert label_loss(lambda y, p: keras.ops.square(y - p)).name == "lambda"
