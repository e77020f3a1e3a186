"""Files that are whole or absent, on local disk and on any `tf.io.gfile` path.

Every write goes to a temporary file beside its target
(`.<name>.<host>-<pid>-<random>.tmp`, naming its writer)
and is then renamed onto it, so a reader, or a run resumed after a crash, sees
the old content or the complete new one, never a half-written file. Local
paths use the OS (the data and the directory are fsync'ed; the file gets the
permissions `open()` would give it). Other paths (`gs://`, `ram://`, ...) use
`tf.io.gfile`; on an object store an object appears complete or not at all.

`overwrite=False` makes a write "first finished wins": when the target
already exists at the moment of the rename, the new temporary file is
discarded and the write returns `False`. Locally this is atomic (a hard link
cannot replace a file); through `tf.io.gfile` it is atomic between threads of
one process, but between processes the existence check and the rename are two
steps, and two writers finishing within that window can both rename.

The readers (`exists`, `read_json`, `load_npz`, ...) take the same paths, so
code that uses only this module runs unchanged on a shared `gs://` workdir.
Errors of `tf.io.gfile` are raised as the matching `OSError`
(`FileNotFoundError`, `PermissionError`, ...), as on local disk. A file that
exists but cannot be parsed (truncated, garbled, or holding another JSON type
than expected) raises one `DamagedFileError` that names it; code that knows
what the file is for adds the fix with `DamagedFileError.with_fix`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import posixpath
import re
import secrets
import socket
import tempfile
import threading
import time
import zipfile
import zlib

import numpy as np
import tensorflow as tf

from tf_lottery.utils import failpoints

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# Who writes a temporary file: this machine (a short hash of its name) and process.
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
_WRITER = re.compile(r"\.(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-[^.]*\.tmp$")
# A temporary file of another machine is taken as abandoned after this long.
STALE_AFTER_S = 3600.0
# Serialises check-then-rename of `overwrite=False` writes through gfile, so
# threads of one process never both win.
_GFILE_RENAME_LOCK = threading.Lock()


class DamagedFileError(ValueError):
    """A stored file that exists but cannot be read back: truncated, garbled or of another kind.

    Attributes:
        path: str. The file.
        reason: str. What is wrong with it (the low-level error).
        fix: str. What to do about it; set by the code that knows what the
            file is for (see `with_fix`).
    """

    def __init__(self, path: str, reason: str, fix: str = ""):
        self.path, self.reason, self.fix = os.fspath(path), reason.rstrip("."), fix
        super().__init__(f"Cannot read '{self.path}': {self.reason}." + (f" {fix}" if fix else ""))

    def with_fix(self, fix: str) -> DamagedFileError:
        """The same error with `fix` as what to do (raise it `from` this one)."""
        return DamagedFileError(self.path, self.reason, fix)


# What parsing a damaged .npz archive can raise, besides ValueError (found by truncating
# and overwriting bytes of archives). OSErrors are I/O errors (a missing file, a full
# disk), not damage, except EINVAL: a seek that a garbled offset sends before the start.
_PARSE_ERRORS = (
    ValueError,
    zipfile.BadZipFile,
    EOFError,
    KeyError,
    zlib.error,
    NotImplementedError,
    RuntimeError,
)
_JSON_TYPES = {dict: "a JSON object", list: "a JSON array", str: "a JSON string"}


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def is_local(path: str | os.PathLike) -> bool:
    """Whether `path` is a local file name (not a `scheme://` URL)."""
    return not _SCHEME.match(os.fspath(path))


@contextlib.contextmanager
def _os_errors(path: str):
    """Raises the errors of `tf.io.gfile` as the `OSError` local disk would raise."""
    try:
        yield
    except tf.errors.OpError as error:
        kinds = {
            tf.errors.NotFoundError: (FileNotFoundError, errno.ENOENT),
            tf.errors.AlreadyExistsError: (FileExistsError, errno.EEXIST),
            tf.errors.PermissionDeniedError: (PermissionError, errno.EACCES),
        }
        kind, code = kinds.get(type(error), (OSError, errno.EIO))
        raise kind(code, error.message or os.strerror(code), path) from error


class _Outcome:
    written = False


@contextlib.contextmanager
def _staged(path: str, mode: str, overwrite: bool):
    """Yields `(handle, outcome)`; on success renames the temporary file onto `path`."""
    path = os.fspath(path)
    outcome = _Outcome()
    if is_local(path):
        staged = _staged_local(path, mode, overwrite, outcome)
    else:
        staged = _staged_gfile(path, mode, overwrite, outcome)
    with staged as handle:
        yield handle, outcome


@contextlib.contextmanager
def _staged_local(path: str, mode: str, overwrite: bool, outcome: _Outcome):
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"Cannot write '{path}': the directory '{directory}' does not exist. Create it first."
        )
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.{_owner()}-", suffix=".tmp", dir=directory)
    # mkstemp creates the file 0600; give it the permissions open() would.
    os.chmod(tmp, 0o666 & ~_UMASK)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            failpoints.reach("atomic_write", os.path.basename(path))
            os.fsync(handle.fileno())
        outcome.written = _place_local(tmp, path, overwrite)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)


def _place_local(tmp: str, path: str, overwrite: bool) -> bool:
    if overwrite:
        os.replace(tmp, path)
        return True
    try:
        os.link(tmp, path)  # never replaces an existing file: first finished wins
    except FileExistsError:
        os.unlink(tmp)
        return False
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        # No hard links on this filesystem (some FUSE and SMB mounts): check,
        # then rename; two writers can still race in between.
        if os.path.exists(path):
            os.unlink(tmp)
            return False
        os.replace(tmp, path)
        return True
    os.unlink(tmp)
    return True


@contextlib.contextmanager
def _staged_gfile(path: str, mode: str, overwrite: bool, outcome: _Outcome):
    directory, name = posixpath.split(path)
    tmp = posixpath.join(directory, f".{name}.{_owner()}-{secrets.token_hex(4)}.tmp")
    try:
        with _os_errors(path):
            with tf.io.gfile.GFile(tmp, mode) as handle:
                yield handle
                handle.flush()
                failpoints.reach("atomic_write", name)
            outcome.written = _place_gfile(tmp, path, overwrite)
    except BaseException:
        with contextlib.suppress(tf.errors.OpError):
            tf.io.gfile.remove(tmp)
        raise


def _place_gfile(tmp: str, path: str, overwrite: bool) -> bool:
    if overwrite:
        tf.io.gfile.rename(tmp, path, overwrite=True)
        return True
    with _GFILE_RENAME_LOCK:
        try:
            tf.io.gfile.rename(tmp, path, overwrite=False)
        except tf.errors.AlreadyExistsError:
            tf.io.gfile.remove(tmp)
            return False
    return True


def _fsync_directory(directory: str) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "wb"):
    """Opens a temporary file beside `path`; renames it onto `path` on success.

    Locally the data is flushed and fsync'ed before the rename, and the
    directory after it, so `path` holds either the old content or the complete
    new one. On any error the temporary file is removed and `path` is left
    untouched. Local writes need `path`'s directory to exist.

    Args:
        path: str. A local path or any `tf.io.gfile` path (`gs://...`).
        mode: str. `"wb"` or `"w"`. Defaults to `"wb"`.
    """
    with _staged(path, mode, overwrite=True) as (handle, _):
        yield handle


def write_bytes(path: str, data: bytes, *, overwrite: bool = True) -> bool:
    """Writes `data` to `path` atomically.

    Args:
        path: str. A local path or any `tf.io.gfile` path.
        data: bytes. The whole content.
        overwrite: bool. Replace an existing `path`. With `False`, an existing
            `path` is kept and this write is discarded (first finished wins).
            Defaults to `True`.

    Returns:
        Whether this call wrote `path` (always `True` with `overwrite=True`).
    """
    with _staged(path, "wb", overwrite) as (handle, outcome):
        handle.write(data)
    return outcome.written


def write_text(path: str, text: str, *, overwrite: bool = True) -> bool:
    """Writes `text` (UTF-8) to `path` atomically; see `write_bytes`."""
    return write_bytes(path, text.encode("utf-8"), overwrite=overwrite)


def write_json(path: str, data, *, overwrite: bool = True) -> bool:
    """Writes `data` as indented, key-sorted JSON atomically; see `write_bytes`."""
    return write_text(path, json.dumps(data, indent=2, sort_keys=True), overwrite=overwrite)


def write_npz(path: str, arrays: dict, *, overwrite: bool = True) -> bool:
    """Writes arrays (no object arrays: loadable with `allow_pickle=False`); see `write_bytes`."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return write_bytes(path, buffer.getvalue(), overwrite=overwrite)


# -- reading and listing -------------------------------------------------------


def exists(path: str) -> bool:
    path = os.fspath(path)
    return os.path.exists(path) if is_local(path) else tf.io.gfile.exists(path)


def isdir(path: str) -> bool:
    path = os.fspath(path)
    return os.path.isdir(path) if is_local(path) else tf.io.gfile.isdir(path)


def isfile(path: str) -> bool:
    path = os.fspath(path)
    if is_local(path):
        return os.path.isfile(path)
    return tf.io.gfile.exists(path) and not tf.io.gfile.isdir(path)


def makedirs(path: str) -> None:
    """Creates `path` and its parents; an existing directory is fine."""
    path = os.fspath(path)
    if is_local(path):
        os.makedirs(path, exist_ok=True)
    else:
        with _os_errors(path):
            tf.io.gfile.makedirs(path)


def listdir(path: str) -> list[str]:
    """Names of the entries of directory `path`, sorted."""
    path = os.fspath(path)
    if is_local(path):
        return sorted(os.listdir(path))
    with _os_errors(path):
        return sorted(name.rstrip("/") for name in tf.io.gfile.listdir(path))


def walk(root: str):
    """Like `os.walk(root)`: yields `(directory, subdirectory names, file names)`."""
    root = os.fspath(root)
    if is_local(root):
        yield from os.walk(root)
    else:
        for directory, subdirectories, files in tf.io.gfile.walk(root):
            yield directory, [d.rstrip("/") for d in subdirectories], files


def read_bytes(path: str) -> bytes:
    path = os.fspath(path)
    if is_local(path):
        with open(path, "rb") as handle:
            return handle.read()
    with _os_errors(path), tf.io.gfile.GFile(path, "rb") as handle:
        return handle.read()


def read_text(path: str) -> str:
    return read_bytes(path).decode("utf-8")


def read_json(path: str, expect: type | None = None):
    """The JSON value stored in `path`.

    Args:
        path: str. A local path or any `tf.io.gfile` path.
        expect: type or None. `dict`, `list` or `str`: the JSON type the
            file must hold. Defaults to `None` (any).

    Raises:
        DamagedFileError: `path` is not UTF-8 JSON (truncated or garbled),
            or holds another type than `expect`.
        FileNotFoundError, OSError: `path` cannot be read.
    """
    path = os.fspath(path)
    data = read_bytes(path)
    try:
        value = json.loads(data.decode("utf-8"))
    except ValueError as error:
        raise DamagedFileError(path, f"not readable JSON (truncated or garbled): {error}") from None
    return checked_json(value, path, expect)


def checked_json(value, path: str, expect: type | None, what: str = "it"):
    """`value` if it is of JSON type `expect`; else a `DamagedFileError` naming `path`."""
    if expect is not None and not isinstance(value, expect):
        found = _JSON_TYPES.get(type(value), f"a JSON {type(value).__name__}")
        raise DamagedFileError(path, f"{what} holds {found}, expected {_JSON_TYPES[expect]}")
    return value


def load_npz(path: str) -> dict[str, np.ndarray]:
    """Every array of the `.npz` file `path`, read with `allow_pickle=False`.

    Raises:
        DamagedFileError: `path` is not an `.npz` archive (truncated,
            garbled, a single array), or holds object arrays.
        FileNotFoundError, OSError: `path` cannot be read.
    """
    path = os.fspath(path)
    with contextlib.ExitStack() as stack:
        if is_local(path):
            source = stack.enter_context(open(path, "rb"))
        else:
            source = io.BytesIO(read_bytes(path))
        try:
            start = source.read(4)
            source.seek(0)
            if not start.startswith(b"PK"):
                # np.load would take it for pickled data and suggest `allow_pickle`.
                raise ValueError("the file is empty" if not start else "it does not start as a zip archive")
            archive = np.load(source, allow_pickle=False)
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise ValueError("it holds a single array, not an .npz archive")
            with archive:
                # Reading each array to its end checks the archive's CRC-32 of it.
                return {key: archive[key] for key in archive.files}
        except (*_PARSE_ERRORS, OSError) as error:
            if isinstance(error, OSError) and error.errno != errno.EINVAL:
                raise
            reason = f"not a readable .npz archive (truncated or garbled): {error}"
            raise DamagedFileError(path, reason) from None


def json_entry(arrays: dict, key: str, path: str, expect: type | None = dict):
    """The JSON value that `json_array` stored as `arrays[key]` of the `.npz` file `path`.

    Raises:
        DamagedFileError: the entry is missing, not UTF-8 JSON, or not of
            JSON type `expect` (default: an object).
    """
    if key not in arrays:
        raise DamagedFileError(path, f"its entry {key!r} is missing")
    try:
        value = array_json(arrays[key])
    except ValueError as error:
        raise DamagedFileError(path, f"its entry {key!r} is not readable JSON: {error}") from None
    return checked_json(value, path, expect, f"its entry {key!r}")


def remove(path: str) -> None:
    """Deletes the file `path`; a missing one is fine."""
    path = os.fspath(path)
    if is_local(path):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    else:
        with contextlib.suppress(tf.errors.NotFoundError):
            tf.io.gfile.remove(path)


def _owner() -> str:
    return f"{_HOST}-{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _abandoned(path: str, name: str) -> bool:
    """Whether the temporary file `name` belongs to no write in progress."""
    writer = _WRITER.search(name)
    if writer is None:
        return True  # not written by this module's current naming
    if writer["host"] == _HOST:
        return not _alive(int(writer["pid"]))
    # Another machine's write: its process cannot be asked; go by age.
    try:
        mtime = os.stat(path).st_mtime if is_local(path) else tf.io.gfile.stat(path).mtime_nsec / 1e9
    except (OSError, tf.errors.OpError):
        return False
    return time.time() - mtime > STALE_AFTER_S


def remove_temporaries(root: str) -> int:
    """Deletes the temporary files that killed writes left under `root`.

    They are never read (an artifact is only its renamed, complete file);
    returns how many were removed. A temporary file names its writer: one of
    a process of this machine that is still running (a write in progress,
    e.g. another process sharing the workdir) is kept; one of another machine
    is removed once older than `STALE_AFTER_S`.
    """
    root = os.fspath(root)
    removed = 0
    for directory, _, files in walk(root):
        for name in files:
            if name.startswith(".") and name.endswith(".tmp"):
                path = os.path.join(directory, name)
                if not _abandoned(path, name):
                    continue
                if is_local(path):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
                        removed += 1
                else:
                    with contextlib.suppress(tf.errors.NotFoundError):
                        tf.io.gfile.remove(path)
                        removed += 1
    return removed


def json_array(data) -> np.ndarray:
    """Encodes JSON-serialisable `data` as a uint8 array for an npz file."""
    return np.frombuffer(json.dumps(data, sort_keys=True).encode("utf-8"), dtype=np.uint8)


def array_json(array: np.ndarray):
    return json.loads(np.asarray(array, dtype=np.uint8).tobytes().decode("utf-8"))
