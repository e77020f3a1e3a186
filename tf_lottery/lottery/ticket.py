"""`Ticket`: the masks and rewind weights of a found subnetwork, on disk.

A ticket file is a NumPy `.npz` archive read with `allow_pickle=False`:
loading one never executes code from the file. It is written atomically, to
a local path or any `tf.io.gfile` path (`gs://...`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from tf_lottery.core.naming import weight_names
from tf_lottery.core.walk import dense_masks, model_variables, prune_wrappers, set_masks
from tf_lottery.utils import atomic_io
from tf_lottery.version import __version__

_FORMAT = "tf_lottery.lottery.ticket/1"


@dataclass(repr=False)
class Ticket:
    """Masks plus the weights to start training the subnetwork from.

    Attributes:
        masks: Boolean arrays, one per pruned weight, in model order.
        mask_names: The unique path of each pruned weight in the model
            (`tf_lottery.core.naming`, e.g.
            `"gpt2_backbone/transformer_layer_0/self_attention/query/kernel"`),
            for messages. Ticket files written before these names (as
            `"<layer>/<weight>"`, which repeat in transformers) still load.
        weights: Values of every model variable (not the masks) at the
            rewind point, in `model.weights` order, or `None`.
        weight_names: Unique paths of those variables, named the same way
            (for messages).
        metadata: JSON-serialisable facts: sparsity, round, rewind point,
            pruning settings.
        path: The file the ticket was loaded from (`Ticket.load`), named in
            errors; `None` for a ticket made in memory.
    """

    masks: list
    mask_names: list
    weights: list | None = None
    weight_names: list | None = None
    metadata: dict = field(default_factory=dict)
    path: str | None = field(default=None, compare=False)

    @property
    def sparsity(self) -> float:
        total = sum(m.size for m in self.masks)
        return 1.0 - sum(int(np.count_nonzero(m)) for m in self.masks) / total if total else 0.0

    def __repr__(self) -> str:
        """One line: the arrays are summarised, never printed (a 15k-weight MLP's were 32 kB of text)."""
        total = sum(int(m.size) for m in self.masks)
        kept = sum(int(np.count_nonzero(m)) for m in self.masks)
        weights = "None" if self.weights is None else f"{len(self.weights)} arrays"
        parts = [
            f"masks={len(self.masks)} ({kept:,} of {total:,} weights kept)",
            f"sparsity={self.sparsity:.4f}",
            f"weights={weights}",
        ]
        if "round" in self.metadata:
            parts.append(f"round={self.metadata['round']!r}")
        if self.path is not None:
            parts.append(f"path={self.path!r}")
        return f"Ticket({', '.join(parts)})"

    __str__ = __repr__

    # -- making and applying ------------------------------------------------

    @classmethod
    def from_model(cls, model, weights=None, metadata=None) -> Ticket:
        """The current masks of `model`, with `weights` as rewind weights.

        Args:
            model: A model with `PruneWrapper` layers.
            weights: Values for every non-mask variable (e.g. a rewind
                snapshot's `model_values`); `None` keeps no weights.
            metadata: Extra JSON-serialisable facts to store.
        """
        wrappers = prune_wrappers(model)
        if not wrappers:
            raise ValueError(
                f"Invalid value for argument `model`: '{model.name}' has no "
                "PruneWrapper layers, so it has no masks to make a ticket of."
            )
        paths = weight_names(model)
        masks, names = [], []
        for wrapper in wrappers:
            for weight, mask in zip(wrapper.pruned_weights, wrapper.get_masks()):
                masks.append(mask)
                names.append(paths[id(weight)])
        variables = model_variables(model)
        if weights is not None:
            weights = [np.asarray(w) for w in weights]
            if len(weights) != len(variables):
                raise ValueError(
                    f"Invalid value for argument `weights`: expected {len(variables)} "
                    f"arrays (one per model variable). Received {len(weights)}."
                )
        ticket = cls(
            masks=masks,
            mask_names=names,
            weights=weights,
            weight_names=[paths[id(v)] for v in variables] if weights is not None else None,
            metadata=dict(metadata or {}),
        )
        ticket.metadata.setdefault("sparsity", ticket.sparsity)
        return ticket

    def apply(self, model, *, weights: bool = True, transfer: bool = False) -> None:
        """Sets `model`'s masks (and weights) from this ticket.

        The model must have the ticket's architecture: the same pruned
        weights in the same order and shapes. Everything is checked before
        anything is written (counts, shapes, mask values, weight dtypes and
        finiteness), so a ticket that does not fit leaves the model exactly
        as it was; the error names the ticket file (when it came from
        `Ticket.load`) and the weight.

        Args:
            model: A model with `PruneWrapper` layers (see `tfl.prunable`).
            weights: bool. Also load the ticket's rewind weights. Defaults
                to `True`.
            transfer: bool. Allow the *last* pruned layer (the classifier)
                to differ, e.g. another number of classes: that layer stays
                dense with the model's own fresh weights. For ticket transfer
                (Morcos et al. 2019, arXiv:1906.02773). Defaults to `False`.
        """
        wrappers = prune_wrappers(model)
        targets = [(wr, w) for wr in wrappers for w in wr.pruned_weights]
        if len(targets) != len(self.masks):
            raise ValueError(
                f"{self._name} does not fit model '{model.name}': the ticket has "
                f"{len(self.masks)} pruned weights ({self.mask_names[:4]}...), the "
                f"model has {len(targets)}. Apply a ticket to a model of the same "
                "architecture, wrapped with `tfl.prunable` using the same `exclude`."
            )
        skip_layer = wrappers[-1].layer if transfer and wrappers else None
        variables = model_variables(model)
        skip_variables = {id(v) for v in skip_layer.weights} if skip_layer is not None else set()
        masks = self._checked_masks(model, targets, skip_layer)
        values = None
        if weights and self.weights is not None:
            values = self._checked_weights(model, variables, skip_variables)

        # Everything fits: write.
        flat, position = [], 0
        for wrapper in wrappers:
            count = len(wrapper.masks)
            if wrapper.layer is skip_layer:
                flat.extend(dense_masks([wrapper]))
            else:
                flat.extend(masks[position : position + count])
            position += count
        set_masks(wrappers, flat)
        if values is not None:
            for variable, value in zip(variables, values):
                if id(variable) not in skip_variables:
                    variable.assign(value)

    @property
    def _name(self) -> str:
        return f"Ticket '{self.path}'" if self.path else "This ticket"

    def _checked_masks(self, model, targets, skip_layer) -> list:
        """The masks as boolean arrays; a ValueError naming the first misfit."""
        masks = []
        for index, ((wrapper, weight), mask) in enumerate(zip(targets, self.masks)):
            name = self.mask_names[index] if index < len(self.mask_names) else f"#{index}"
            mask = np.asarray(mask)
            if wrapper.layer is skip_layer:
                masks.append(None)
                continue
            if tuple(weight.shape) != mask.shape:
                raise ValueError(
                    f"{self._name} does not fit model '{model.name}': pruned weight "
                    f"#{index} is '{name}' of shape {mask.shape} in "
                    f"the ticket but '{weight.path}' of shape {tuple(weight.shape)} "
                    "in the model. For a different output layer pass `transfer=True`."
                )
            if mask.dtype != bool:
                numeric = np.issubdtype(mask.dtype, np.number)
                if not numeric or not np.all((mask == 0) | (mask == 1)):
                    raise ValueError(
                        f"{self._name} is not a valid ticket: mask #{index} '{name}' (for "
                        f"'{weight.path}') holds values other than 0 and 1 (dtype {mask.dtype}). "
                        "Masks are boolean: True keeps a weight. Re-create the ticket with "
                        "`Ticket.from_model`."
                    )
                mask = mask != 0
            masks.append(mask)
        return masks

    def _checked_weights(self, model, variables, skip_variables) -> list:
        """The rewind weights as arrays; a ValueError naming the first misfit."""
        if len(variables) != len(self.weights):
            raise ValueError(
                f"{self._name} does not fit model '{model.name}': it holds "
                f"{len(self.weights)} weights, the model has {len(variables)}."
            )
        values = []
        for index, (variable, value) in enumerate(zip(variables, self.weights)):
            value = np.asarray(value)
            values.append(value)
            if id(variable) in skip_variables:
                continue
            name = (
                self.weight_names[index]
                if self.weight_names and index < len(self.weight_names)
                else f"#{index}"
            )
            where = f"weight #{index} '{name}' (for '{variable.path}')"
            if tuple(variable.shape) != value.shape:
                raise ValueError(
                    f"{self._name} does not fit model '{model.name}': {where} has shape "
                    f"{value.shape} in the ticket but the model's has {tuple(variable.shape)}."
                )
            expected = _numpy_dtype(variable.dtype)
            if expected is None:  # e.g. bfloat16 where NumPy has no name for it
                fits = value.dtype.name == str(variable.dtype)
            else:
                fits = value.dtype == expected or np.can_cast(value.dtype, expected, "safe")
            if not fits:
                raise ValueError(
                    f"{self._name} does not fit model '{model.name}': {where} has dtype "
                    f"{value.dtype} in the ticket, which does not convert exactly to the model's "
                    f"{variable.dtype}. Re-create the ticket from a model of the same dtypes "
                    "(`Ticket.from_model`), or convert the weights with `astype` on purpose."
                )
            if np.issubdtype(value.dtype, np.inexact) and not np.all(np.isfinite(value)):
                count = int(np.count_nonzero(~np.isfinite(value)))
                raise ValueError(
                    f"{self._name} is not a valid ticket: {where} holds {count} NaN or Inf "
                    "value(s); the rewind weights were taken from a diverged run. Take the "
                    "ticket from finite weights, or apply only its masks with `weights=False`."
                )
        return values

    # -- files ----------------------------------------------------------------

    def save(self, path: str) -> None:
        """Writes the ticket to `path` (an `.npz` file, local or `gs://...`) atomically."""
        if not isinstance(path, (str, os.PathLike)):
            raise ValueError(
                f"Invalid value for argument `path`: expected a file path. Received: path={path!r}."
            )
        header = {
            "format": _FORMAT,
            "tf_lottery_version": __version__,
            "mask_names": list(self.mask_names),
            "weight_names": list(self.weight_names) if self.weight_names is not None else None,
            "metadata": self.metadata,
        }
        arrays = {"header": atomic_io.json_array(header)}
        for i, mask in enumerate(self.masks):
            arrays[f"mask_{i:05d}"] = np.asarray(mask, dtype=bool)
        for i, value in enumerate(self.weights or []):
            arrays[f"weight_{i:05d}"] = np.asarray(value)
        atomic_io.write_npz(os.fspath(path), arrays)

    @classmethod
    def load(cls, path: str) -> Ticket:
        """Reads a ticket written by `save` (never unpickles anything).

        Raises:
            FileNotFoundError: there is no file at `path`.
            atomic_io.DamagedFileError: (a `ValueError`) `path` is not a
                readable ticket: truncated, garbled, another file type, or a
                header of another shape; the message names the file.
        """
        path = os.fspath(path)
        if not atomic_io.isfile(path):
            raise FileNotFoundError(f"Invalid value for argument `path`: no ticket file at '{path}'.")
        try:
            archive = atomic_io.load_npz(path)
            header = atomic_io.json_entry(archive, "header", path, expect=dict)
            if header.get("format") != _FORMAT:
                raise ValueError(f"unknown format {header.get('format')!r}")
            mask_names = _names(header, "mask_names")
            weight_names = _names(header, "weight_names", optional=True)
            metadata = header.get("metadata", {})
            if not isinstance(metadata, dict):
                raise ValueError(f"its header's 'metadata' is a {type(metadata).__name__}, not an object")
            masks = [_entry(archive, f"mask_{i:05d}") for i in range(len(mask_names))]
            weights = None
            if weight_names is not None:
                weights = [_entry(archive, f"weight_{i:05d}") for i in range(len(weight_names))]
        except ValueError as error:
            reason = error.reason if isinstance(error, atomic_io.DamagedFileError) else str(error)
            raise atomic_io.DamagedFileError(
                path,
                "it is not a readable tf_lottery ticket (corrupted, truncated or another file type): "
                + reason,
                "Re-create it with `Ticket.save`.",
            ) from error
        if any(m.dtype != bool for m in masks):
            raise atomic_io.DamagedFileError(
                path,
                "it is not a valid ticket: its masks are not boolean",
                "Re-create it with `Ticket.save`.",
            )
        return cls(
            masks=masks,
            mask_names=mask_names,
            weights=weights,
            weight_names=weight_names,
            metadata=metadata,
            path=path,
        )


def _numpy_dtype(dtype) -> np.dtype | None:
    """The NumPy dtype of a Keras variable dtype name, or `None` when NumPy has none."""
    try:
        return np.dtype(str(dtype))
    except TypeError:
        return None


def _names(header: dict, key: str, optional: bool = False) -> list | None:
    """The list of names `header[key]` of a ticket file's header (`None` allowed if `optional`)."""
    names = header.get(key)
    if names is None and optional and key in header:
        return None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"its header's {key!r} is {names!r:.80}, not a list of names")
    return names


def _entry(archive: dict, key: str) -> np.ndarray:
    if key not in archive:
        raise ValueError(f"the array {key!r} is missing")
    return archive[key]
