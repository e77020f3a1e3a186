"""tf_lottery: find, train and ship sparse lottery tickets with Keras 3.

Public API (everything else is internal and may change):

- `prunable`, `PruneWrapper`, `strip`, `prune_wrappers`: masks in wrapper layers.
- `prune`, `rate_per_round`, `scoring`: global / layer-wise pruning by score.
- `LotteryCallback`, `RewindPoint`, `Snapshot`, `reinitialize`: IMP with rewinding.
- `Ticket`, `sparsity_report`, `SparsityReport`: results.
- `export_saved_model`, `export_tflite`, `tflite_runner`, `artifact_size`: shipping.
- `LotterySummaries`: pruning summaries for TensorBoard.
- `DynamicSparseTraining`, `sparsity_distributions`: RigL / SET and ER / ERK.
- `SNIPScorer`, `GraSPScorer`, `SynFlowScorer`, `synflow_prune`: pruning at init.
- `stability`: linear mode connectivity (error barriers along a path).
- `KDDistiller`, `SoftLabelKL`, `with_teacher_logits`: knowledge-distillation tickets.
"""

from tf_lottery import scoring, sparsity_distributions, stability
from tf_lottery.distillation import KDDistiller, SoftLabelKL, with_teacher_logits
from tf_lottery.dynamic_sparse import DynamicSparseTraining
from tf_lottery.export import artifact_size, export_saved_model
from tf_lottery.grasp import GraSPScorer
from tf_lottery.lottery_callback import LotteryCallback
from tf_lottery.lottery_tensorboard import LotterySummaries
from tf_lottery.model_walk import prune_wrappers
from tf_lottery.prunable import prunable
from tf_lottery.prune_wrapper import PruneWrapper
from tf_lottery.pruning import prune, rate_per_round
from tf_lottery.rewind import RewindPoint, Snapshot, reinitialize
from tf_lottery.snip import SNIPScorer
from tf_lottery.sparsity import SparsityReport, sparsity_report
from tf_lottery.strip import strip
from tf_lottery.synflow import SynFlowScorer, synflow_prune
from tf_lottery.tflite_export import export_tflite, tflite_runner
from tf_lottery.ticket import Ticket
from tf_lottery.version import __version__

__all__ = [
    "DynamicSparseTraining",
    "GraSPScorer",
    "KDDistiller",
    "LotteryCallback",
    "LotterySummaries",
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
