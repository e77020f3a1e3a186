"""`LevelContext`: a replicate as a kind's plug-ins see it, without the config."""

import numpy as np

from tests.testing import tiny_run_config
from tf_lottery.data.registry import load_dataset
from tf_lottery.experiments import run_store
from tf_lottery.experiments.kinds.kd import kd_defaults
from tf_lottery.experiments.level_context import LevelContext
from tf_lottery.experiments.level_loop import Line
from tf_lottery.experiments.runner import replicate_for


def _replicate(tmp_path, **lines):
    config = kd_defaults() if lines else tiny_run_config()
    config.dataset = tiny_run_config().dataset
    config.model.hidden = (32, 32)
    config.train.batch_size = 50
    config.train.training_steps = "3ep"
    config.pruning.rewind_to = "1ep"
    config.seed = 3
    data = load_dataset(config.dataset)
    store = run_store.RunStore(str(tmp_path), config)
    return replicate_for(config, store, 1, data, log=lambda line: None, **lines), store


def test_the_context_is_the_replicates_public_face_with_no_config(tmp_path):
    replicate, store = _replicate(tmp_path)
    context = replicate.context
    assert isinstance(context, LevelContext) and not hasattr(context, "config")
    # The loop itself holds no config either: its training in data steps, resolved once.
    assert not hasattr(replicate, "config")
    assert (replicate.steps.batch_size, replicate.steps.eval_every, replicate.steps.checkpoint_every) == (
        50,
        14,
        14,
    )
    assert context.model is replicate.model and context.initial is replicate.initial
    assert (context.replicate, context.seed, context.store, context.data) == (1, 4, store, replicate.data)
    assert context.services.data_seed == 4 and context.services.strategy is replicate.strategy
    assert (context.steps_per_epoch, context.total_steps, context.rewind_step) == (14, 42, 14)
    assert context.restart_step() == 14 and context.source_level(3) == 2
    assert context.level_dir(2, "reinit") == store.level_dir(1, 2, "reinit")
    np.testing.assert_array_equal(context.initial.model_values[0], replicate.initial.model_values[0])


def test_distillation_is_built_only_for_a_replicate_with_a_distilling_line(tmp_path):
    plain, _ = _replicate(tmp_path / "plain")
    assert plain._distillation is None
    kd, _ = _replicate(tmp_path / "kd", arms=(Line("kd", distil=True),))
    assert kd._distillation is not None
    # Distillation is a plug-in like the others: it sees the replicate through its context.
    assert kd._distillation.context is kd.context and kd._distillation.model is kd.model
