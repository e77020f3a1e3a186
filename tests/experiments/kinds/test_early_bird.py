"""The `early_bird` kind: the search stops when masks settle; the ticket retrains; steps are counted."""

import os

import pytest

import tf_lottery as tfl
from tf_lottery.experiments import registry, run_store
from tf_lottery.experiments.kinds import early_bird
from tf_lottery.pruning.pruner import exact_count


def tiny_config(**group):
    config = early_bird.defaults()
    config.dataset.num_samples = 1000
    config.dataset.validation = 100
    config.model.hidden = (32, 32)
    config.train.lr = 3e-3
    config.train.batch_size = 50
    config.train.training_steps = "6ep"  # 14 steps an epoch (700 examples), 84 in all
    config.early_bird.target_sparsity = 0.8
    config.early_bird.window = 2
    config.run.deterministic = False
    config.run.plots = False
    config.run.verbose = 0
    for key, value in group.items():
        config.early_bird[key] = value
    return config


def _metrics(summary, level):
    return run_store.read_metrics(os.path.join(summary["root"], "replicate_0", f"round_{level}"))


def test_a_loose_epsilon_stops_the_search_early_and_the_ticket_retrains(tmp_path):
    summary = early_bird.run_experiment(tiny_config(epsilon=0.9), str(tmp_path))
    search, ticket_run = _metrics(summary, 0), _metrics(summary, 1)
    # Checks after epochs 1, 2, 3: two distances, both below 0.9, at the third.
    assert search["found"] is True and search["search_steps"] == 42
    assert search["end_step"] == 42 and search["sparsity"] == 0.0
    assert [step for step, _ in search["distances"]] == [28, 42]
    assert ticket_run["sparsity"] == exact_count(0.8, ticket_run["total"]) / ticket_run["total"]
    assert (ticket_run["start_step"], ticket_run["end_step"]) == (0, 84)
    assert ticket_run["total_steps"] == 42 + 84
    ticket = tfl.Ticket.load(os.path.join(summary["root"], "replicate_0", "early_bird.npz"))
    start = tfl.Ticket.load(os.path.join(summary["root"], "replicate_0", "round_0", "end.npz"))
    assert ticket.metadata["early_bird_step"] == 42
    assert len(ticket.weights) == len(start.weights)
    assert [row["level"] for row in summary["rows"]] == [0, 1]
    assert [row["found"] for row in summary["rows"]] == [True, True]
    assert "did not converge" not in summary["table"] and " *" not in summary["table"]


def test_a_strict_epsilon_searches_to_the_end(tmp_path):
    summary = early_bird.run_experiment(tiny_config(epsilon=1e-9), str(tmp_path))
    search = _metrics(summary, 0)
    assert search["found"] is False and search["search_steps"] == 84
    assert _metrics(summary, 1)["total_steps"] == 168
    # The table marks both rounds of the replicate whose search never converged, and says why.
    assert [row["found"] for row in summary["rows"]] == [False, False]
    table = summary["table"].splitlines()
    assert sum(line.rstrip().endswith("*") or " * " in line for line in table) == 2
    assert table[-1].startswith("* the search did not converge in replicate(s) 0 (`found: false`)")


def test_registered_with_its_defaults():
    kind = registry.get("early_bird")
    assert kind.defaults().early_bird.epsilon == 0.1
    kind.validate(tiny_config())


@pytest.mark.parametrize(
    "change, message",
    [
        (
            dict(epsilon=0),
            r"`config\.early_bird\.epsilon`: expected a float > 0 .* Received: early_bird\.epsilon=0",
        ),
        (dict(epsilon=-1.0), r"`config\.early_bird\.epsilon`: expected a float > 0"),
        (dict(target_sparsity=1.0), r"`config\.early_bird\.target_sparsity`: expected a float in \[0, 1\)"),
        (dict(window=0), r"`config\.early_bird\.window`: expected an int >= 1"),
        (dict(granularity="filters"), r"`config\.early_bird\.granularity`: expected one of"),
        (dict(every="often"), r"eval_every"),
    ],
)
def test_bad_options_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        early_bird.validate(tiny_config(**change))


def test_the_config_file_validates_with_every_argument():
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[3] / "configs" / "early_bird_mnist1d.py"
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert "python -m tf_lottery.main" in module.__doc__
    for arg in module.ARGS:
        registry.validate(module.get_config(arg))
