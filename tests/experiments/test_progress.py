"""RunProgress: one bar over the whole run, an ETA from the steps trained, log lines kept whole."""

import io

import pytest

from tf_lottery.experiments.progress import RunProgress, of


class _Terminal(io.StringIO):
    def isatty(self):
        return True


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _bar(mode="auto", stream=None):
    clock, lines = _Clock(), []
    bar = RunProgress(mode, stream=stream or _Terminal(), print_line=lines.append, interval=0, clock=clock)
    return bar, clock, lines


def test_eta_counts_only_trained_steps_and_the_whole_run():
    bar, clock, _ = _bar()
    bar.add(1000)
    bar.advance(400, trained=False)  # levels found finished: done, but not part of the speed
    assert bar.eta() is None
    clock.now = 10.0
    bar.advance(100)
    assert bar.eta() == pytest.approx(500 * 10.0 / 100)
    assert "50.0%" in bar.text() and "500/1,000 steps" in bar.text() and "ETA 0m50s" in bar.text()


def test_log_lines_go_out_whole_and_the_bar_is_redrawn_after_them():
    bar, clock, lines = _bar()
    bar.add(10)
    bar.advance(5)
    bar("round 1 done")
    written = bar.stream.getvalue()
    assert lines == ["round 1 done"]
    assert written.count("\r\x1b[K") >= 1 and written.endswith("\x1b[K") and "50.0%" in written
    bar.close()
    assert bar.stream.getvalue().endswith("\r\x1b[K")


def test_auto_draws_nothing_unless_stderr_is_a_terminal():
    stream = io.StringIO()
    bar, _, lines = _bar(stream=stream)
    bar.add(10)
    bar.advance(10)
    bar("a line")
    assert stream.getvalue() == "" and lines == ["a line"]


def test_on_without_a_terminal_writes_whole_lines_and_off_writes_nothing():
    stream = io.StringIO()
    bar, _, _ = _bar("on", stream)
    bar.add(4)
    bar.advance(1)
    bar.advance(3)
    assert stream.getvalue().splitlines()[-1].startswith("progress: [") and "\r" not in stream.getvalue()
    quiet, _, _ = _bar("off")
    quiet.add(4)
    quiet.advance(4)
    assert quiet.stream.getvalue() == ""


def test_bad_mode_is_named():
    with pytest.raises(
        ValueError, match=r"`mode`: expected one of \('auto', 'on', 'off'\). Received: mode='yes'"
    ):
        RunProgress("yes")


def test_a_plain_log_gets_a_silent_tracker():
    tracker = of(print)
    tracker.add(3)
    tracker.advance(3)
    bar, _, _ = _bar()
    assert of(bar) is bar
