"""tf_lottery: find, train and ship sparse lottery tickets with Keras 3.

Public API (everything else is internal and may change):

- `prunable`, `PruneWrapper`, `strip`, `prune_wrappers`: masks in wrapper layers.
- `prune`, `rate_per_round`, `scoring`: global / layer-wise pruning by score.
- `LotteryCallback`, `RewindPoint`, `Snapshot`, `reinitialize`: IMP with rewinding.
- `Ticket`, `sparsity_report`, `SparsityReport`: results.
- `export_saved_model`, `export_tflite`, `tflite_runner`, `artifact_size`: shipping.
- `LotterySummaries`: pruning summaries for TensorBoard.
- `DynamicSparseTraining`, `sparsity_distributions`: RigL / SET and ER / ERK.
- `GradualPruning`, `ConstantSparsity`, `PolynomialDecay`: gradual magnitude
  pruning with tfmot's schedules; `prune(..., structure="2:4")`: N:M sparsity.
- `SNIPScorer`, `GraSPScorer`, `SynFlowScorer`, `synflow_prune`: pruning at init.
- `stability`: linear mode connectivity (error barriers along a path).
- `KDDistiller`, `SoftLabelKL`, `with_teacher_logits`: knowledge-distillation tickets.
"""

from tf_lottery.core.prunable import prunable
from tf_lottery.core.report import SparsityReport, sparsity_report
from tf_lottery.core.strip import strip
from tf_lottery.core.walk import prune_wrappers
from tf_lottery.core.wrapper import PruneWrapper
from tf_lottery.distillation import KDDistiller, SoftLabelKL, with_teacher_logits
from tf_lottery.export.saved_model import artifact_size, export_saved_model
from tf_lottery.export.tflite import export_tflite, tflite_runner
from tf_lottery.lottery import stability
from tf_lottery.lottery.callback import LotteryCallback
from tf_lottery.lottery.rewind import RewindPoint, Snapshot, reinitialize
from tf_lottery.lottery.summaries import LotterySummaries
from tf_lottery.lottery.ticket import Ticket
from tf_lottery.pruning import distributions as sparsity_distributions
from tf_lottery.pruning import scoring
from tf_lottery.pruning.gradual import GradualPruning
from tf_lottery.pruning.pruner import prune, rate_per_round
from tf_lottery.pruning.schedules import ConstantSparsity, PolynomialDecay
from tf_lottery.pruning.scorers.grasp import GraSPScorer
from tf_lottery.pruning.scorers.snip import SNIPScorer
from tf_lottery.pruning.scorers.synflow import SynFlowScorer, synflow_prune
from tf_lottery.sparse_training.callback import DynamicSparseTraining
from tf_lottery.version import __version__

__all__ = [
    "ConstantSparsity",
    "DynamicSparseTraining",
    "GraSPScorer",
    "GradualPruning",
    "KDDistiller",
    "LotteryCallback",
    "LotterySummaries",
    "PolynomialDecay",
    "PruneWrapper",
    "RewindPoint",
    "SNIPScorer",
    "Snapshot",
    "SoftLabelKL",
    "SparsityReport",
    "SynFlowScorer",
    "Ticket",
    "__version__",
    "artifact_size",
    "export_saved_model",
    "export_tflite",
    "prunable",
    "prune",
    "prune_wrappers",
    "rate_per_round",
    "reinitialize",
    "scoring",
    "sparsity_distributions",
    "sparsity_report",
    "stability",
    "strip",
    "synflow_prune",
    "tflite_runner",
    "with_teacher_logits",
]
