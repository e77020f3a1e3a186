"""The `rigl`, `set` and `static` kinds: exact sparsity throughout, rewiring on schedule, resumable."""

import importlib.util
import math
import os
import pathlib
import shutil
import types

import numpy as np
import pytest

import tf_lottery as tfl
from tf_lottery.experiments import config_hash, registry, run_store
from tf_lottery.experiments.kinds import sparse_training
from tf_lottery.pruning.distributions import layer_sparsities
from tf_lottery.utils import atomic_io, failpoints

ROOT = pathlib.Path(__file__).resolve().parents[3]
# 700 training examples, batch 50: 14 steps an epoch, 56 in all; updates every 5 steps
# before round(0.75 * 56) = 42: at 5, 10, ..., 40.
UPDATES = [5, 10, 15, 20, 25, 30, 35, 40]


def tiny_config(kind="rigl", **group):
    config = sparse_training.defaults(kind)
    config.dataset.num_samples = 1000
    config.dataset.validation = 100
    config.model.hidden = (32, 32)
    config.train.lr = 3e-3
    config.train.batch_size = 50
    config.train.training_steps = "4ep"
    config.sparse.sparsity = 0.8
    if kind != "static":
        config.sparse.update_every = "5it"
    config.run.deterministic = False  # process-wide; the CLI covers it
    config.run.plots = False
    config.run.verbose = 0
    for key, value in group.items():
        config.sparse[key] = value
    return config


def _level(summary, replicate=0):
    return os.path.join(summary["root"], f"replicate_{replicate}", "round_0")


def _tickets(summary):
    directory = _level(summary)
    return tfl.Ticket.load(os.path.join(directory, "start.npz")), tfl.Ticket.load(
        os.path.join(directory, "end.npz")
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One uninterrupted run of each kind (same seed, same workdir)."""
    workdir = str(tmp_path_factory.mktemp("sparse_runs"))
    return {
        kind: sparse_training.run_experiment(tiny_config(kind), workdir) for kind in ("rigl", "set", "static")
    }


@pytest.mark.parametrize("kind", ["rigl", "set", "static"])
def test_each_kind_runs_end_to_end_at_an_exact_constant_sparsity(runs, kind):
    summary = runs[kind]
    directory = _level(summary)
    for name in ("start.npz", "end.npz", "metrics.json", "checkpoint.npz"):
        assert os.path.exists(os.path.join(directory, name)), name
    assert os.path.exists(os.path.join(summary["root"], "results", "rounds.csv"))
    assert summary["rows"][0]["branch"] == kind and kind in summary["table"]
    metrics = run_store.read_metrics(directory)
    start, end = _tickets(summary)
    # The ERK layer sparsities at 80%, rounded to whole weights per layer: the
    # same count at the start and the end, tensor by tensor.
    rates = list(layer_sparsities_of(summary).values())
    for mask_start, mask_end, rate in zip(start.masks, end.masks, rates):
        expected = mask_start.size - round(rate * mask_start.size)
        assert abs(int(mask_start.sum()) - expected) <= 1
        assert int(mask_end.sum()) == int(mask_start.sum())
    assert metrics["sparsity"] == end.sparsity == start.sparsity
    assert abs(metrics["sparsity"] - 0.8) < 1e-3
    kernels = [w for w, name in zip(end.weights, end.weight_names) if name.endswith("kernel")]
    for kernel, mask in zip(kernels, end.masks):
        assert np.all(kernel[~mask] == 0.0)


def layer_sparsities_of(summary):
    """ERK layer sparsities at 80% for the tiny MLP, computed from its shapes."""
    import keras

    model = tfl.prunable(
        keras.Sequential(
            [
                keras.Input((40,)),
                keras.layers.Dense(32, name="fc1"),
                keras.layers.Dense(32, name="fc2"),
                keras.layers.Dense(10, name="output"),
            ]
        )
    )
    return layer_sparsities(model, 0.8, "erk")


def test_the_three_kinds_start_from_the_same_masks_and_weights(runs):
    starts = [_tickets(runs[kind])[0] for kind in ("rigl", "set", "static")]
    for other in starts[1:]:
        for a, b in zip(starts[0].masks, other.masks):
            np.testing.assert_array_equal(a, b)
        for a, b in zip(starts[0].weights, other.weights):
            np.testing.assert_array_equal(a, b)


def test_static_keeps_its_mask(runs):
    start, end = _tickets(runs["static"])
    for a, b in zip(start.masks, end.masks):
        np.testing.assert_array_equal(a, b)
    metrics = run_store.read_metrics(_level(runs["static"]))
    assert (metrics["sparse_updates"], metrics["replaced"], metrics["grown"]) == (0, 0, 0)
    assert metrics["mask_change"] == 0.0


@pytest.mark.parametrize("kind", ["rigl", "set"])
def test_rigl_and_set_rewire_on_the_cosine_schedule(runs, kind):
    summary = runs[kind]
    metrics = run_store.read_metrics(_level(summary))
    start, end = _tickets(summary)
    assert [u["step"] for u in metrics["updates"]] == UPDATES
    active = [int(m.sum()) for m in start.masks]
    for update in metrics["updates"]:
        # Evci et al. (2020), eq. 1: f(t) = alpha / 2 (1 + cos(pi t / T_end)); each
        # tensor replaces floor(f(t) * active) weights.
        fraction = 0.3 / 2 * (1 + math.cos(math.pi * update["step"] / 42))
        assert update["drop_fraction"] == pytest.approx(fraction)
        assert update["replaced"] == sum(math.floor(fraction * n + 1e-9) for n in active)
        assert 0 <= update["grown"] <= update["replaced"]  # a dropped weight may be grown back at once
    assert metrics["sparse_updates"] == len(UPDATES)
    assert metrics["replaced"] == sum(u["replaced"] for u in metrics["updates"])
    assert 0 < metrics["grown"] == sum(u["grown"] for u in metrics["updates"])
    changed = sum(int(np.count_nonzero(a & ~b)) for a, b in zip(start.masks, end.masks))
    assert changed > 0
    assert metrics["mask_change"] == pytest.approx(changed / sum(active))


def test_rigl_and_set_grow_different_weights(runs):
    rigl, set_ = _tickets(runs["rigl"])[1], _tickets(runs["set"])[1]
    assert any(not np.array_equal(a, b) for a, b in zip(rigl.masks, set_.masks))


class _Killed(Exception):
    pass


def _arm(monkeypatch, point):
    """Makes the failpoint `point` ('<name>:<n>') raise `_Killed` in this process instead of SIGKILL."""

    def kill(pid, signal):
        raise _Killed(point)

    name, _, count = point.partition(":")
    monkeypatch.setattr(failpoints, "_NAME", name)
    monkeypatch.setattr(failpoints, "_AT", int(count))
    monkeypatch.setattr(failpoints, "_SEEN", {"count": 0})
    monkeypatch.setattr(failpoints, "os", types.SimpleNamespace(kill=kill, getpid=os.getpid))


@pytest.mark.parametrize(
    "kind, point",
    [
        ("rigl", "train_batch:23"),  # mid-epoch 2, after the updates at 5 .. 20 and the checkpoint at 14
        ("rigl", "train_batch:37"),  # after the update at 35, restarting from the checkpoint at 28
        ("rigl", "atomic_write/masks.npz:4"),  # the update at step 20 being stored, not yet checkpointed
        ("set", "atomic_write/checkpoint.npz:2"),  # the checkpoint at step 28 being written
        ("static", "train_batch:30"),
    ],
)
def test_a_killed_run_resumes_to_the_uninterrupted_masks_and_metrics(
    runs, tmp_path, monkeypatch, kind, point
):
    with monkeypatch.context() as patch:
        _arm(patch, point)
        with pytest.raises(_Killed):
            sparse_training.run_experiment(tiny_config(kind), str(tmp_path))
    resumed = sparse_training.run_experiment(tiny_config(kind), str(tmp_path))
    _assert_as_uninterrupted(resumed, runs[kind], kind)


def _assert_as_uninterrupted(resumed, uninterrupted, kind):
    reference = run_store.read_metrics(_level(uninterrupted))
    metrics = run_store.read_metrics(_level(resumed))
    for key in ("sparsity", "updates", "replaced", "grown", "mask_change", "final", "early_stop"):
        assert metrics[key] == reference[key], key
    assert [e["test_accuracy"] for e in metrics["evals"]] == [e["test_accuracy"] for e in reference["evals"]]
    start, end = _tickets(resumed)
    ref_start, ref_end = _tickets(uninterrupted)
    for a, b in zip(end.masks + start.masks, ref_end.masks + ref_start.masks):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(end.weights, ref_end.weights):
        np.testing.assert_array_equal(a, b)
    if kind != "static":  # the stored mask log too, arrays and history
        stored, expected = (
            atomic_io.load_npz(os.path.join(_level(s), "masks.npz")) for s in (resumed, uninterrupted)
        )
        assert sorted(stored) == sorted(expected)
        assert atomic_io.array_json(stored.pop("info")) == atomic_io.array_json(expected.pop("info"))
        for name, value in expected.items():
            np.testing.assert_array_equal(stored[name], value, err_msg=name)


@pytest.mark.parametrize(
    "name, damage",
    [
        ("masks.npz", "truncated"),
        # ~10 s each; load_npz's own test covers every way of damaging an archive.
        pytest.param("masks.npz", "garbled", marks=pytest.mark.slow),
        pytest.param("masks.npz", "wrong_type", marks=pytest.mark.slow),
        pytest.param("checkpoint.npz", "truncated", marks=pytest.mark.slow),
    ],
)
def test_damaged_progress_files_are_dropped_and_the_run_retrained_to_the_same_masks(
    runs, tmp_path, name, damage
):
    """The mask log and the checkpoint are one state: either damaged, both go, with a warning naming it."""
    source = runs["rigl"]["root"]
    root = tmp_path / os.path.relpath(source, os.path.dirname(os.path.dirname(source)))
    shutil.copytree(source, root)
    level = os.path.join(root, "replicate_0", "round_0")
    for finished in ("metrics.json", "end.npz"):  # as if killed after the last checkpoint
        os.remove(os.path.join(level, finished))
    path = os.path.join(level, name)
    data = open(path, "rb").read()
    if damage == "truncated":
        open(path, "wb").write(data[: len(data) // 2])
    elif damage == "garbled":
        open(path, "wb").write(data[: len(data) // 2] + b"\xff" * 16 + data[len(data) // 2 + 16 :])
    else:  # the JSON entry a list where an object belongs
        arrays = atomic_io.load_npz(path)
        arrays["info"] = atomic_io.json_array([atomic_io.array_json(arrays["info"])])
        atomic_io.write_npz(path, arrays)
    with pytest.warns(UserWarning) as caught:
        resumed = sparse_training.run_experiment(tiny_config("rigl"), str(tmp_path))
    [message] = [str(w.message) for w in caught if "Dropped the level's progress" in str(w.message)]
    assert message.startswith(f"Cannot read '{path}': ")
    assert "(checkpoint.npz, masks.npz)" in message and f"'{level}' trains again from its start" in message
    _assert_as_uninterrupted(resumed, runs["rigl"], "rigl")


def test_rigl_drawn_batch_gradient_resumes_exactly(tmp_path, monkeypatch):
    config = tiny_config("rigl", gradient="drawn_batch")
    reference = sparse_training.run_experiment(config, str(tmp_path / "reference"))
    with monkeypatch.context() as patch:
        _arm(patch, "train_batch:23")
        with pytest.raises(_Killed):
            sparse_training.run_experiment(config, str(tmp_path / "killed"))
    resumed = sparse_training.run_experiment(config, str(tmp_path / "killed"))
    expected, metrics = (run_store.read_metrics(_level(s)) for s in (reference, resumed))
    assert [u["step"] for u in metrics["updates"]] == UPDATES
    for key in ("updates", "replaced", "grown", "mask_change", "final"):
        assert metrics[key] == expected[key], key
    for a, b in zip(_tickets(resumed)[1].masks, _tickets(reference)[1].masks):
        np.testing.assert_array_equal(a, b)


def test_dense_and_custom_layers_keep_their_sparsity_through_rewiring(tmp_path):
    config = tiny_config(
        "rigl",
        dense_layers="fc1",
        custom_sparsity="output=0.5",
        fixed_layers="outside_budget",
        grow_init="random_normal",
    )
    summary = sparse_training.run_experiment(config, str(tmp_path))
    start, end = _tickets(summary)
    first, second, output = end.masks
    assert first.all()  # dense, never rewired
    assert int(output.sum()) == int(start.masks[2].sum()) == 160  # 50% of 32 x 10
    # 'outside_budget': the 80% applies to the solved layer alone (fc2, 32 x 32).
    assert int(second.sum()) == int(start.masks[1].sum()) == 1024 - round(0.8 * 1024)
    assert not np.array_equal(second, start.masks[1])
    metrics = run_store.read_metrics(_level(summary))
    assert metrics["mask_change"] > 0


def test_a_finished_run_is_read_back_not_retrained(runs):
    summary = runs["set"]
    path = os.path.join(_level(summary), "metrics.json")
    before = os.stat(path).st_mtime_ns
    again = sparse_training.run_experiment(
        tiny_config("set"), os.path.dirname(os.path.dirname(summary["root"]))
    )
    assert again["rows"] == summary["rows"]
    assert os.stat(path).st_mtime_ns == before


def test_update_steps_follow_begin_end_and_the_interval():
    config = tiny_config(begin=0.25, end=0.5)
    assert sparse_training.update_steps(config, 100, 14) == [25, 30, 35, 40, 45]
    config.sparse.update_every = "1ep"  # 14 steps: begin + n * 14, as the callback counts
    assert sparse_training.update_steps(config, 100, 14) == [25, 39]
    config.sparse.begin = 0.0
    assert sparse_training.update_steps(config, 100, 14) == [14, 28, 42]
    assert sparse_training.update_steps(tiny_config("static"), 100, 14) == []


def test_registered_with_their_defaults():
    for kind in ("rigl", "set", "static"):
        entry = registry.get(kind)
        defaults = entry.defaults()
        assert defaults.experiment == kind
        assert (defaults.sparse.sparsity, defaults.sparse.distribution) == (0.9, "erk")
        entry.validate(tiny_config(kind))
    rigl = registry.get("rigl").defaults().sparse
    assert (rigl.drop_fraction, rigl.update_every, rigl.begin, rigl.end) == (0.3, "100it", 0.0, 0.75)
    assert (rigl.drop_fraction_anneal, rigl.grow_init, rigl.gradient) == ("cosine", "zeros", "train_batch")
    assert (rigl.dense_layers, rigl.custom_sparsity, rigl.fixed_layers, rigl.erk_power_scale) == (
        "",
        "",
        "in_budget",
        1.0,
    )
    assert "drop_fraction" not in registry.get("static").defaults().sparse


def test_the_default_run_keeps_its_hash():
    from tf_lottery.experiments.default_config import get_config

    assert config_hash.config_hash(get_config()) == "57c99b1ad12605c4"


def _with(kind, **changes):
    config = tiny_config(kind)
    for key, value in changes.items():
        group, _, name = key.rpartition(".")
        node = config
        for part in group.split(".") if group else []:
            node = node[part]
        node[name] = value
    return config


BAD = {
    "sparsity_one": (
        _with("rigl", **{"sparse.sparsity": 1.0}),
        r"`config\.sparse\.sparsity`: expected a fraction in \[0, 1\)\. Received: sparse\.sparsity=1\.0",
    ),
    "sparsity_negative": (
        _with("static", **{"sparse.sparsity": -0.1}),
        r"`config\.sparse\.sparsity`: expected a fraction in \[0, 1\)\. Received: sparse\.sparsity=-0\.1",
    ),
    "sparsity_in_percent": (
        _with("set", **{"sparse.sparsity": 95}),
        r"`config\.sparse\.sparsity`: expected a fraction in \[0, 1\)\. Received: sparse\.sparsity=95",
    ),
    "unknown_distribution": (
        _with("rigl", **{"sparse.distribution": "erdos"}),
        r"`config\.sparse\.distribution`: expected one of \('uniform', 'erdos_renyi', "
        r"'erdos_renyi_kernel', 'er', 'erk'\)\. Received: sparse\.distribution='erdos'",
    ),
    "drop_fraction_zero": (
        _with("rigl", **{"sparse.drop_fraction": 0.0}),
        r"`config\.sparse\.drop_fraction`: expected a fraction in \(0, 1\]\. Received: sparse\.drop_fraction=0\.0",
    ),
    "drop_fraction_above_one": (
        _with("set", **{"sparse.drop_fraction": 1.5}),
        r"`config\.sparse\.drop_fraction`: expected a fraction in \(0, 1\]\. Received: sparse\.drop_fraction=1\.5",
    ),
    "update_every_malformed": (
        _with("rigl", **{"sparse.update_every": "100"}),
        r"`config\.sparse\.update_every`: expected '<N>it' or '<N>ep' with N >= 1.*Received: "
        r"sparse\.update_every='100'",
    ),
    "update_every_zero": (
        _with("set", **{"sparse.update_every": "0it"}),
        r"`config\.sparse\.update_every`: expected '<N>it' or '<N>ep' with N >= 1",
    ),
    "begin_negative": (
        _with("rigl", **{"sparse.begin": -0.1}),
        r"`config\.sparse\.begin`: expected a fraction of training in \[0, 1\]\. Received: sparse\.begin=-0\.1",
    ),
    "end_above_one": (
        _with("rigl", **{"sparse.end": 1.5}),
        r"`config\.sparse\.end`: expected a fraction of training in \[0, 1\]\. Received: sparse\.end=1\.5",
    ),
    "end_before_begin": (
        _with("rigl", **{"sparse.begin": 0.5, "sparse.end": 0.5}),
        r"`config\.sparse\.end`: expected a fraction greater than sparse\.begin=0\.5\. Received: sparse\.end=0\.5",
    ),
    "unknown_fixed_layers": (
        _with("static", **{"sparse.fixed_layers": "outside"}),
        r"`config\.sparse\.fixed_layers`: expected one of \('in_budget', 'outside_budget'\)\. "
        r"Received: sparse\.fixed_layers='outside'",
    ),
    "custom_sparsity_out_of_range": (
        _with("rigl", **{"sparse.custom_sparsity": "output=1.0"}),
        r"`sparse\.custom_sparsity`: expected 'layer=rate' pairs .*Received: 'output=1\.0'",
    ),
    "erk_power_scale_zero": (
        _with("rigl", **{"sparse.erk_power_scale": 0.0}),
        r"`config\.sparse\.erk_power_scale`: expected a number > 0\. Received: sparse\.erk_power_scale=0\.0",
    ),
    "erk_power_scale_on_uniform": (
        _with("set", **{"sparse.distribution": "uniform", "sparse.erk_power_scale": 0.5}),
        r"`config\.sparse\.erk_power_scale`: expected 1\.0 with sparse\.distribution='uniform'",
    ),
    "unknown_anneal": (
        _with("rigl", **{"sparse.drop_fraction_anneal": "cosin"}),
        r"`config\.sparse\.drop_fraction_anneal`: expected one of 'cosine', 'constant', 'linear' or "
        r"'exponential_<k>'.*Received: sparse\.drop_fraction_anneal='cosin'",
    ),
    "unknown_grow_init": (
        _with("set", **{"sparse.grow_init": "ones"}),
        r"`config\.sparse\.grow_init`: expected one of \('zeros', 'random_normal', 'initial_value'\)\. "
        r"Received: sparse\.grow_init='ones'",
    ),
    "unknown_gradient": (
        _with("rigl", **{"sparse.gradient": "batch"}),
        r"`config\.sparse\.gradient`: expected one of \('train_batch', 'drawn_batch'\)\. "
        r"Received: sparse\.gradient='batch'",
    ),
    "update_every_not_a_multiple_of_steps_per_execution": (
        _with("rigl", **{"sparse.update_every": "30it", "run.steps_per_execution": 20}),
        r"`config\.sparse\.update_every`: expected a multiple of run\.steps_per_execution=20 .*"
        r"Received: sparse\.update_every='30it'",
    ),
    "static_has_no_updates": (
        _with("static", **{"sparse.drop_fraction": 0.3}),
        r"Unknown config key `config\.sparse\.drop_fraction` for experiment 'static' \(only the rigl and "
        r"set kinds update masks\)",
    ),
    "unknown_sparse_key": (
        _with("rigl", **{"sparse.grow": "zeros"}),
        r"Unknown config key `config\.sparse\.grow` for experiment 'rigl'\. "
        r"Did you mean `config\.sparse\.grow_init`\? Known keys",
    ),
    "magnitude_pruning_option": (
        _with("rigl", **{"pruning.rate": 0.5}),
        r"`config\.pruning\.rate`: expected its default 0\.2: rigl does not prune by magnitude.*"
        r"Received: pruning\.rate=0\.5",
    ),
    "levels": (
        _with("set", **{"run.levels": 2}),
        r"`config\.run\.levels`: expected 0 \(set trains once per replicate\)\. Received: run\.levels=2",
    ),
    "controls": (
        _with("static", **{"run.branches": "reinit"}),
        r"`config\.run\.branches`: expected '' \(no controls for static\)",
    ),
    # Known only with the model: checked on a throwaway model before the run directory exists.
    "unknown_dense_layer": (
        _with("static", **{"sparse.dense_layers": "fc9"}),
        r"`config\.sparse\.dense_layers`='fc9'.*'fc9' matches no pruned layer\. Pruned layers are: "
        r"\['fc1', 'fc2', 'output'\]",
    ),
    "unknown_custom_layer": (
        _with("rigl", **{"sparse.custom_sparsity": "nolayer=0.5"}),
        r"`config\.sparse\.custom_sparsity`='nolayer=0\.5'.*'nolayer' matches no pruned layer",
    ),
    "dense_layers_beyond_budget": (
        _with("set", **{"sparse.dense_layers": "fc1,fc2", "sparse.sparsity": 0.99}),
        r"`config\.sparse\.sparsity`=0\.99: .*keep 2304 weights, more than the 26 that sparsity=0\.99 "
        r"leaves alive",
    ),
    "shared_option": (
        _with("rigl", **{"train.optimizer": "adamax9"}),
        r"`config\.train\.optimizer`: expected one of .*Received: train\.optimizer='adamax9'",
    ),
    # Known once the data is loaded: checked before the run directory is made (was: left hparams.json).
    "batch_larger_than_the_data": (
        _with("static", **{"train.batch_size": 5000}),
        r"`config\.train\.batch_size`: 5000 is larger than the training set of 'mnist1d' \(700 examples\)",
    ),
    "validation_not_below_the_training_set": (
        _with("set", **{"dataset.validation": 800}),
        r"`validation`: 800 must be smaller than the training set \(800 samples\)",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_refused_before_anything_is_written(case, tmp_path):
    config, message = BAD[case]
    with pytest.raises(ValueError, match=message):
        registry.run(config, str(tmp_path), log=lambda line: None)
    assert os.listdir(tmp_path) == []


def test_a_config_without_its_group_says_where_to_start():
    config = tiny_config()
    del config["sparse"]
    with pytest.raises(ValueError, match=r"Missing config group `config\.sparse`: start the config from"):
        sparse_training.validate(config)
    with pytest.raises(
        ValueError, match=r"`config\.experiment`: expected one of \('rigl', 'set', 'static'\)"
    ):
        sparse_training.defaults("rigls")


def _config_module(name):
    path = ROOT / "configs" / name
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["rigl_mnist1d.py", "rigl_resnet20_cifar10.py"])
def test_the_config_files_validate_with_every_argument(name):
    module = _config_module(name)
    assert "python -m tf_lottery.main" in module.__doc__
    for arg in module.ARGS + ("set,uniform", "static,smoke"):
        config = module.get_config(arg)
        registry.validate(config)
        config_hash.config_hash(config)
    with pytest.raises(ValueError, match=r"Invalid config argument: .*unknown token 'huge'"):
        module.get_config("huge")
    with pytest.raises(ValueError, match=r"at most one method"):
        module.get_config("rigl,set")


def test_the_mnist1d_imp_reference_lands_on_the_table_sparsities():
    module = _config_module("rigl_mnist1d.py")
    config = module.get_config("imp")
    assert (config.experiment, config.run.levels, config.pruning.scope) == ("lottery", 13, "global")
    for level, target in ((7, 0.8), (10, 0.9), (13, 0.95)):
        assert abs(1 - (1 - config.pruning.rate) ** level - target) < 0.003
    assert module.get_config("static").sparse.distribution == "erk"
    assert module.get_config("set,uniform").sparse.distribution == "uniform"
