"""Every registry model builds, wraps, prunes and trains one step."""

import keras
import numpy as np
import pytest

import tf_lottery as tfl
from tests.testing import TestCase, compile_classifier, pruned_weights_are_zero
from tf_lottery.models import registry

# Deep models trace for 10-50 s on 2 CPU cores: run in the slow suite; their
# families are covered by vgg11 and resnet20 here, and resnet18/50 are built
# (not trained) by the parameter-count test.
_SLOW = {"vgg16", "vgg19", "resnet18", "resnet50"}
# The deeper CIFAR ResNets are resnet20's builder and blocks with more blocks a stage: they are
# built, pruned and counted against the paper (`test_deeper_cifar_resnets_...`), not trained a
# step (10, 18 and 38 s to trace here, for the step resnet20 trains in the default suite).
_DEEPER_CIFAR_RESNETS = {"resnet32": 0.46e6, "resnet56": 0.85e6, "resnet110": 1.7e6}
_NAMES = [
    pytest.param(n, marks=pytest.mark.slow) if n in _SLOW else n
    for n in registry.names()
    if n not in _DEEPER_CIFAR_RESNETS
]

_SHAPES = {
    "mnist1d_mlp": (40,),
    "mlp": (40,),
    "lenet_300_100": (28, 28, 1),
    "resnet18": (32, 32, 3),
    "resnet50": (32, 32, 3),
}


class TestRegistry(TestCase):
    @pytest.mark.parametrize("name", _NAMES)
    def test_model_builds_prunes_and_trains_a_step(self, name):
        shape = _SHAPES.get(name, (32, 32, 3))
        model = tfl.prunable(registry.build_model(name, shape, 10))
        assert model.layers[-1].name.endswith("output")
        compile_classifier(model, keras.optimizers.SGD(0.01))
        result = tfl.prune(model, 0.2)
        assert result["sparsity"] == pytest.approx(0.2, abs=1e-4)
        rng = np.random.default_rng(0)
        x = rng.normal(size=(2, *shape)).astype("float32")
        y = np.array([1, 3])
        before = [np.array(w) for w in model.trainable_weights]
        logs = model.train_on_batch(x, y, return_dict=True)
        assert np.isfinite(logs["loss"])
        assert any(not np.array_equal(b, np.array(w)) for b, w in zip(before, model.trainable_weights))
        assert pruned_weights_are_zero(model)
        assert tfl.sparsity_report(model).sparsity == pytest.approx(result["sparsity"])

    @pytest.mark.slow
    @pytest.mark.parametrize("name", sorted(_DEEPER_CIFAR_RESNETS))
    def test_deeper_cifar_resnets_build_prune_and_count_as_in_the_paper(self, name):
        model = registry.build_model(name, (32, 32, 3), 10)
        depth = int(name.removeprefix("resnet"))
        # 6N+2 weighted layers on the main path: the stem, N basic blocks of two 3x3
        # convolutions per stage, the classifier; and a 1x1 projection where a stage halves
        # the resolution (two).
        kernels = [layer.kernel_size for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
        assert kernels.count((3, 3)) + 1 == depth and kernels.count((1, 1)) == 2
        trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        # He et al. (2016), Table 6, counts rounded to two digits: 0.46M, 0.85M, 1.7M.
        assert trainable == pytest.approx(_DEEPER_CIFAR_RESNETS[name], rel=0.02)
        wrapped = tfl.prunable(model)
        assert tfl.prune(wrapped, 0.2)["sparsity"] == pytest.approx(0.2, abs=1e-4)
        assert pruned_weights_are_zero(wrapped)

    @pytest.mark.parametrize(
        "name, shape, classes, parameters",
        [
            ("lenet_300_100", (28, 28, 1), 10, 266_610),
            ("resnet18", (64, 64, 3), 1000, 11_689_512),
            ("resnet50", (64, 64, 3), 1000, 25_557_032),
        ],
    )
    def test_parameter_counts_match_the_papers(self, name, shape, classes, parameters):
        model = registry.build_model(name, shape, classes)
        trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        assert trainable == parameters

    def test_names_are_matched_without_case_or_dashes(self):
        assert registry.canonical_name("LeNet-300-100") == "lenet_300_100"
        assert registry.canonical_name("ResNet_20") == "resnet20"
        assert registry.canonical_name("VGG-19") == "vgg19"

    def test_unknown_model_name_is_named(self):
        with pytest.raises(
            ValueError,
            match=r"Invalid value for `config.model.name`: expected one of \[.*'lenet_300_100'"
            r".*\]. Received: name='lenet5'",
        ):
            registry.build_model("lenet5", (28, 28, 1), 10)

    def test_unknown_model_option_is_named(self):
        with pytest.raises(
            ValueError,
            match=r"Unknown config key `config.model.depth` for model 'resnet20': expected "
            r"one of \['kernel_initializer', 'width'\]. Received: depth=32",
        ):
            registry.build_model("resnet20", (32, 32, 3), 10, depth=32)

    def test_model_options_reach_the_builder(self):
        model = registry.build_model("mnist1d_mlp", (40,), 10, hidden=(32, 16))
        assert [layer.units for layer in model.layers if isinstance(layer, keras.layers.Dense)] == [
            32,
            16,
            10,
        ]
