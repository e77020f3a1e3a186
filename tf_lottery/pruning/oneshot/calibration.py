"""Sequential calibration: the inputs of each prunable layer, with the layers before it already pruned.

Both papers run their calibration data through the network block by block,
each block's inputs coming from the pruned blocks before it. Here a step is
one `PruneWrapper` (a Dense layer, or all four projections of an attention
layer), in the order the forward pass first calls them. For each step the
calibration batches run through a forward function again, eagerly, with a
hook on the step's linear layers that folds their inputs into running
statistics (the sum of squares per input for Wanda, the Gram matrix `X^T X`
for SparseGPT); the forward pass stops as soon as the step's layers have
been called as often as in the first batch, so the layers after it are
never evaluated.

The forward function is one block on its cached inputs where the model's
blocks can be isolated (`blockwise.py`: about 2-3 block evaluations per
block), else the whole model from its inputs (about `L^2 / 2` layer
evaluations for `L` steps). Layers of one step that read the same tensor
(an attention layer's query, key and value projections) share one
computation of its statistics.

Memory: the statistics of one step (`inputs` floats per layer for Wanda,
`inputs^2` for SparseGPT) and one batch's float64 rows at a time, in
chunks of about 32 MB.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf

from tf_lottery.utils import validation
from tf_lottery.utils.memory import release_freed_memory


class _StopForward(Exception):
    """Raised by a hook once the layers of the current step have seen a batch."""


def batches(calibration_data, batch_size: int) -> list:
    """The calibration inputs as a list of batches (inputs only; labels are dropped).

    Accepts a NumPy array or tensor (or a dict / list / tuple of them, as
    keras_hub models take), split into batches of `batch_size`, or a
    `tf.data.Dataset` of batches whose elements are `x` or `(x, y[, w])`.
    """
    if isinstance(calibration_data, tf.data.Dataset):
        result = []
        for element in calibration_data:
            x, _, _ = keras.utils.unpack_x_y_sample_weight(element)
            result.append(keras.tree.map_structure(np.asarray, x))
    else:
        try:
            data = keras.tree.map_structure(np.asarray, calibration_data)
            leaves = keras.tree.flatten(data)
        except (TypeError, ValueError):
            leaves = []
        if not leaves or any(leaf.ndim == 0 for leaf in leaves):
            raise validation.invalid_argument(
                "calibration_data",
                _describe(calibration_data),
                "a NumPy array or tensor of calibration inputs with a batch axis, a dict or "
                "tuple of them, or a batched tf.data.Dataset",
            )
        count = len(leaves[0])
        if any(len(leaf) != count for leaf in leaves):
            sizes = sorted({len(leaf) for leaf in leaves})
            raise validation.invalid_argument(
                "calibration_data",
                _describe(calibration_data),
                f"inputs with one batch size (got sizes {sizes})",
            )
        result = [
            keras.tree.map_structure(lambda leaf, s=start: leaf[s : s + batch_size], data)
            for start in range(0, count, batch_size)
        ]
    if not result or all(len(keras.tree.flatten(b)[0]) == 0 for b in result):
        raise validation.invalid_argument(
            "calibration_data", _describe(calibration_data), "at least one calibration sample (it is empty)"
        )
    for batch in result:
        for leaf in keras.tree.flatten(batch):
            if not (np.issubdtype(leaf.dtype, np.number) or leaf.dtype == bool):
                raise validation.invalid_argument(
                    "calibration_data",
                    _describe(calibration_data),
                    f"numeric inputs such as the model takes (got dtype {leaf.dtype}); tokenize text "
                    "first (e.g. with the model's preprocessor)",
                )
    return result


def _describe(data) -> str:
    try:
        return str(keras.tree.map_structure(lambda a: f"<{np.asarray(a).dtype} {np.shape(a)}>", data))
    except Exception:  # noqa: BLE001 - only a description for an error message
        return f"<{type(data).__name__}>"


_CHUNK_FLOATS = 1 << 22  # float64 rows converted at a time (32 MB)


def statistics(view, x, gram: bool) -> np.ndarray:
    """`X^T X` (gram) or the sum of squares per input of the `(samples, inputs)` rows of `x`, in float64."""
    rows = view.input_matrix(keras.ops.convert_to_numpy(x), dtype=None)
    step = max(1, _CHUNK_FLOATS // max(view.inputs, 1))
    result = None
    for start in range(0, max(len(rows), 1), step):
        chunk = np.asarray(rows[start : start + step], dtype=np.float64)
        update = chunk.T @ chunk if gram else np.einsum("ij,ij->j", chunk, chunk)
        if result is None:
            result = update
        else:
            result += update  # in place: at 3072 inputs a Gram matrix is 75 MB
    return result


@dataclass
class Hook:
    """Running statistics of one linear layer's inputs."""

    view: object  # LinearView
    gram: bool  # SparseGPT needs X^T X; Wanda the sum of squares per input
    samples: int = 0
    calls: int = 0
    order: list | None = field(default=None, repr=False)  # shared: hooks in the order first called
    stats: np.ndarray | None = field(default=None, repr=False)
    _owned: bool = field(default=False, repr=False)  # whether `stats` may be added to in place

    def add(self, x, shared: dict | None = None) -> None:
        """Folds `x` in; `shared` remembers the last input's statistics for the next layer that reads it."""
        key = (self.view.input_axes, self.view.inputs, self.gram)
        last = None if shared is None else shared.get("last")
        if last is not None and last[0] is x and last[1] == key:
            update = last[2]
        else:
            update = statistics(self.view, x, self.gram)
            if shared is not None:
                shared["last"] = (x, key, update)  # holding `x` keeps its id from being reused
        self.samples += int(np.shape(x)[0]) if np.ndim(x) else 1
        if self.stats is None:
            self.stats, self._owned = update, False  # `update` may be shared with q/k/v's hooks
        elif self._owned:
            self.stats += update
        else:
            self.stats, self._owned = self.stats + update, True


@contextlib.contextmanager
def _hooked(layers_and_hooks, stop_when=None, shared: dict | None = None):
    """Runs each layer's own `call`, first handing its input to its hook.

    Why an instance attribute: Keras' `Layer.__call__` runs `self.call`, so a
    bound function set on the instance sees exactly what the layer computes
    on, for every caller (keras_hub's attention calls its projections
    itself); deleting it restores the class's method (or the instance's own).
    """
    patched = []
    try:
        for layer, hook in layers_and_hooks:
            original = layer.call

            def call(*args, _original=original, _hook=hook, **kwargs):
                inputs = args[0] if args else kwargs.get("inputs")
                outputs = _original(*args, **kwargs)
                _hook.calls += 1
                if _hook.calls == 1 and _hook.order is not None:
                    _hook.order.append(_hook)
                if _hook.view is not None:
                    _hook.add(inputs, shared)
                if stop_when is not None and stop_when():
                    raise _StopForward
                return outputs

            patched.append((layer, vars(layer).get("call")))
            layer.call = call
        yield
    finally:
        for layer, own in patched:
            if own is None:
                del layer.call
            else:  # a `call` the instance already had (someone else's hook) stays
                layer.call = own


def _forward(model, batch) -> None:
    try:
        model(batch, training=False)
    except _StopForward:
        pass


def model_forwards(model, data: list) -> list[Callable[[], object]]:
    """One forward function per batch: the whole model on it, as in inference."""
    return [functools.partial(model, batch, training=False) for batch in data]


def probe(model, first_batch, layers: list) -> tuple[list[int], list[int]]:
    """How often the forward pass calls each layer on the first batch (0: never), and
    the indices of the layers called, in the order first called.

    Also checks that the model takes the calibration data; its error names
    the argument. Runs on the batch's first sample only: the calls do not
    depend on the batch size, and a language model's logits over its whole
    vocabulary for a full batch would outweigh everything else held here.
    """
    first_sample = keras.tree.map_structure(lambda leaf: leaf[:1], first_batch)
    order: list = []
    hooks = [Hook(view=None, gram=False, order=order) for _ in layers]
    try:
        with _hooked(list(zip(layers, hooks))):
            _forward(model, first_sample)
    except Exception as error:  # noqa: BLE001 - re-raised with the argument named
        raise ValueError(
            "Invalid value for argument `calibration_data`: the model could not be called on "
            f"its first batch ({type(error).__name__}: {error}). Expected inputs of the shape and "
            "dtype that `model(x)` takes (tokenized ids for a language model, without labels). "
            f"Received: calibration_data={_describe(first_batch)} (first batch)."
        ) from error
    position = {id(h): i for i, h in enumerate(hooks)}
    return [h.calls for h in hooks], [position[id(h)] for h in order]


def capture(
    forwards: list[Callable[[], object]], layers: list, views: list, expected_calls: list[int], gram: bool
) -> list[Hook]:
    """Statistics of the inputs of `layers` over all calibration batches, in one pass each.

    `forwards[i]()` runs batch `i` (through the whole model, or through the
    one block that holds `layers`); it is stopped once every layer has been
    called `expected_calls` times.
    """
    hooks = [Hook(view=v, gram=gram) for v in views]
    state = {"calls": [0] * len(hooks)}
    shared: dict = {}

    def done():
        return all(h.calls - base >= e for h, base, e in zip(hooks, state["calls"], expected_calls))

    with _hooked(list(zip(layers, hooks)), stop_when=done, shared=shared):
        for forward in forwards:
            state["calls"] = [h.calls for h in hooks]
            try:
                forward()
            except _StopForward:
                pass
            finally:
                shared.clear()
                release_freed_memory()  # one batch's activations, else kept by the C heap (see utils/memory)
    return hooks
