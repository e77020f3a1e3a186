"""`export_tflite`: a pruned model as a TensorFlow Lite flatbuffer with sparse weights."""

from __future__ import annotations

import dataclasses
import os
import tempfile
import warnings
from collections.abc import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from tf_lottery.export import tflite_report
from tf_lottery.export.saved_model import export_saved_model
from tf_lottery.utils import atomic_io, validation


def export_tflite(
    model: keras.Model,
    path: str,
    *,
    sparse: bool = True,
    overwrite: bool = False,
    input_signature: Sequence[tf.TensorSpec] | None = None,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    verbose: int = 1,
) -> str:
    """Converts a (pruned) model to TensorFlow Lite, storing the pruned weights sparsely.

    The model is exported with `tf_lottery.export_saved_model` (stripped, a
    distiller's student, named inputs and outputs) to a temporary directory
    and converted from there with `tf.lite.TFLiteConverter.from_saved_model`.
    With `sparse=True` the converter gets
    `tf.lite.Optimize.EXPERIMENTAL_SPARSITY`, which stores sufficiently
    sparse constant weights in TFLite's sparse (CSR-like) format; the values
    stay float32 (no quantization), so outputs match the Keras model. The
    `serving_default` signature keeps its names, for
    `interpreter.get_signature_runner()`.

    Smaller is not faster: TFLite's CPU runtime skips zeros only in
    FULLY_CONNECTED weights pruned in whole 1x4 blocks (`structure="1x4"`);
    other sparse weights are densified when the model loads. After writing,
    the file is read back with `tfl.tflite_sparsity_report`, which says per
    weight what the runtime will do; with `verbose=1` its table is printed,
    and one warning is issued when pruned weights will run at dense speed
    (unstructured or N:M Dense weights; any convolution, which XNNPACK runs
    dense on x86). Call `tfl.tflite_sparsity_report(path)` to get the report
    as an object.

    Args:
        model: A built Keras model (wrapped, stripped, or with a
            `lottery_target()`).
        path: str. The `.tflite` file to write; its directory must exist. The
            file is written atomically.
        sparse: bool. Apply `EXPERIMENTAL_SPARSITY`. Defaults to `True`.
        overwrite: bool. Replace an existing file. Defaults to `False`.
        input_signature, input_names, output_names: As in
            `tf_lottery.export_saved_model`.
        verbose: int. `1` prints what the runtime will do with each pruned
            weight; `0` prints nothing. The warning does not depend on it.
            Defaults to `1`.

    Returns:
        `path`.

    Example:

    ```python
    tfl.export_tflite(model, "ticket.tflite")
    run = tfl.tflite_runner("ticket.tflite")
    run(inputs=x[:8])["output"]
    ```
    """
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"Invalid value for argument `path`: expected a file path. Received: path={path!r}.")
    path = os.fspath(path)
    if os.path.lexists(path) and not overwrite:
        raise FileExistsError(
            f"Invalid value for argument `path`: '{path}' already exists. Expected a new file, "
            "or pass `overwrite=True`."
        )
    if os.path.isdir(path):
        raise IsADirectoryError(
            f"Invalid value for argument `path`: '{path}' is a directory, expected a file."
        )
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"Invalid value for argument `path`: the directory '{directory}' does not exist. Create it first."
        )
    with tempfile.TemporaryDirectory(prefix="tf_lottery_tflite_") as scratch:
        saved_model = export_saved_model(
            model,
            scratch,
            input_signature=input_signature,
            input_names=input_names,
            output_names=output_names,
        )
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model, signature_keys=["serving_default"])
        if sparse:
            converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
        flatbuffer = converter.convert()
    with atomic_io.atomic_open(path, "wb") as handle:
        handle.write(flatbuffer)
    report = tflite_report.tflite_sparsity_report(flatbuffer)
    report = dataclasses.replace(report, path=path)
    if verbose:
        print(report)
    slow = report.slow
    if sparse and slow:
        listed = ", ".join(f"{w.op} '{w.name}' ({w.runtime})" for w in slow[:3])
        advice = []
        if any(w.op == "FULLY_CONNECTED" for w in slow):
            advice.append(
                "FULLY_CONNECTED skips zeros only in whole 1x4 blocks (prune with `structure='1x4'`)"
            )
        if any(w.op != "FULLY_CONNECTED" for w in slow):
            advice.append(
                "convolutions run dense (XNNPACK's sparse path is off on x86): remove whole filters "
                "(`structure='channels'`, then `tfl.shrink`)"
            )
        warnings.warn(
            f"export_tflite: {len(slow)} of the {sum(w.pruned for w in report.weights)} pruned weights in "
            f"'{path}' will run at dense speed on TFLite's CPU runtime: {listed}"
            f"{', ...' if len(slow) > 3 else ''}. Sparse storage makes the file smaller, not these layers faster. "
            f"{'; '.join(advice)}. `tfl.tflite_sparsity_report(path)` has the details.",
            stacklevel=2,
        )
    return path


def tflite_runner(model: str | bytes, signature: str = "serving_default") -> Callable[..., dict]:
    """Loads a `.tflite` file (or its bytes) and returns its signature as a function.

    Uses LiteRT (`ai_edge_litert`) when installed, else `tf.lite.Interpreter`
    (deprecated in favour of LiteRT, but still shipped with TensorFlow 2.21).

    Args:
        model: str or bytes. A `.tflite` path or the flatbuffer itself.
        signature: str. The signature key. Defaults to `"serving_default"`.

    Returns:
        A function taking the named inputs as NumPy arrays and returning a
        dict of the named outputs.
    """
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        Interpreter = tf.lite.Interpreter
    source = {"model_content": model} if isinstance(model, bytes) else {"model_path": os.fspath(model)}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"(?s).*tf\.lite\.Interpreter is deprecated")
        interpreter = Interpreter(**source)
    signatures = interpreter.get_signature_list()
    validation.check_choice("signature", signature, sorted(signatures))
    runner = interpreter.get_signature_runner(signature)
    details = runner.get_input_details()

    def run(**inputs) -> dict:
        if set(inputs) != set(details):
            raise ValueError(f"Expected the inputs {sorted(details)}. Received: {sorted(inputs)}.")
        feed = {name: np.asarray(value, dtype=details[name]["dtype"]) for name, value in inputs.items()}
        return runner(**feed)

    return run
