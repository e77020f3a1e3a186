"""tf_lottery: find, train and ship sparse lottery tickets with Keras 3.

Public API (everything else is internal and may change):

- `prunable`, `PruneWrapper`, `strip`, `prune_wrappers`, `get_masks`, `set_masks`: masks in
  wrapper layers (a model's masks as one flat list, in `prune_wrappers` order).
- `prune`, `rate_per_round`, `scoring`: global / layer-wise pruning by score.
- `LotteryCallback`, `RewindPoint`, `Snapshot`, `reinitialize`: IMP with rewinding.
- `EarlyBird`: Early-Bird tickets, the mask drawn early in dense training.
- `Ticket`, `sparsity_report`, `SparsityReport`: results.
- `export_saved_model`, `export_tflite`, `tflite_runner`, `tflite_sparsity_report`, `artifact_size`: shipping.
- `shrink`: a plain model with the pruned units, filters and heads physically removed.
- `LotterySummaries`, `PruningSummaries`: TensorBoard summaries of IMP and gradual pruning.
- `DynamicSparseTraining`, `sparsity_distributions`: RigL / SET and ER / ERK.
- `GradualPruning`, `ConstantSparsity`, `PolynomialDecay`: gradual magnitude
  pruning with tfmot's schedules; `prune(..., structure="2:4")`: N:M sparsity.
- `oneshot`: one-shot pruning of trained models (`magnitude`, `wanda`, `sparsegpt`).
- `SNIPScorer`, `GraSPScorer`, `SynFlowScorer`, `synflow_prune`: pruning at init.
- `stability`: linear mode connectivity (error barriers along a path).
- `KDDistiller`, `SoftLabelKL`, `with_teacher_logits`: knowledge-distillation tickets.

Every name is listed once, in `_EXPORTS` (where it is defined) and
`__all__`. `import tf_lottery` imports them all, so the package's Keras
classes are registered for `keras.saving.load_model` as soon as it is
imported. The command line (`tf_lottery`, `python -m tf_lottery[.main]`) is
the exception: there each name is imported on first use (PEP 562
`__getattr__`), so `tf_lottery --version` answers without loading
TensorFlow, and a run imports only what it uses.
"""

import importlib as _importlib

from tf_lottery.utils.command_line import started_as_command as _started_as_command
from tf_lottery.version import __version__

# Public name -> (defining module, attribute there; None when the name is the module).
_EXPORTS = {
    "prunable": ("tf_lottery.core.prunable", "prunable"),
    "SparsityReport": ("tf_lottery.core.report", "SparsityReport"),
    "sparsity_report": ("tf_lottery.core.report", "sparsity_report"),
    "strip": ("tf_lottery.core.strip", "strip"),
    "prune_wrappers": ("tf_lottery.core.walk", "prune_wrappers"),
    "get_masks": ("tf_lottery.core.walk", "get_masks"),
    "set_masks": ("tf_lottery.core.walk", "set_masks"),
    "PruneWrapper": ("tf_lottery.core.wrapper", "PruneWrapper"),
    "KDDistiller": ("tf_lottery.distillation", "KDDistiller"),
    "SoftLabelKL": ("tf_lottery.distillation", "SoftLabelKL"),
    "with_teacher_logits": ("tf_lottery.distillation", "with_teacher_logits"),
    "artifact_size": ("tf_lottery.export.saved_model", "artifact_size"),
    "export_saved_model": ("tf_lottery.export.saved_model", "export_saved_model"),
    "export_tflite": ("tf_lottery.export.tflite", "export_tflite"),
    "shrink": ("tf_lottery.export.shrink", "shrink"),
    "tflite_runner": ("tf_lottery.export.tflite", "tflite_runner"),
    "tflite_sparsity_report": ("tf_lottery.export.tflite_report", "tflite_sparsity_report"),
    "stability": ("tf_lottery.lottery.stability", None),
    "LotteryCallback": ("tf_lottery.lottery.callback", "LotteryCallback"),
    "EarlyBird": ("tf_lottery.lottery.early_bird", "EarlyBird"),
    "RewindPoint": ("tf_lottery.lottery.rewind", "RewindPoint"),
    "Snapshot": ("tf_lottery.lottery.rewind", "Snapshot"),
    "reinitialize": ("tf_lottery.lottery.rewind", "reinitialize"),
    "LotterySummaries": ("tf_lottery.lottery.summaries", "LotterySummaries"),
    "Ticket": ("tf_lottery.lottery.ticket", "Ticket"),
    "sparsity_distributions": ("tf_lottery.pruning.distributions", None),
    "scoring": ("tf_lottery.pruning.scoring", None),
    "oneshot": ("tf_lottery.pruning.oneshot", None),
    "channel_groups": ("tf_lottery.core.coupling", "channel_groups"),
    "prune": ("tf_lottery.pruning.pruner", "prune"),
    "rate_per_round": ("tf_lottery.pruning.pruner", "rate_per_round"),
    "GradualPruning": ("tf_lottery.pruning.gradual", "GradualPruning"),
    "PruningSummaries": ("tf_lottery.pruning.summaries", "PruningSummaries"),
    "ConstantSparsity": ("tf_lottery.pruning.schedules", "ConstantSparsity"),
    "PolynomialDecay": ("tf_lottery.pruning.schedules", "PolynomialDecay"),
    "GraSPScorer": ("tf_lottery.pruning.scorers.grasp", "GraSPScorer"),
    "SNIPScorer": ("tf_lottery.pruning.scorers.snip", "SNIPScorer"),
    "SynFlowScorer": ("tf_lottery.pruning.scorers.synflow", "SynFlowScorer"),
    "synflow_prune": ("tf_lottery.pruning.scorers.synflow", "synflow_prune"),
    "DynamicSparseTraining": ("tf_lottery.sparse_training.callback", "DynamicSparseTraining"),
}

__all__ = [
    "ConstantSparsity",
    "DynamicSparseTraining",
    "EarlyBird",
    "GraSPScorer",
    "GradualPruning",
    "KDDistiller",
    "LotteryCallback",
    "LotterySummaries",
    "PolynomialDecay",
    "PruneWrapper",
    "PruningSummaries",
    "RewindPoint",
    "SNIPScorer",
    "Snapshot",
    "SoftLabelKL",
    "SparsityReport",
    "SynFlowScorer",
    "Ticket",
    "__version__",
    "artifact_size",
    "channel_groups",
    "export_saved_model",
    "export_tflite",
    "get_masks",
    "oneshot",
    "prunable",
    "prune",
    "prune_wrappers",
    "rate_per_round",
    "reinitialize",
    "scoring",
    "set_masks",
    "shrink",
    "sparsity_distributions",
    "sparsity_report",
    "stability",
    "strip",
    "synflow_prune",
    "tflite_runner",
    "tflite_sparsity_report",
    "with_teacher_logits",
]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tf_lottery' has no attribute {name!r}")
    module, attribute = _EXPORTS[name]
    value = _importlib.import_module(module)
    if attribute is not None:
        value = getattr(value, attribute)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if not _started_as_command():
    for _name in _EXPORTS:
        __getattr__(_name)
    del _name
