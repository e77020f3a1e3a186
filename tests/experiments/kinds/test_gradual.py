"""The `gradual` kind: one training per replicate, pruned on tfmot's schedule to an exact sparsity."""

import os

import numpy as np
import pytest

import tf_lottery as tfl
import tf_lottery.pruning.gradual
from tf_lottery.experiments import registry, run_store
from tf_lottery.experiments.kinds import gradual
from tf_lottery.pruning.pruner import exact_count


def tiny_config(**group):
    config = gradual.defaults()
    config.dataset.num_samples = 1000
    config.dataset.validation = 100
    config.model.hidden = (32, 32)
    config.train.lr = 3e-3
    config.train.batch_size = 50
    config.train.training_steps = "4ep"  # 14 steps an epoch (700 examples), 56 in all
    config.gradual.final_sparsity = 0.8
    config.gradual.frequency = 5
    config.run.deterministic = False  # process-wide; the CLI tests cover it
    config.run.plots = False
    config.run.verbose = 0
    for key, value in group.items():
        config.gradual[key] = value
    return config


def test_a_run_prunes_to_the_final_sparsity_and_reports_after_pruning(tmp_path):
    summary = gradual.run_experiment(tiny_config(), str(tmp_path))
    directory = os.path.join(summary["root"], "replicate_0", "round_0")
    metrics = run_store.read_metrics(directory)
    schedule = tfl.PolynomialDecay(**metrics["schedule"])
    # 0.7 * 56 = 39 steps, rounded down to a multiple of the frequency.
    assert (schedule.begin_step, schedule.end_step, schedule.frequency) == (0, 35, 5)
    assert metrics["sparsity"] == exact_count(0.8, metrics["total"]) / metrics["total"]
    assert metrics["early_stop"]["step"] >= schedule.end_step  # early stopping only after pruning
    ticket = tfl.Ticket.load(os.path.join(directory, "end.npz"))
    assert ticket.sparsity == metrics["sparsity"]
    kernels = [w for w, name in zip(ticket.weights, ticket.weight_names) if name.endswith("kernel")]
    for kernel, mask in zip(kernels, ticket.masks):
        assert np.all(kernel[~mask] == 0.0)
    assert summary["rows"][0]["branch"] == "gradual"
    assert "gradual" in summary["table"]
    again = gradual.run_experiment(tiny_config(), str(tmp_path))  # finished: read back, not retrained
    assert again["rows"] == summary["rows"]


def test_n_m_structure(tmp_path):
    from tf_lottery.pruning.structure import violations

    summary = gradual.run_experiment(tiny_config(final_sparsity=0.5, structure="2:4"), str(tmp_path))
    ticket = tfl.Ticket.load(os.path.join(summary["root"], "replicate_0", "round_0", "end.npz"))
    assert ticket.sparsity == 0.5
    for mask in ticket.masks:
        assert violations(mask, "2:4", axis=0) == 0


def test_channel_structure_prunes_whole_hidden_units(tmp_path):
    summary = gradual.run_experiment(tiny_config(final_sparsity=0.5, structure="channels"), str(tmp_path))
    ticket = tfl.Ticket.load(os.path.join(summary["root"], "replicate_0", "round_0", "end.npz"))
    first, second, output = ticket.masks
    # Half of the 64 hidden units (the output layer's are not prunable), each cut off whole:
    # a unit is alive in its own kernel's column exactly when the next kernel reads its row.
    alive_1, alive_2 = first.any(axis=0), second.any(axis=0)
    assert int((~alive_1).sum() + (~alive_2).sum()) == 32
    np.testing.assert_array_equal(second.any(axis=1), alive_1)
    np.testing.assert_array_equal(output.any(axis=1), alive_2)


def test_registered_with_its_defaults():
    kind = registry.get("gradual")
    assert kind.defaults().gradual.final_sparsity == 0.9
    kind.validate(tiny_config())


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(final_sparsity=1.0), r"`final_sparsity`: expected a float in \[0, 1\)"),
        (dict(initial_sparsity=0.5, final_sparsity=0.3), r"expected a float >= initial_sparsity=0\.5"),
        (
            dict(begin=0.5, end=0.5),
            r"`config\.gradual\.end`: expected a fraction greater than gradual\.begin=0\.5",
        ),
        (dict(end=1.5), r"`config\.gradual\.end`: expected a fraction of training in \[0, 1\]"),
        (dict(frequency=0), r"`frequency`: expected an int >= 1"),
        (dict(structure="4:2"), r"`structure`: expected None, 'N:M'"),
        (
            dict(structure="2:4", final_sparsity=0.6),
            r"`config\.gradual\.final_sparsity`: expected at most 0\.5",
        ),
    ],
)
def test_bad_options_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        gradual.validate(tiny_config(**change))


def test_the_config_file_validates_with_every_argument():
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[3] / "configs" / "gradual_mnist1d.py"
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert "python -m tf_lottery.main" in module.__doc__
    for arg in module.ARGS:
        registry.validate(module.get_config(arg))
    with pytest.raises(ValueError, match="Invalid config argument"):
        module.get_config("huge")


def test_the_kind_passes_its_configured_scope_not_the_callbacks_default(tmp_path, monkeypatch):
    # `GradualPruning` now defaults to scope="layer" (tfmot's); the kind's results and
    # hashes stay as they were because it passes `config.pruning.scope` ("global" by default).
    seen = []

    class Stop(Exception):
        pass

    def record(model, schedule, target, scope, *rest):
        seen.append(scope)
        raise Stop

    # The one pruning step of `GradualPruning` (and `prune_to_schedule`), which the kind runs.
    monkeypatch.setattr(tf_lottery.pruning.gradual, "_prune_to", record)
    assert gradual.defaults().pruning.scope == "global"
    with pytest.raises(Stop):
        gradual.run_experiment(tiny_config(), str(tmp_path))
    assert seen == ["global"]  # not the callback's default, which would be "layer"


def test_a_run_stopped_after_a_checkpoint_resumes_to_the_uninterrupted_masks(tmp_path, monkeypatch):
    """The masks after a resume are found from the checkpoint's weights, not from the initial ones."""
    import types

    from tf_lottery.utils import failpoints

    class Killed(Exception):
        pass

    def kill(pid, signal):
        raise Killed

    reference = gradual.run_experiment(tiny_config(), str(tmp_path / "reference"))
    with monkeypatch.context() as patch:  # mid-epoch 2, after the checkpoint at step 14
        patch.setattr(failpoints, "_NAME", "train_batch")
        patch.setattr(failpoints, "_AT", 20)
        patch.setattr(failpoints, "_SEEN", {"count": 0})
        patch.setattr(failpoints, "os", types.SimpleNamespace(kill=kill, getpid=os.getpid))
        with pytest.raises(Killed):
            gradual.run_experiment(tiny_config(), str(tmp_path / "killed"))
    level = os.path.join("replicate_0", "round_0")
    assert os.path.exists(
        os.path.join(tmp_path / "killed", "gradual", reference["hash"], level, "checkpoint.npz")
    )
    resumed = gradual.run_experiment(tiny_config(), str(tmp_path / "killed"))
    expected, metrics = (run_store.read_metrics(os.path.join(s["root"], level)) for s in (reference, resumed))
    assert metrics["layers"] == expected["layers"] and metrics["evals"] == expected["evals"]
    ends = [tfl.Ticket.load(os.path.join(s["root"], level, "end.npz")) for s in (reference, resumed)]
    for a, b in zip(ends[0].masks + ends[0].weights, ends[1].masks + ends[1].weights):
        np.testing.assert_array_equal(a, b)
