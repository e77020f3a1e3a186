"""`sparsity_report(model)`: per-layer and global counts of surviving weights."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np

from tf_lottery.core.walk import model_variables, prune_wrappers


@dataclass
class LayerSparsity:
    """Counts for one pruned weight."""

    layer: str
    weight: str
    shape: tuple
    total: int
    alive: int

    @property
    def sparsity(self) -> float:
        return 1.0 - self.alive / self.total if self.total else 0.0


@dataclass
class SparsityReport:
    """Per-layer and global counts.

    `total`/`alive` count the pruned (prunable) weights only; `model_total`
    and `model_nonzero` count every variable of the model except the masks,
    biases and normalization statistics included.
    """

    layers: list = field(default_factory=list)
    model_total: int = 0
    model_nonzero: int = 0

    @property
    def total(self) -> int:
        return sum(entry.total for entry in self.layers)

    @property
    def alive(self) -> int:
        return sum(entry.alive for entry in self.layers)

    @property
    def sparsity(self) -> float:
        """Fraction of the prunable weights that are pruned."""
        return 1.0 - self.alive / self.total if self.total else 0.0

    @property
    def percent_remaining(self) -> float:
        """Percent of prunable weights remaining, the x-axis of the LTH plots."""
        return 100.0 * self.alive / self.total if self.total else 100.0

    def to_dict(self) -> dict:
        return {
            "layers": [{**asdict(e), "shape": list(e.shape), "sparsity": e.sparsity} for e in self.layers],
            "total": self.total,
            "alive": self.alive,
            "sparsity": self.sparsity,
            "model_total": self.model_total,
            "model_nonzero": self.model_nonzero,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def __str__(self) -> str:
        width = max([len(f"{e.layer}/{e.weight}") for e in self.layers] + [6])
        lines = [f"{'weight':<{width}}  {'shape':<18} {'alive':>10} {'total':>10} {'sparsity':>8}"]
        for e in self.layers:
            lines.append(
                f"{e.layer + '/' + e.weight:<{width}}  {str(tuple(e.shape)):<18} "
                f"{e.alive:>10d} {e.total:>10d} {e.sparsity:>8.2%}"
            )
        lines.append(
            f"{'global':<{width}}  {'':<18} {self.alive:>10d} {self.total:>10d} {self.sparsity:>8.2%}"
        )
        return "\n".join(lines)


def sparsity_report(model) -> SparsityReport:
    """Counts surviving weights per pruned layer and over the whole model.

    Args:
        model: A model with `PruneWrapper` layers, or a plain (stripped)
            model, in which case nothing is listed per layer and only the
            model-wide nonzero count is filled.

    Returns:
        A `SparsityReport`; `print()` it for a table.

    Example:

    ```python
    report = tfl.sparsity_report(model)
    print(report)          # per-layer table
    report.sparsity        # e.g. 0.8
    ```
    """
    report = SparsityReport()
    for wrapper in prune_wrappers(model):
        for weight, mask in zip(wrapper.pruned_weights, wrapper.get_masks()):
            report.layers.append(
                LayerSparsity(
                    layer=wrapper.layer.name,
                    weight=weight.name,
                    shape=tuple(mask.shape),
                    total=int(mask.size),
                    alive=int(np.count_nonzero(mask)),
                )
            )
    for variable in model_variables(model):
        value = np.asarray(variable.value)
        report.model_total += int(value.size)
        report.model_nonzero += int(np.count_nonzero(value))
    return report
