"""`tflite_sparsity_report`: what TensorFlow Lite's CPU runtime will do with each weight of a `.tflite` file.

Storing a weight sparse (`tf.lite.Optimize.EXPERIMENTAL_SPARSITY`) makes the
file smaller; whether inference gets faster depends on the operator that
reads it. The report reads the flatbuffer itself (the operators, their
constant weights and each tensor's `SparsityParameters`) and says, per
weight:

- `"sparse kernel"`: a FULLY_CONNECTED weight stored in 1x4 blocks (float32;
  `dim_metadata[2].dense_size == 4`) is read directly by the operator, which
  runs `FullyConnectedSparseWeight1x4` and skips the zero blocks. This is
  what `structure="1x4"` produces (see `tf_lottery.pruning.blocks`). An int8
  weight in 1x16 blocks runs the int8 sparse kernel the same way.
- `"densified at load"`: a weight stored sparse but read through a DENSIFY
  operator: the runtime rebuilds the dense tensor once when the model is
  prepared, and the operator runs dense. Unstructured and N:M sparse Dense
  weights, and every sparse convolution weight, end up here.
- `"dense"`: stored dense; zeros, if any, are multiplied like any value.

Convolutions: TFLite has no sparse convolution kernel. XNNPACK (the default
CPU delegate) has a sparse path for CNN subgraphs of 1x1 convolutions with at
least 2/3 zeros, but turns it off on x86 CPUs with AVX
(`xnn_is_chw_compatible_config`); on ARM it may apply. The report notes this
on such convolutions. Measured on this x86 CPU (TF 2.21, 1 thread): a
90%-sparse MobileNet-shaped model shrank from 16.9 MB to 6.2 MB and ran no
faster; a 4 x Dense(2048) MLP in 1x4 blocks ran several times faster (see
`benchmarks/serving.py`).
"""

from __future__ import annotations

import dataclasses
import os
import platform

import numpy as np

from tf_lottery import _keras_compat

# Operators whose second input is a weight tensor.
_WEIGHTED = (
    "FULLY_CONNECTED",
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "CONV_3D",
    "TRANSPOSE_CONV",
    "CONV_3D_TRANSPOSE",
    "BATCH_MATMUL",
)
_TYPES = {0: "float32", 1: "float16", 9: "int8", 3: "uint8"}
# A weight with at least this fraction of zeros counts as pruned.
PRUNED_ZEROS = 0.2

SPARSE_KERNEL = "sparse kernel"
DENSIFIED = "densified at load"
DENSE = "dense"


@dataclasses.dataclass(frozen=True)
class TfliteWeight:
    """One weight of a `.tflite` model and what the CPU runtime does with it.

    Attributes:
        op: str. The operator that reads it, e.g. `"FULLY_CONNECTED"`.
        name: str. The weight tensor's name (the Keras layer's path is in it).
        output: str. The operator's output tensor name.
        shape: tuple. The TFLite shape (FULLY_CONNECTED: `(outputs, inputs)`).
        dtype: str. `"float32"`, `"int8"`, ...
        storage: str. `"dense"`, `"sparse"` (CSR of single entries) or
            `"sparse RxC blocks"`.
        zeros: float. Fraction of the weight's entries that are zero (stored
            sparse: those not stored).
        runtime: str. `"sparse kernel"`, `"densified at load"` or `"dense"`.
        note: str. Why, in a sentence.
    """

    op: str
    name: str
    output: str
    shape: tuple
    dtype: str
    storage: str
    zeros: float
    runtime: str
    note: str

    @property
    def pruned(self) -> bool:
        """Stored sparse, or at least `PRUNED_ZEROS` of it is zero."""
        return self.storage != "dense" or self.zeros >= PRUNED_ZEROS


@dataclasses.dataclass(frozen=True)
class TfliteSparsityReport:
    """Per weight, what TFLite's CPU runtime does with a converted model's sparsity.

    `str(report)` is a table of the pruned weights. `slow` lists the pruned
    weights that will not run faster than dense.
    """

    path: str
    size: int
    weights: tuple

    @property
    def slow(self) -> list:
        """Pruned weights that run at dense speed (densified, or stored dense)."""
        return [w for w in self.weights if w.pruned and w.runtime != SPARSE_KERNEL]

    @property
    def fast(self) -> list:
        """Weights the runtime reads sparse, skipping the zeros."""
        return [w for w in self.weights if w.runtime == SPARSE_KERNEL]

    def __str__(self) -> str:
        pruned = [w for w in self.weights if w.pruned]
        lines = [f"TFLite CPU runtime for '{self.path}' ({self.size / 1e6:.2f} MB):"]
        for w in pruned:
            lines.append(
                f"  {w.op} {w.name} {list(w.shape)}: {w.zeros:.0%} zeros, stored {w.storage}: "
                f"{w.runtime}. {w.note}"
            )
        rest = len(self.weights) - len(pruned)
        if rest:
            lines.append(f"  {rest} other weight(s): dense, no zeros to skip.")
        return "\n".join(lines)


def tflite_sparsity_report(model: str | os.PathLike | bytes) -> TfliteSparsityReport:
    """What TensorFlow Lite's CPU runtime will do with each weight of a `.tflite` model.

    See the module docstring for the three outcomes. Reads the flatbuffer
    only; nothing is run.

    Args:
        model: str, path-like or bytes. A `.tflite` file or its contents.

    Returns:
        A `TfliteSparsityReport`; print it for a per-weight table.

    Example:

    ```python
    tfl.export_tflite(ticket, "ticket.tflite", verbose=0)
    report = tfl.tflite_sparsity_report("ticket.tflite")
    print(report)
    assert not report.slow  # every pruned weight runs the sparse kernel
    ```
    """
    if isinstance(model, bytes):
        data, path = model, "<bytes>"
    elif isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Invalid value for argument `model`: no file at '{path}'.")
        with open(path, "rb") as handle:
            data = handle.read()
    else:
        raise ValueError(
            f"Invalid value for argument `model`: expected a .tflite path or its bytes. Received: model={model!r}."
        )
    if data[4:8] != b"TFL3":
        raise ValueError(
            f"Invalid value for argument `model`: '{path}' is not a TensorFlow Lite flatbuffer "
            "(no 'TFL3' identifier). Pass the file `tfl.export_tflite` wrote."
        )
    schema = _keras_compat.tflite_schema()
    flat = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    names = {value: key for key, value in vars(schema.BuiltinOperator).items() if not key.startswith("_")}
    weights = []
    for graph in flat.subgraphs or []:
        producers = {}
        for op in graph.operators or []:
            for out in op.outputs:
                producers[int(out)] = op
        for op in graph.operators or []:
            code = flat.operatorCodes[op.opcodeIndex]
            name = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")
            if name not in _WEIGHTED or len(op.inputs) < 2 or op.inputs[1] < 0:
                continue
            index = int(op.inputs[1])
            source = producers.get(index)
            densify = False
            if source is not None:
                source_code = flat.operatorCodes[source.opcodeIndex]
                source_name = names.get(max(source_code.builtinCode, source_code.deprecatedBuiltinCode))
                if source_name != "DENSIFY":
                    continue  # a computed operand (attention scores, say), not a weight
                index, densify = int(source.inputs[0]), True
            tensor = graph.tensors[index]
            buffer = flat.buffers[tensor.buffer]
            raw = _buffer_bytes(buffer, data)
            if raw is None:
                continue
            weights.append(_describe(name, tensor, raw, densify, graph.tensors[op.outputs[0]], op))
    return TfliteSparsityReport(path=path, size=len(data), weights=tuple(weights))


def _buffer_bytes(buffer, data: bytes):
    if buffer is None:
        return None
    if buffer.data is not None and len(buffer.data):
        return np.asarray(buffer.data, dtype=np.uint8).tobytes()
    if getattr(buffer, "offset", 0) and getattr(buffer, "size", 0):  # models over 2 GB
        return data[buffer.offset : buffer.offset + buffer.size]
    return None


def _describe(op_name: str, tensor, raw: bytes, densify: bool, output, op) -> TfliteWeight:
    shape = tuple(int(d) for d in tensor.shape)
    size = int(np.prod(shape))
    dtype = _TYPES.get(int(tensor.type), f"type {int(tensor.type)}")
    sparsity = tensor.sparsity
    if sparsity is None:
        itemsize = {"float32": 4, "float16": 2, "int8": 1, "uint8": 1}.get(dtype)
        if itemsize is not None and len(raw) == size * itemsize:
            values = np.frombuffer(raw, dtype=np.dtype(dtype))
            zeros = float(np.count_nonzero(values == 0)) / max(size, 1)
        else:
            zeros = 0.0
        storage, block = "dense", None
    else:
        itemsize = {"float32": 4, "float16": 2, "int8": 1, "uint8": 1}.get(dtype, 4)
        zeros = 1.0 - len(raw) / itemsize / max(size, 1)
        block_map = [int(b) for b in (sparsity.blockMap if sparsity.blockMap is not None else [])]
        dims = sparsity.dimMetadata or []
        block = None
        if block_map:
            sizes = [int(d.denseSize) for d in dims[len(shape) :]]
            block = [1] * len(shape)
            for axis, extent in zip(block_map, sizes):
                block[axis] = extent
        storage = "sparse" if block is None else f"sparse {'x'.join(str(b) for b in block)} blocks"
    runtime, note = _verdict(op_name, shape, dtype, densify, block, zeros, op)
    return TfliteWeight(
        op=op_name,
        name=_text(tensor.name),
        output=_text(output.name),
        shape=shape,
        dtype=dtype,
        storage=storage,
        zeros=zeros,
        runtime=runtime,
        note=note,
    )


def _verdict(op_name, shape, dtype, densify, block, zeros, op) -> tuple[str, str]:
    if not densify and block is not None and op_name == "FULLY_CONNECTED":
        if block[-1] == 4 and dtype == "float32":
            return (
                SPARSE_KERNEL,
                "FULLY_CONNECTED runs its 1x4 block-sparse kernel and skips the zero blocks.",
            )
        if block[-1] == 16 and dtype == "int8":
            return SPARSE_KERNEL, "FULLY_CONNECTED runs its int8 1x16 block-sparse kernel."
    x86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
    if op_name in ("CONV_2D", "DEPTHWISE_CONV_2D", "CONV_3D", "TRANSPOSE_CONV", "CONV_3D_TRANSPOSE"):
        pointwise = op_name == "CONV_2D" and len(shape) == 4 and shape[1] == shape[2] == 1
        if pointwise and zeros >= 2 / 3:
            where = "off on this x86 CPU" if x86 else "possible on ARM"
            note = (
                "TFLite has no sparse convolution; XNNPACK's sparse 1x1-convolution path "
                f"(>= 2/3 zeros) is {where}. Whole filters (`structure='channels'`, then `tfl.shrink`) "
                "run faster everywhere."
            )
        else:
            note = (
                "TFLite has no sparse convolution kernel: it runs dense. Whole filters "
                "(`structure='channels'`, then `tfl.shrink`) run faster."
            )
        return (DENSIFIED if densify else DENSE), note
    if densify:
        return DENSIFIED, (
            "Sparse storage only shrinks the file; the runtime rebuilds the dense weight. "
            + (
                "Prune Dense layers in whole 1x4 blocks (`structure='1x4'`) to run sparse."
                if op_name == "FULLY_CONNECTED"
                else ""
            )
        ).strip()
    if zeros >= PRUNED_ZEROS:
        return DENSE, (
            "Stored dense (the converter found too few zeros, or `sparse=False`): the zeros are multiplied."
        )
    return DENSE, ""


def _text(name) -> str:
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
