"""`sparsity_report(model)`: per-layer and global counts of surviving weights."""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np

from tf_lottery import _keras_compat
from tf_lottery.core.naming import weight_names
from tf_lottery.core.prunable_layers import is_prunable_layer, prunable_weights
from tf_lottery.core.walk import model_variables, prune_wrappers, pruning_target


@dataclass
class LayerSparsity:
    """Counts for one pruned weight.

    `name` is the weight's unique path in the model
    (`tf_lottery.core.naming`), e.g.
    `"gpt2_backbone/transformer_layer_0/self_attention/query/kernel"`;
    `layer` and `weight` are the short Keras names, which repeat in
    transformers.
    """

    layer: str
    weight: str
    shape: tuple
    total: int
    alive: int
    nonzero: int = 0  # weights actually non-zero (counted in the values, not the mask)
    violations: int = 0  # positions the mask prunes whose weight is not 0.0
    name: str = ""

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

    `source` says where `alive` comes from: `"masks"` for a model with
    `PruneWrapper` layers; `"zeros"` for a model without any (a stripped or
    never-wrapped model), where the prunable weights (the same ones
    `tfl.prunable` would mask) are listed and `alive` is their count of
    non-zero values, so `sparsity` is the fraction of exact zeros.
    """

    layers: list = field(default_factory=list)
    model_total: int = 0
    model_nonzero: int = 0
    source: str = "masks"

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
            "source": self.source,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def __str__(self) -> str:
        width = max([len(e.name) for e in self.layers] + [6])
        alive = "alive" if self.source == "masks" else "-"
        lines = []
        if self.source == "zeros":
            lines.append(
                "No PruneWrapper in this model: sparsity = exact zeros counted in the prunable "
                "weights (no masks to read)."
            )
        lines.append(
            f"{'weight':<{width}}  {'shape':<18} {alive:>10} {'nonzero':>10} {'total':>10} {'sparsity':>8}"
        )
        for e in self.layers:
            flag = f"  <- {e.violations} pruned positions are not 0" if e.violations else ""
            alive = f"{e.alive:>10d}" if self.source == "masks" else f"{'-':>10}"
            lines.append(
                f"{e.name:<{width}}  {str(tuple(e.shape)):<18} "
                f"{alive} {e.nonzero:>10d} {e.total:>10d} {e.sparsity:>8.2%}{flag}"
            )
        alive = f"{self.alive:>10d}" if self.source == "masks" else f"{'-':>10}"
        lines.append(
            f"{'global':<{width}}  {'':<18} {alive} {self.nonzero:>10d} {self.total:>10d} "
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
    Each row is named by the weight's unique path in the model (see
    `tf_lottery.core.naming`).

    A model without `PruneWrapper` layers (e.g. `tfl.strip(model)`) has no
    masks: its prunable weights (those `tfl.prunable` would mask) are listed
    with their exact zeros counted, `alive` = `nonzero`, and the report's
    `source` is `"zeros"` (the table says so).

    Args:
        model: A model with `PruneWrapper` layers, or a plain (stripped)
            model.

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
    names = weight_names(model)
    wrappers = prune_wrappers(model)
    for wrapper in wrappers:
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
                    name=names[id(weight)],
                )
            )
    if not wrappers:
        report.source = "zeros"
        for layer in _prunable_layers(model):
            for weight in prunable_weights(layer):
                nonzero = int(np.count_nonzero(np.asarray(weight.numpy())))
                report.layers.append(
                    LayerSparsity(
                        layer=layer.name,
                        weight=weight.name,
                        shape=tuple(weight.shape),
                        total=int(np.prod(weight.shape, dtype=np.int64)),
                        alive=nonzero,
                        nonzero=nonzero,
                        name=names[id(weight)],
                    )
                )
    if report.violations:
        warnings.warn(_violation_message(report.violations), RuntimeWarning, stacklevel=2)
    for variable in model_variables(model):
        value = np.asarray(variable.value)
        report.model_total += int(value.size)
        report.model_nonzero += int(np.count_nonzero(value))
    return report


def _prunable_layers(model) -> list:
    """The built layers `tfl.prunable` would wrap: outermost prunable ones, not their insides."""
    model = pruning_target(model)
    found, seen = [], set()

    def visit(layer):
        if id(layer) in seen:
            return
        seen.add(id(layer))
        if is_prunable_layer(layer):
            if layer.built:
                found.append(layer)
            return
        for child in _keras_compat.child_layers(layer):
            visit(child)

    visit(model)
    return found
