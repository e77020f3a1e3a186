"""`export_saved_model`: a pruned model as a versioned SavedModel for serving.

The exported model is the stripped one (`tf_lottery.core.strip`): plain Keras
layers with exact zeros where pruned, no masks, no constraints, no optimizer
state, and nothing that needs `tf_lottery` to load or serve it. TensorFlow
Serving reads `<base_dir>/<version>/`; the sparsity report travels in the
version directory's `assets.extra/`, which TensorFlow Serving and the
SavedModel loader leave alone.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import logging
import numbers
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Sequence
from typing import NamedTuple

import keras
import tensorflow as tf

from tf_lottery import _keras_compat
from tf_lottery.core.report import SparsityReport, sparsity_report
from tf_lottery.core.strip import strip
from tf_lottery.core.walk import is_graph_model, prune_wrappers, pruning_target
from tf_lottery.core.wrapper import PruneWrapper
from tf_lottery.version import __version__

REPORT_ASSET = os.path.join("assets.extra", "sparsity_report.json")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class ArtifactSize(NamedTuple):
    """Bytes on disk of an exported artifact: as written, and gzip'ed."""

    raw: int
    gzip: int


def export_saved_model(
    model: keras.Model,
    base_dir: str,
    version: int = 1,
    *,
    input_signature: Sequence[tf.TensorSpec] | None = None,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
) -> str:
    """Exports a (pruned) model as a SavedModel ready for TensorFlow Serving.

    Writes `<base_dir>/<version>/` with a `serving_default` signature whose
    inputs and outputs are named, from the stripped model: the pruned weights
    are exact zeros in the variables, and the graph is the plain model's,
    with no masking work. A model with a `lottery_target()` (a distiller) is
    exported as that target (the student). The sparsity report is stored as
    `<version>/assets.extra/sparsity_report.json`.

    The SavedModel is written to a temporary directory inside `base_dir` and
    renamed into place, so `<version>/` is either complete or absent; the
    temporary name is not a number, which TensorFlow Serving skips.

    Args:
        model: A built Keras model: with `PruneWrapper` layers, already
            stripped, or with a `lottery_target()`.
        base_dir: str. The model's base directory (TensorFlow Serving's
            `--model_base_path`); created if missing.
        version: int >= 1. The version subdirectory; it must not exist yet.
            Defaults to `1`.
        input_signature: Optional list of `tf.TensorSpec`, one per input.
            Defaults to the model's `Input`s (needed for subclassed models
            that were never called on symbolic inputs).
        input_names: Optional signature input names, one per input. Defaults
            to the `TensorSpec` names, else the `Input` layer names.
        output_names: Optional signature output names, one per output.
            Defaults to the names of the output layers (the keys for a model
            returning a dict).

    Returns:
        The path of the version directory.

    Example:

    ```python
    path = tfl.export_saved_model(model, "/models/mnist", version=1,
                                  input_names=["pixels"], output_names=["logits"])
    # saved_model_cli show --dir /models/mnist/1 --tag_set serve \
    #     --signature_def serving_default
    ```
    """
    target = _check_model(model)
    _check_version(version)
    if not isinstance(base_dir, (str, os.PathLike)):
        raise ValueError(
            f"Invalid value for argument `base_dir`: expected a path. Received: base_dir={base_dir!r}."
        )
    base_dir = os.fspath(base_dir)
    final = os.path.join(base_dir, str(int(version)))
    if os.path.lexists(final):
        raise FileExistsError(
            f"Invalid value for argument `version`: '{final}' already exists. Expected a new "
            f"version (TensorFlow Serving versions are never overwritten). Received: version={version!r}."
        )
    if os.path.exists(base_dir) and not os.path.isdir(base_dir):
        raise NotADirectoryError(
            f"Invalid value for argument `base_dir`: expected a directory. Received: base_dir='{base_dir}', a file."
        )

    plain, report = _stripped_with_report(target)
    archive = _serving_archive(plain, target, input_signature, input_names, output_names)
    created_base = not os.path.isdir(base_dir)
    os.makedirs(base_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".tmp-{int(version)}-", dir=base_dir)
    try:
        with _quiet_tensorflow_logger():  # its INFO line names the temporary directory
            archive.write_out(tmp, verbose=False)
        os.makedirs(os.path.join(tmp, "assets.extra"))
        with open(os.path.join(tmp, REPORT_ASSET), "w") as handle:
            json.dump({**report.to_dict(), "tf_lottery_version": __version__}, handle, indent=2)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if created_base:
            with contextlib.suppress(OSError):
                os.rmdir(base_dir)
        raise
    return final


def stripped_for_export(model: keras.Model) -> keras.Model:
    """The plain Keras model that `export_saved_model` would export."""
    return _stripped_with_report(_check_model(model))[0]


def artifact_size(path: str) -> ArtifactSize:
    """Sizes of a file or directory: raw bytes, and gzip'ed (a `.tar.gz` for a directory).

    The archive is deterministic (sorted names, zero timestamps), so the
    gzip size does not change between runs.
    """
    if os.path.isfile(path):
        with open(path, "rb") as handle:
            data = handle.read()
        return ArtifactSize(len(data), len(gzip.compress(data, compresslevel=9, mtime=0)))
    if not os.path.isdir(path):
        raise FileNotFoundError(f"Invalid value for argument `path`: '{path}' does not exist.")
    raw = 0
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=9, mtime=0) as zipped:
        with tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    full = os.path.join(root, name)
                    raw += os.path.getsize(full)
                    info = tar.gettarinfo(full, arcname=os.path.relpath(full, path))
                    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                    with open(full, "rb") as handle:
                        tar.addfile(info, handle)
    return ArtifactSize(raw, len(buffer.getvalue()))


@contextlib.contextmanager
def _quiet_tensorflow_logger():
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


# -- checks -------------------------------------------------------------------


def _check_model(model) -> keras.Model:
    if not isinstance(model, keras.Model):
        raise ValueError(
            "Invalid value for argument `model`: expected a Keras model. "
            f"Received: model={model!r} of type {type(model).__name__}."
        )
    target = pruning_target(model)
    if not isinstance(target, keras.Model):
        raise ValueError(
            f"Invalid value for argument `model`: its `lottery_target()` must return a Keras model. "
            f"Received a {type(target).__name__}."
        )
    if not target.built:
        raise ValueError(
            f"Invalid value for argument `model`: '{target.name}' is not built. Expected a model that "
            "was called on data (or trained) at least once, so that its weights exist."
        )
    return target


def _check_version(version) -> None:
    if isinstance(version, bool) or not isinstance(version, numbers.Integral) or version < 1:
        raise ValueError(
            f"Invalid value for argument `version`: expected a positive int (1, 2, ...). "
            f"Received: version={version!r}."
        )


def _check_names(argument: str, names, count: int | None = None) -> list[str]:
    """`names` as a list, if they are `count` distinct valid signature keys."""
    names = [names] if isinstance(names, str) else list(names)
    count = len(names) if count is None else count
    bad = [n for n in names if not isinstance(n, str) or not _NAME.match(n)]
    if len(names) != count or bad or len(set(names)) != len(names):
        raise ValueError(
            f"Invalid value for argument `{argument}`: expected {count} distinct name(s) made of "
            f"letters, digits and '_', starting with a letter. Received: {argument}={names!r}."
        )
    return names


# -- stripping and the sparsity report ----------------------------------------


def _stripped_with_report(target: keras.Model) -> tuple[keras.Model, SparsityReport]:
    if prune_wrappers(target):
        return strip(target), sparsity_report(target)
    # Without wrappers the report counts the exact zeros of the prunable weights.
    return target, sparsity_report(target)


# -- the serving signature ----------------------------------------------------


def _input_specs(model: keras.Model, input_signature) -> list[tf.TensorSpec]:
    if input_signature is not None:
        specs = [input_signature] if isinstance(input_signature, tf.TensorSpec) else list(input_signature)
        if not specs or not all(isinstance(s, tf.TensorSpec) for s in specs):
            raise ValueError(
                "Invalid value for argument `input_signature`: expected a list of `tf.TensorSpec`, one "
                f"per model input. Received: input_signature={input_signature!r}."
            )
        return specs
    if is_graph_model(model):
        names = _given_names(model.inputs)
        if len(names) == 1:
            names = [names[0] or "inputs"]
        names = [name or f"input_{i}" for i, name in enumerate(names)]
        return [tf.TensorSpec(x.shape, x.dtype, name=name) for x, name in zip(model.inputs, names)]
    try:
        specs = keras.tree.flatten(_keras_compat.input_signature(model))
    except (ValueError, TypeError) as error:
        raise ValueError(
            f"Cannot infer the inputs of '{model.name}' ({type(model).__name__}). Pass "
            "`input_signature=[tf.TensorSpec(shape, dtype, name=...)]`. "
            f"Original error: {error}"
        ) from error
    names = ["inputs"] if len(specs) == 1 else [f"input_{i}" for i in range(len(specs))]
    return [tf.TensorSpec(s.shape, s.dtype or "float32", name=name) for s, name in zip(specs, names)]


def _given_names(tensors) -> list[str]:
    """Names of the layers producing `tensors`, `None` where Keras made the name up."""
    names = []
    for tensor in tensors:
        layer = _keras_compat.keras_history_operation(tensor)
        if isinstance(layer, PruneWrapper):
            layer = layer.layer
        # `clone_model` names an unnamed `Input` after its tensor, `keras_tensor_<n>`.
        auto = re.fullmatch(
            rf"({_keras_compat.to_snake_case(type(layer).__name__)}|keras_tensor)(_\d+)?", layer.name
        )
        names.append(None if auto else layer.name)
    return names


def _default_output_names(model: keras.Model) -> list[str] | None:
    if not is_graph_model(model):
        return None
    names = _given_names(model.outputs)
    if len(names) == 1:
        return [names[0] or "outputs"]
    return [name or f"output_{i}" for i, name in enumerate(names)]


def _serving_archive(model, target, input_signature, input_names, output_names) -> keras.export.ExportArchive:
    # The inputs are read from `target`, the model as trained: a stripped subclassed model is
    # rebuilt from its config and does not know how it was called.
    specs = _input_specs(target, input_signature)
    if input_names is None:
        input_names = [s.name or f"input_{i}" for i, s in enumerate(specs)]
    input_names = _check_names("input_names", input_names, len(specs))
    specs = [tf.TensorSpec(s.shape, s.dtype, name=name) for s, name in zip(specs, input_names)]
    default_outputs = _default_output_names(target)
    if output_names is not None:
        output_names = _check_names("output_names", output_names)

    # A graph model takes its inputs in the structure it was built with (a
    # keras_hub backbone: a dict); the signature's are flat, in `model.inputs` order.
    functional = is_graph_model(target) and not isinstance(target, keras.Sequential)
    structure = target.input if functional and len(specs) == len(target.inputs) else None

    def serve(*inputs):
        if structure is not None:
            arguments = keras.tree.pack_sequence_as(structure, list(inputs))
        else:
            arguments = inputs[0] if len(inputs) == 1 else list(inputs)
        outputs = model(arguments, training=False)
        if isinstance(outputs, dict) and output_names is None:
            return dict(zip(_check_names("output_names", list(outputs)), outputs.values()))
        flat = keras.tree.flatten(outputs)
        names = output_names or default_outputs or [f"output_{i}" for i in range(len(flat))]
        names = _check_names("output_names", names, len(flat))
        return dict(zip(names, flat))

    archive = keras.export.ExportArchive()
    archive.add_endpoint("serving_default", serve, input_signature=specs)
    return archive
