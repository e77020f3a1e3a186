"""The run hash: stable, blind to defaults and to options that change no result."""

import copy
import functools

import pytest

from tf_lottery.experiments import config_hash, schema
from tf_lottery.experiments.default_config import get_config as default_config


def test_defaults_hash_to_the_empty_description():
    assert config_hash.hparams(schema.defaults()) == {}
    assert config_hash.canonical_string(schema.defaults()) == "{}"


def test_known_configs_keep_their_hash():
    # A change here renames existing runs: only accept it on purpose.
    assert config_hash.config_hash(schema.defaults()) == "44136fa355b3678a"
    assert config_hash.config_hash(default_config()) == "57c99b1ad12605c4"
    assert config_hash.hparams(default_config()) == {
        "dataset.validation": 500,
        "pruning.layer_rates": "output=0.1",
        "pruning.scope": "layer",
        "train.batch_size": 100,
        "train.training_steps": "30ep",
    }


def test_adding_an_option_with_a_default_keeps_existing_hashes(monkeypatch):
    config = default_config()
    before = config_hash.config_hash(config)
    original = schema.defaults

    def extended():
        defaults = original()
        defaults.train.label_smoothing = 0.0
        return defaults

    monkeypatch.setattr(schema, "defaults", extended)
    config.train.label_smoothing = 0.0
    assert config_hash.config_hash(config) == before
    config.train.label_smoothing = 0.1
    assert config_hash.config_hash(config) != before


def test_options_that_change_no_result_are_not_hashed():
    config = default_config()
    before = config_hash.config_hash(config)
    config.run.levels = 30
    config.run.replicates = 5
    config.run.branches = "reinit,random_global,finetune"
    config.run.steps_per_execution = 1
    config.run.checkpoint_every = "7it"
    config.dataset.data_dir = "/somewhere/else"
    config.experiment = "oneshot"  # names the directory instead
    assert config_hash.config_hash(config) == before


def test_results_changing_options_change_the_hash():
    base = config_hash.config_hash(default_config())
    for key, value in [
        ("seed", 1),
        ("train.lr", 0.002),
        ("pruning.rewind_to", "1ep"),
        ("model.hidden", (64, 64)),
    ]:
        config = default_config()
        group, _, name = key.rpartition(".")
        (config[group] if group else config)[name] = value
        assert config_hash.config_hash(config) != base, key


def test_model_builder_defaults_and_spellings_are_canonical():
    config = default_config()
    before = config_hash.config_hash(config)
    config.model.hidden = (256, 256)  # the builder's own default
    config.model.kernel_initializer = "glorot_uniform"
    assert config_hash.config_hash(config) == before
    config.model.name = "MNIST1D-MLP"
    assert config_hash.config_hash(config) == before
    config.train.lr = 1e-3 * 1.0
    assert config_hash.config_hash(config) == before


OPEN_LTH_OPTIONS = {
    "dataset.subsample_fraction": (1.0, 0.5),
    "dataset.random_labels_fraction": (0.0, 0.1),
    "dataset.transformation_seed": (0, 3),
    "train.data_order_seed": (-1, 0),
    "train.eval_on_train": (False, True),
    "model.model_init": ("", "orthogonal"),
    "model.batchnorm_init": ("", "uniform"),
    "model.output_frozen": (False, True),
    "model.batchnorm_frozen": (False, True),
}


def test_open_lth_options_at_their_defaults_keep_the_default_run_hash():
    config = default_config()
    for key, (default, _) in OPEN_LTH_OPTIONS.items():
        group, name = key.split(".")
        assert schema.defaults()[group][name] == default
        config[group][name] = default
    assert config_hash.config_hash(config) == "57c99b1ad12605c4"


@pytest.mark.parametrize("key", sorted(OPEN_LTH_OPTIONS))
def test_each_open_lth_option_changes_the_hash(key):
    config = default_config()
    group, name = key.split(".")
    config[group][name] = OPEN_LTH_OPTIONS[key][1]
    schema.validate(config)
    assert config_hash.hparams(config)[key] == OPEN_LTH_OPTIONS[key][1]
    assert config_hash.config_hash(config) != "57c99b1ad12605c4"


def test_schema_choices_match_the_model_modules():
    from tf_lottery.models import initializers

    assert schema.MODEL_INITS == ("", *initializers.MODEL_INITS)
    assert schema.BATCHNORM_INITS == ("", *initializers.BATCHNORM_INITS)


@pytest.mark.parametrize(
    "key, value, message",
    [
        (
            "experiment",
            "lotery",
            r"Invalid value for `config.experiment`: expected one of \('early_bird', 'gradual', 'instability', 'kd_rewind', "
            r"'kd_ticket', 'lottery', 'oneshot', 'rigl', 'set', 'static', 'transfer'\). "
            r"Received: experiment='lotery'",
        ),
        ("train.optimizer", "rmsprop", r"`config.train.optimizer`.*Received: train.optimizer='rmsprop'"),
        ("pruning.rate", 1.5, r"`config.pruning.rate`: expected a number in \[0.0, 1.0\)"),
        (
            "pruning.rewind_to",
            "5x",
            r"`config.pruning.rewind_to`: expected '<N>it'.*Received: "
            r"pruning.rewind_to='5x'",
        ),
        ("pruning.layer_rates", "output:0.1", r"`pruning.layer_rates`: expected 'layer=rate' pairs"),
        ("run.branches", "reinit,shuffle", r"`config.run.branches`: unknown control 'shuffle'"),
        ("train.epochs", 3, r"Unknown config key `config.train.epochs`. Known keys of `config.train`"),
        (
            "dataset.subsample_fraction",
            0.0,
            r"`config.dataset.subsample_fraction`: expected a number in \(0, 1\]. Received: dataset.subsample_fraction=0.0",
        ),
        (
            "dataset.random_labels_fraction",
            1.5,
            r"`config.dataset.random_labels_fraction`: expected a number in \[0, 1\]. Received: "
            r"dataset.random_labels_fraction=1.5",
        ),
        (
            "dataset.transformation_seed",
            -1,
            r"`config.dataset.transformation_seed`: expected an int >= 0. Received: dataset.transformation_seed=-1",
        ),
        (
            "train.data_order_seed",
            -2,
            r"`config.train.data_order_seed`: expected an int >= -1. Received: train.data_order_seed=-2",
        ),
        (
            "model.model_init",
            "xavier",
            r"`config.model.model_init`: expected one of \('', 'kaiming_normal', 'kaiming_uniform', "
            r"'glorot_normal', 'glorot_uniform', 'orthogonal'\). Received: model.model_init='xavier'",
        ),
        (
            "model.batchnorm_init",
            "zeros",
            r"`config.model.batchnorm_init`: expected one of \('', 'uniform', 'fixed', 'oneone', "
            r"'positivenegative'\). Received: model.batchnorm_init='zeros'",
        ),
        (
            "run.branches",
            "random_even_from_start",
            r"`config.run.branches`: unknown control 'random_even_from_start'; expected .*'random_even_from_init'",
        ),
    ],
)
def test_bad_values_are_named_in_the_error(key, value, message):
    config = default_config()
    group, _, name = key.rpartition(".")
    (config[group] if group else config)[name] = value
    with pytest.raises(ValueError, match=message):
        schema.validate(config)


def test_every_runner_config_validates_and_documents_its_command():
    import importlib.util
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[2] / "configs"
    args = {"conv_cifar10.py": [None, "conv4", "conv6,smoke"], "resnet50_imagenet.py": [None, "3", "smoke"]}
    names = ["default.py", "mnist1d_mlp.py", "lenet_mnist.py", "conv_cifar10.py", "vgg19_cifar10.py"]
    names += ["resnet18_cifar10.py", "resnet20_cifar10.py", "resnet50_imagenet.py"]
    for path in [root / name for name in names]:
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert module.__doc__ and "python -m tf_lottery.main" in module.__doc__, path.name
        for arg in args.get(path.name, [None, "smoke"]):
            config = module.get_config(arg)
            schema.validate(config)
            config_hash.config_hash(config)


@pytest.mark.parametrize(
    "group, key, value",
    [("model", "output_frozen", "yes"), ("model", "batchnorm_frozen", 1), ("train", "eval_on_train", "no")],
)
def test_switches_must_be_booleans(group, key, value):
    import ml_collections

    config = default_config()
    # A group written as a whole (e.g. from a dict) escapes ConfigDict's per-field type check.
    config[group] = ml_collections.ConfigDict({**config[group].to_dict(), key: value})
    with pytest.raises(
        ValueError, match=rf"`config.{group}.{key}`: expected True or False. Received: {group}.{key}="
    ):
        schema.validate(config)


def _shipped_configs():
    import importlib.util
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[2] / "configs"
    for path in sorted(root.glob("*.py")):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for arg in (None, "smoke"):
            yield f"{path.name}:{arg}", module.get_config(arg)


def _with_dummy(config):
    """`config` with a `dummy_option = 0` in every group (the model's arguments aside)."""
    import ml_collections

    config = copy.deepcopy(config)
    with config.unlocked():
        for group in list(config.keys()):
            if isinstance(config[group], ml_collections.ConfigDict) and group != "model":
                config[group].dummy_option = 0
    return config


def test_an_option_added_with_its_default_to_any_group_keeps_every_shipped_configs_hash(monkeypatch):
    # open_lth's rule for every group, the kinds' own (sparse, gradual, early_bird, kd, ...)
    # included: they used to be hashed in full, so one new option renamed every run of the kind.
    import dataclasses

    from tf_lottery.experiments import registry

    configs = dict(_shipped_configs())
    kinds = {c.experiment for c in configs.values()}
    assert {"lottery", "gradual", "early_bird", "rigl", "instability", "transfer"} <= kinds
    before = {name: config_hash.config_hash(c) for name, c in configs.items()}
    assert before["default.py:None"] == "57c99b1ad12605c4"
    original = schema.defaults
    monkeypatch.setattr(schema, "defaults", lambda: _with_dummy(original()))
    for name in registry.names():
        kind = registry.get(name)
        extended = functools.partial(lambda k: _with_dummy(k.defaults()), kind)
        monkeypatch.setitem(registry._KINDS, name, dataclasses.replace(kind, defaults=extended))
    for name, config in configs.items():
        upgraded = _with_dummy(config)
        assert config_hash.config_hash(upgraded) == before[name], name
        # A value other than the default names a new run.
        group = next(
            g
            for g in ("sparse", "gradual", "early_bird", "kd", "instability", "transfer", "train")
            if g in upgraded
        )
        upgraded[group].dummy_option = 1
        assert config_hash.config_hash(upgraded) != before[name], name


def test_an_unknown_key_in_a_kinds_group_is_refused_with_a_did_you_mean():
    # The gradual kind's own checks never looked at unknown keys: a typo was ignored (and hashed).
    from tf_lottery.experiments import registry
    from tf_lottery.experiments.kinds import gradual

    config = gradual.defaults()
    with config.unlocked():
        config.gradual.frequncy = 10
    with pytest.raises(
        ValueError,
        match=r"Unknown config key `config.gradual.frequncy`\. Did you mean `config.gradual.frequency`\?",
    ):
        registry.validate(config)
