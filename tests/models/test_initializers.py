"""open_lth's `model_init` and `batchnorm_init` (tf_lottery.models.initializers)."""

import keras
import numpy as np
import pytest

import tf_lottery as tfl
from tf_lottery.models import build_model
from tf_lottery.models.initializers import initialize, layers


def _kernels(model):
    return {
        layer.name: np.asarray(layer.kernel)
        for layer in layers(model)
        if hasattr(layer, "kernel_initializer")
    }


def test_orthogonal_kernels_have_orthonormal_columns():
    model = build_model("mlp", (40,), 32, hidden=(64, 32))
    initialize(model, model_init="orthogonal", seed=0)
    kernels = _kernels(model)
    # fc2 (64 x 32) and the square output layer (32 x 32): W^T W = I.
    for name in ("fc2", "output"):
        w = kernels[name]
        np.testing.assert_allclose(w.T @ w, np.eye(w.shape[1]), atol=1e-5)
    square = kernels["output"]
    np.testing.assert_allclose(square @ square.T, np.eye(32), atol=1e-5)


@pytest.mark.parametrize(
    "name, std, bound",
    [
        # LeNet-300-100's fc1: fan_in 784, fan_out 300 (235,200 draws).
        ("kaiming_normal", np.sqrt(2 / 784), None),
        ("glorot_normal", np.sqrt(2 / (784 + 300)), None),
        ("kaiming_uniform", np.sqrt(6 / 784) / np.sqrt(3), np.sqrt(6 / 784)),
        ("glorot_uniform", np.sqrt(6 / 1084) / np.sqrt(3), np.sqrt(6 / 1084)),
    ],
)
def test_variance_scaling_kernels_match_pytorch_formulas(name, std, bound):
    model = build_model("lenet_300_100", (28, 28, 1), 10)
    initialize(model, model_init=name, seed=1)
    w = _kernels(model)["fc1"]
    assert w.std() == pytest.approx(std, rel=0.01)
    assert abs(w.mean()) < 0.01 * std
    if bound is None:
        # Untruncated, as torch.nn.init draws (Keras' he_normal is truncated at 2 std).
        assert np.abs(w).max() > 3.5 * std
    else:
        assert np.abs(w).max() <= bound and np.abs(w).max() > 0.999 * bound


def test_the_output_layer_is_drawn_too_and_draws_follow_the_seed():
    model = build_model("mnist1d_mlp", (40,), 10)
    before = _kernels(model)
    initialize(model, model_init="kaiming_normal", seed=5)
    after = _kernels(model)
    assert all(not np.array_equal(before[k], after[k]) for k in before)
    assert after["output"].std() == pytest.approx(np.sqrt(2 / 256), rel=0.1)
    again = build_model("mnist1d_mlp", (40,), 10)
    initialize(again, model_init="kaiming_normal", seed=5)
    for key, value in _kernels(again).items():
        np.testing.assert_array_equal(value, after[key])
    initialize(again, model_init="kaiming_normal", seed=6)
    assert not np.array_equal(_kernels(again)["fc1"], after["fc1"])


def test_the_reinit_control_draws_from_model_init():
    model = tfl.prunable(build_model("lenet_300_100", (28, 28, 1), 10))
    initialize(model, model_init="kaiming_uniform", seed=0)
    first = _kernels(model)["fc1"]
    tfl.reinitialize(model, seed=1)
    fresh = _kernels(model)["fc1"]
    assert not np.array_equal(first, fresh)
    bound = np.sqrt(6 / 784)  # glorot_normal, the builder's own, would exceed it
    assert np.abs(fresh).max() <= bound and fresh.std() == pytest.approx(bound / np.sqrt(3), rel=0.01)


@pytest.mark.parametrize(
    "name, gamma_range, beta_value",
    [
        ("uniform", (0.0, 1.0), 0.0),
        ("fixed", (1.0, 1.0), 0.0),
        ("oneone", (1.0, 1.0), 1.0),
        ("positivenegative", (-1.0, 1.0), 0.0),
    ],
)
def test_batchnorm_initializers(name, gamma_range, beta_value):
    model = build_model("resnet20", (8, 8, 3), 10)
    initialize(model, batchnorm_init=name, seed=0)
    norms = [layer for layer in layers(model) if isinstance(layer, keras.layers.BatchNormalization)]
    gamma = np.concatenate([np.asarray(layer.gamma) for layer in norms])
    beta = np.concatenate([np.asarray(layer.beta) for layer in norms])
    low, high = gamma_range
    assert gamma.min() >= low and gamma.max() <= high
    if low < high:  # drawn: spread over the whole range (about 1,100 values)
        assert gamma.min() < low + 0.05 * (high - low) and gamma.max() > high - 0.05 * (high - low)
    np.testing.assert_array_equal(beta, beta_value)


def test_a_model_without_batchnorm_is_warned_about():
    with pytest.warns(UserWarning, match=r"batchnorm_init='uniform'.*has no BatchNormalization"):
        initialize(build_model("mlp", (4,), 2), batchnorm_init="uniform")


@pytest.mark.parametrize(
    "argument, value, message",
    [
        (
            "model_init",
            "xavier",
            r"`config.model.model_init`: expected one of \('kaiming_normal'.*Received: model_init='xavier'",
        ),
        (
            "batchnorm_init",
            "zeros",
            r"`config.model.batchnorm_init`: expected one of \('uniform'.*Received: batchnorm_init='zeros'",
        ),
    ],
)
def test_unknown_names_fail_before_any_weight_changes(argument, value, message):
    model = build_model("mlp", (4,), 2)
    before = _kernels(model)
    with pytest.raises(ValueError, match=message):
        initialize(model, **{argument: value})
    for key, kernel in _kernels(model).items():
        np.testing.assert_array_equal(kernel, before[key])
