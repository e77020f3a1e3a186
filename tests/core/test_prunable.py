"""prunable() and strip() on every kind of Keras model."""

import keras
import numpy as np
import pytest

import tf_lottery as tfl
from tests.testing import TestCase, compile_classifier, pruned_weights_are_zero, toy_data


@keras.saving.register_keras_serializable(package="tf_lottery_tests")
class Subclassed(keras.Model):
    def __init__(self, units=16, classes=4, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.classes = classes
        self.stem = keras.layers.Dense(units, activation="relu")
        self.blocks = [keras.layers.Dense(units, activation="relu") for _ in range(2)]
        self.norm = keras.layers.LayerNormalization()
        self.head = keras.layers.Dense(classes, name="head")

    def call(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = x + block(x)
        return self.head(self.norm(x))

    def get_config(self):
        return {**super().get_config(), "units": self.units, "classes": self.classes}


def sequential():
    return keras.Sequential(
        [keras.Input((20,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(4, name="head")]
    )


def functional_shared_nested():
    inputs = keras.Input((20,))
    shared = keras.layers.Dense(20, activation="relu", name="shared")
    inner = keras.Sequential([keras.Input((20,)), keras.layers.Dense(12, activation="relu")], name="inner")
    x = shared(shared(inputs))  # the same layer called twice
    outputs = keras.layers.Dense(4, name="head")(inner(x))
    return keras.Model(inputs, outputs)


def subclassed_built():
    model = Subclassed()
    model(np.zeros((1, 20), "float32"))
    return model


MODELS = {
    "sequential": (sequential, 2),
    "functional_shared_nested": (functional_shared_nested, 3),
    "subclassed": (Subclassed, 4),
    "subclassed_built": (subclassed_built, 4),
}


class TestPrunable(TestCase):
    @pytest.mark.parametrize("kind", sorted(MODELS))
    def test_wrap_prune_train_strip(self, kind):
        make, expected_wrappers = MODELS[kind]
        model = tfl.prunable(make())
        wrappers = tfl.prune_wrappers(model)
        assert len(wrappers) == expected_wrappers
        compile_classifier(model)
        x, y = toy_data(96, 20, 4)
        model.fit(x, y, batch_size=32, epochs=1, verbose=0)
        tfl.prune(model, target_sparsity=0.5)
        model.fit(x, y, batch_size=32, epochs=1, verbose=0)
        assert pruned_weights_are_zero(model)
        report = tfl.sparsity_report(model)
        assert report.total - report.alive == round(0.5 * report.total)

        plain = tfl.strip(model)
        assert plain.built
        all_layers = plain._flatten_layers(include_self=True, recursive=True)
        assert not any(isinstance(layer, tfl.PruneWrapper) for layer in all_layers)
        assert not any(v.dtype == "bool" for v in plain.weights)
        assert all(v.constraint is None for v in plain.weights)
        np.testing.assert_allclose(plain.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)
        zeros = sum(int(np.sum(v.numpy() == 0)) for v in plain.weights)
        assert zeros >= report.total - report.alive

    def test_clone_leaves_the_original_untouched(self):
        original = sequential()
        before = [w.numpy().copy() for w in original.weights]
        model = tfl.prunable(original)
        tfl.prune(model, target_sparsity=0.9)
        for value, weight in zip(before, original.weights):
            np.testing.assert_array_equal(value, weight.numpy())
        # Same starting values in the copy.
        kernel = tfl.prune_wrappers(model)[0].layer.kernel.numpy()
        mask = tfl.prune_wrappers(model)[0].get_masks()[0]
        np.testing.assert_array_equal(kernel[mask], before[0][mask])

    def test_shared_layer_gets_one_wrapper(self):
        model = tfl.prunable(functional_shared_nested())
        shared = [w for w in tfl.prune_wrappers(model) if w.layer.name == "shared"]
        assert len(shared) == 1
        assert len(shared[0].masks) == 1

    def test_subclassed_model_is_wrapped_in_place_and_keeps_weight_order(self):
        model = subclassed_built()
        order = [w.path.split("/")[-1] for w in model.weights]
        values = [w.numpy().copy() for w in model.weights]
        same = tfl.prunable(model)
        assert same is model
        assert isinstance(model.stem, tfl.PruneWrapper)
        assert all(isinstance(b, tfl.PruneWrapper) for b in model.blocks)
        non_masks = [w for w in model.weights if w.dtype != "bool"]
        assert [w.path.split("/")[-1] for w in non_masks] == order
        for value, weight in zip(values, non_masks):
            np.testing.assert_array_equal(value, weight.numpy())

    @pytest.mark.parametrize(
        "exclude",
        [["head"], [keras.layers.Dense], lambda layer: layer.name == "head"],
        ids=["by_name", "by_type", "by_predicate"],
    )
    def test_exclude(self, exclude):
        if exclude == [keras.layers.Dense]:
            with pytest.raises(ValueError, match="has nothing to prune"):
                tfl.prunable(sequential(), exclude=exclude)
            return
        model = tfl.prunable(sequential(), exclude=exclude)
        assert [w.layer.name for w in tfl.prune_wrappers(model)] != []
        assert "head" not in [w.layer.name for w in tfl.prune_wrappers(model)]

    def test_exclude_names_that_match_no_layer_are_refused_at_once(self):
        # Was: `exclude=["ouput"]` silently ignored, and the output layer pruned.
        with pytest.raises(
            ValueError,
            match=r"`exclude`: 'haed', 'fc9' match no layer of 'sequential'.*; did you mean 'haed' -> 'head'\? "
            r"The prunable layers of 'sequential' are: \['dense', 'head'\]\. "
            r"Received: exclude=\['haed', 'fc9', 'head'\]\. Nothing was changed",
        ):
            tfl.prunable(sequential(), exclude=["haed", "fc9", "head"])
        with pytest.raises(ValueError, match=r"'dens' matches no layer"):
            tfl.prunable(sequential(), exclude="dens")

    def test_exclude_names_of_layers_never_wrapped_are_refused(self):
        # Was: silently no effect (the nested model's layers were pruned).
        with pytest.raises(
            ValueError,
            match=r"'inner' is a Sequential, which is never wrapped, so excluding it changes nothing"
            r".*The prunable layers of '.*' are: \['shared', '.*', 'head'\]",
        ):
            tfl.prunable(functional_shared_nested(), exclude=["inner", "shared"])
        base = functional_shared_nested()
        nested_dense = base.get_layer("inner").layers[0].name
        model = tfl.prunable(base, exclude=[nested_dense, "shared"])
        assert [w.layer.name for w in tfl.prune_wrappers(model)] == ["head"]

    def test_exclude_names_on_in_place_models(self):
        # Subclassed models are wrapped in place: a bad name leaves them untouched.
        model = subclassed_built()
        with pytest.raises(ValueError, match=r"'hed' matches no layer.*did you mean 'hed' -> 'head'\?"):
            tfl.prunable(model, exclude=["hed"])
        assert not tfl.prune_wrappers(model)
        tfl.prunable(model, exclude=["head", keras.layers.LayerNormalization])
        assert not isinstance(model.head, tfl.PruneWrapper)
        assert isinstance(model.stem, tfl.PruneWrapper)
        # Wrapping again with the same names works (the wrappers' names count).
        tfl.prunable(model, exclude=["head"])

    def test_bad_input(self):
        with pytest.raises(ValueError, match=r"Invalid value for argument `model`: expected a Keras model"):
            tfl.prunable("model.keras")
        no_prunable = keras.Sequential([keras.Input((3,)), keras.layers.BatchNormalization()])
        with pytest.raises(ValueError, match="has nothing to prune"):
            tfl.prunable(no_prunable)
        with pytest.raises(ValueError, match=r"argument `exclude`: expected layer names"):
            tfl.prunable(sequential(), exclude=[3])
        with pytest.raises(ValueError, match="is not built"):
            tfl.strip(tfl.prunable(Subclassed()))

    def test_stripped_model_saves_and_loads_without_tf_lottery_objects(self, tmp_path):
        model = tfl.prunable(sequential())
        tfl.prune(model, target_sparsity=0.75)
        plain = tfl.strip(model)
        path = str(tmp_path / "plain.keras")
        plain.save(path)
        loaded = keras.models.load_model(path)
        x, _ = toy_data(8, 20, 4)
        np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)
        config = plain.to_json()
        assert "tf_lottery" not in config and "PruneWrapper" not in config


class TestLotteryTarget(TestCase):
    def test_wrappers_and_variables_follow_lottery_target(self):
        from tf_lottery.core.walk import model_variables

        class Pair(keras.Model):
            def __init__(self, teacher, student):
                super().__init__()
                self.teacher = teacher
                self.student = student

            def call(self, x):
                return self.student(x)

            def lottery_target(self):
                return self.student

        teacher = tfl.prunable(sequential())
        student = tfl.prunable(sequential())
        pair = Pair(teacher, student)
        assert tfl.prune_wrappers(pair) == tfl.prune_wrappers(student)
        assert [v.path for v in model_variables(pair)] == [v.path for v in model_variables(student)]
        tfl.prune(pair, rate=0.5)
        assert tfl.sparsity_report(student).sparsity == pytest.approx(0.5, abs=1e-3)
        assert tfl.sparsity_report(teacher).sparsity == 0.0
