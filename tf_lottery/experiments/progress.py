"""`RunProgress`: one progress bar, with an ETA, over a whole experiment run.

The run's work is every data step of every level of every line and branch
of every replicate that still has to run (`Replicate.planned_steps`).
Levels found finished, and the part of a level restored from its
checkpoint, count as done but not towards the speed the ETA is computed
from.

A `RunProgress` is also the run's `log`: it takes the bar off the terminal,
prints the line to stdout and draws the bar again, so log lines (what tests
and scripts read) are never mixed with it. The bar goes to stderr, and by
default only when that is a terminal.

Example:

```python
from tf_lottery.experiments import registry
from tf_lottery.experiments.progress import RunProgress

with RunProgress() as log:
    registry.run(config, "/tmp/runs", log=log)
```
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

MODES = ("auto", "on", "off")
_WIDTH = 24


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


class RunProgress:
    """A progress bar over a whole run that is also its `log`.

    Args:
        mode: str. `"auto"` (a bar redrawn in place when `stream` is a
            terminal, nothing otherwise), `"on"` (also when it is not: one
            line every `interval` seconds) or `"off"`. Defaults to `"auto"`.
        stream: Text stream for the bar. Defaults to `sys.stderr`.
        print_line: Callable taking a str: where log lines go. Defaults to
            printing to stdout.
        interval: float. Seconds between redraws. Defaults to `0.5` on a
            terminal, `30` otherwise.
        clock: Callable returning seconds. Defaults to `time.monotonic`.
    """

    def __init__(
        self,
        mode: str = "auto",
        stream=None,
        print_line: Callable[[str], None] | None = None,
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        if mode not in MODES:
            raise ValueError(
                f"Invalid value for argument `mode`: expected one of {MODES}. Received: mode={mode!r}."
            )
        self.stream = sys.stderr if stream is None else stream
        is_terminal = bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled = mode == "on" or (mode == "auto" and is_terminal)
        self.in_place = is_terminal
        self.interval = interval if interval is not None else (0.5 if is_terminal else 30.0)
        self._print_line = print_line or (lambda line: print(line, flush=True))
        self._clock = clock
        self.total = 0
        self.done = 0
        self.trained = 0
        self._began: float | None = None
        self._drawn_at = -float("inf")
        self._shown = False

    # -- the log ------------------------------------------------------------

    def __call__(self, line: str) -> None:
        self._clear()
        self._print_line(line)
        self._draw(force=True)

    # -- the work -----------------------------------------------------------

    def add(self, steps: int) -> None:
        """Adds `steps` data steps to the run's work; the ETA's clock starts at the first call."""
        if self._began is None:
            self._began = self._clock()
        self.total += int(steps)

    def advance(self, steps: int, trained: bool = True) -> None:
        """Counts `steps` data steps as done; `trained=False` for work found done (resumed)."""
        self.done += int(steps)
        if trained:
            self.trained += int(steps)
        self._draw()

    def eta(self) -> float | None:
        """Seconds left at the speed of the steps trained so far (None before any)."""
        if not self.trained or self._began is None:
            return None
        elapsed = self._clock() - self._began
        return max(0, self.total - self.done) * elapsed / self.trained

    def text(self) -> str:
        """The bar as one line of text."""
        fraction = min(1.0, self.done / self.total) if self.total else 0.0
        filled = int(fraction * _WIDTH)
        eta = self.eta()
        return (
            f"[{'#' * filled}{'.' * (_WIDTH - filled)}] {100 * fraction:5.1f}%  "
            f"{self.done:,}/{self.total:,} steps  ETA {'--' if eta is None else _duration(eta)}"
        )

    def close(self) -> None:
        """Takes the bar off the terminal."""
        self._clear()

    def __enter__(self) -> RunProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- drawing ------------------------------------------------------------

    def _draw(self, force: bool = False) -> None:
        if not self.enabled or not self.total:
            return
        now = self._clock()
        if not force and now - self._drawn_at < self.interval:
            return
        if self.in_place:
            self.stream.write("\r" + self.text() + "\x1b[K")
            self._shown = True
        elif not force:
            self.stream.write("progress: " + self.text() + "\n")
        else:
            return
        self.stream.flush()
        self._drawn_at = now

    def _clear(self) -> None:
        if self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._shown = False


class _NoProgress:
    def add(self, steps: int) -> None:
        pass

    def advance(self, steps: int, trained: bool = True) -> None:
        pass


def of(log) -> RunProgress | _NoProgress:
    """The `RunProgress` a run reports to: `log` itself if it is one, else one that ignores it all."""
    return log if isinstance(log, RunProgress) else _NoProgress()
