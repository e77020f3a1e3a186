"""`sparsity_report(model)`: per-layer and global counts of surviving weights."""

from __future__ import annotations

import json
import warnings
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
    nonzero: int = 0  # weights actually non-zero (counted in the values, not the mask)
    violations: int = 0  # positions the mask prunes whose weight is not 0.0

    @property
    def sparsity(self) -> float:
        return 1.0 - self.alive / self.total if self.total else 0.0


@dataclass
class SparsityReport:
    """Per-layer and global counts.

    `total`/`alive` count the pruned (prunable) weights only, `alive` from
    the masks; `nonzero` counts the values actually non-zero in those weights
    and `violations` the positions a mask prunes whose weight is not `0.0`
    (always 0 unless the masking mechanism failed, or a weight's backing
    `tf.Variable` was written directly). `model_total` and `model_nonzero`
    count every variable of the model except the masks, biases and
    normalization statistics included.
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
    def nonzero(self) -> int:
        return sum(entry.nonzero for entry in self.layers)

    @property
    def violations(self) -> int:
        return sum(entry.violations for entry in self.layers)

    @property
    def measured_sparsity(self) -> float:
        """Fraction of the prunable weights whose value is exactly zero."""
        return 1.0 - self.nonzero / self.total if self.total else 0.0

    @property
    def sparsity(self) -> float:
        """Fraction of the prunable weights that are pruned (by the masks)."""
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
            "nonzero": self.nonzero,
            "measured_sparsity": self.measured_sparsity,
            "violations": self.violations,
            "model_total": self.model_total,
            "model_nonzero": self.model_nonzero,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def __str__(self) -> str:
        width = max([len(f"{e.layer}/{e.weight}") for e in self.layers] + [6])
        lines = [
            f"{'weight':<{width}}  {'shape':<18} {'alive':>10} {'nonzero':>10} {'total':>10} {'sparsity':>8}"
        ]
        for e in self.layers:
            flag = f"  <- {e.violations} pruned positions are not 0" if e.violations else ""
            lines.append(
                f"{e.layer + '/' + e.weight:<{width}}  {str(tuple(e.shape)):<18} "
                f"{e.alive:>10d} {e.nonzero:>10d} {e.total:>10d} {e.sparsity:>8.2%}{flag}"
            )
        lines.append(
            f"{'global':<{width}}  {'':<18} {self.alive:>10d} {self.nonzero:>10d} {self.total:>10d} "
            f"{self.sparsity:>8.2%}"
        )
        if self.violations:
            lines.append(_violation_message(self.violations))
        return "\n".join(lines)


def _violation_message(count: int) -> str:
    return (
        f"MASK VIOLATION: {count} weights that the masks prune are not 0.0. The masks did not "
        "hold (a write that bypassed Keras' `assign`, or a Keras version whose optimizer no "
        "longer re-assigns constrained variables); call `wrapper.apply_masks()` to re-zero them "
        "and report the Keras version."
    )


def sparsity_report(model) -> SparsityReport:
    """Counts surviving weights per pruned layer and over the whole model.

    The masks give `alive`; the weights' values give `nonzero`, and any
    position a mask prunes whose weight is not `0.0` is counted in
    `violations`, flagged in the table and warned about (`RuntimeWarning`).

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
            value = np.asarray(weight.numpy())
            report.layers.append(
                LayerSparsity(
                    layer=wrapper.layer.name,
                    weight=weight.name,
                    shape=tuple(mask.shape),
                    total=int(mask.size),
                    alive=int(np.count_nonzero(mask)),
                    nonzero=int(np.count_nonzero(value)),
                    violations=int(np.count_nonzero(value[~mask])),
                )
            )
    if report.violations:
        warnings.warn(_violation_message(report.violations), RuntimeWarning, stacklevel=2)
    for variable in model_variables(model):
        value = np.asarray(variable.value)
        report.model_total += int(value.size)
        report.model_nonzero += int(np.count_nonzero(value))
    return report
