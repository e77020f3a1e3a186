"""Keeps TensorFlow's C++ start-up lines off the terminal.

TensorFlow 2.21 writes, on every start, lines such as `oneDNN custom
operations are on`, `Could not find cuda drivers`, `cpu_feature_guard ...
rebuild TensorFlow with the appropriate compiler flags` and `failed call to
cuInit`. They are logged by C++ before `absl::InitializeLog()` runs, so
`TF_CPP_MIN_LOG_LEVEL` does not hide them. The command line (not the
library) therefore reads file descriptor 2 through a pipe while it runs and
passes on every line except those: Python's warnings, tracebacks and error
messages, and every other C++ error, are written unchanged.

File descriptor 2 belongs to the whole process, so the filter does too: one
at a time, entered by `tf_lottery.cli.command.run` only.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading

# A C++ log line up to its level letter: absl's "I0000 00:00:1796085818.144414    2470 port.cc:153] "
# (TensorFlow 2.18+) or TSL's "2026-12-01 01:50:52.980682: I tensorflow/core/util/port.cc:113] "
# (TensorFlow 2.16, 2.17).
_ABSL = r"(?P<absl>[IWE])\d{4} [\d:.]+\s+\d+ "
_TSL = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: (?P<tsl>[IWE]) "
_SOURCE = r"(?:[\w.-]+/)*(?P<file>[\w.]+)\.cc:\d+\] "
# Errors that only mean "no GPU here": CUDA's driver probe on a CPU machine.
_PROBES = ("cuda_platform", "cuda_executor", "cuda_diagnostics", "cuda_dnn", "cuda_fft", "cuda_blas")
_CPP_LINE = re.compile(rf"(?:{_ABSL}|{_TSL}){_SOURCE}")
_OTHER_NOISE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$"
    r"|To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler flags\.$"
)
# The start of a line that may turn out to be noise once the rest of it arrives.
_MAYBE_NOISE = re.compile(r"(?:[IWE]\d|\d{4}-\d\d-|WARNING: All log|To enable)")

# While the filter runs: the terminal's stderr, written past the filter.
_terminal = None


def is_noise(line: str) -> bool:
    """Whether `line` (without its newline) is one of TensorFlow's start-up lines.

    Those are C++ info and warning lines (TensorFlow logs them only before its
    logging honours `TF_CPP_MIN_LOG_LEVEL`), CUDA's probe errors, and two
    banner lines.
    """
    cpp = _CPP_LINE.match(line)
    if cpp is not None:
        level = cpp.group("absl") or cpp.group("tsl")
        return level in "IW" or cpp.group("file") in _PROBES
    return _OTHER_NOISE.match(line) is not None


def terminal():
    """The process's real stderr as a text stream, past the filter (`sys.stderr` when none runs).

    For what must reach the terminal as it is written, such as a progress bar's
    in-place updates, and to ask whether stderr is a terminal at all.
    """
    return sys.stderr if _terminal is None else _terminal


def _copy(source: int, target: int) -> None:
    pending = b""
    while True:
        chunk = os.read(source, 65536)
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        out = [line + b"\n" for line in lines if not is_noise(line.decode("utf-8", "replace"))]
        # A partial line (a progress bar's "\r" update, a prompt) goes out at once.
        if pending and not _MAYBE_NOISE.match(pending.decode("utf-8", "replace")):
            out.append(pending)
            pending = b""
        if out:
            os.write(target, b"".join(out))
    if pending and not is_noise(pending.decode("utf-8", "replace")):
        os.write(target, pending)


@contextlib.contextmanager
def without_startup_noise(enabled: bool = True):
    """Within the block, TensorFlow's start-up lines written to fd 2 are dropped.

    Args:
        enabled: bool. `False` leaves stderr alone (for `--verbosity=1`).
            Defaults to `True`.
    """
    global _terminal
    if not enabled or _terminal is not None:
        yield
        return
    sys.stderr.flush()
    original = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    copier = threading.Thread(target=_copy, args=(read_end, original), daemon=True)
    copier.start()
    _terminal = open(os.dup(original), "w", buffering=1)  # noqa: SIM115 - closed below
    try:
        yield
    finally:
        sys.stderr.flush()
        _terminal.close()
        _terminal = None
        os.dup2(original, 2)  # closes the pipe's write end: the copier reads to the end and stops
        copier.join(timeout=5)
        if not copier.is_alive():  # else a child process still holds the pipe; leave it to the copier
            os.close(read_end)
        os.close(original)
