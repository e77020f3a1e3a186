"""Writing files so that a crash never leaves a half-written one behind."""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile

import numpy as np

from tf_lottery.utils import failpoints


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "wb"):
    """Opens a temporary file beside `path`; renames it onto `path` on success.

    The data is flushed and fsync'ed before the rename, and the directory
    after it, so `path` holds either the old content or the complete new one.
    On any error the temporary file is removed and `path` is left untouched.
    """
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"Cannot write '{path}': the directory '{directory}' does not exist. Create it first."
        )
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    # mkstemp creates the file 0600; give it the permissions open() would.
    os.chmod(tmp, 0o666 & ~_UMASK)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            failpoints.reach("atomic_write", os.path.basename(path))
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)


def remove_temporaries(root: str) -> int:
    """Deletes the temporary files that killed writes left under `root`.

    They are never read (an artifact is only its renamed, complete file);
    returns how many were removed.
    """
    removed = 0
    for directory, _, files in os.walk(root):
        for name in files:
            if name.startswith(".") and name.endswith(".tmp"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(directory, name))
                    removed += 1
    return removed


def _fsync_directory(directory: str) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_json(path: str, data) -> None:
    with atomic_open(path, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)


def write_npz(path: str, arrays: dict) -> None:
    """Writes arrays (no object arrays: loadable with `allow_pickle=False`)."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    with atomic_open(path, "wb") as handle:
        handle.write(buffer.getvalue())


def json_array(data) -> np.ndarray:
    """Encodes JSON-serialisable `data` as a uint8 array for an npz file."""
    return np.frombuffer(json.dumps(data, sort_keys=True).encode("utf-8"), dtype=np.uint8)


def array_json(array: np.ndarray):
    return json.loads(np.asarray(array, dtype=np.uint8).tobytes().decode("utf-8"))
