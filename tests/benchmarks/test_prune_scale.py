"""`benchmarks/prune_scale.py` runs and prints a row per size (its smallest size only: a few seconds)."""

import pathlib
import re
import subprocess
import sys

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "prune_scale.py"


def test_smallest_size_prints_time_and_both_memory_peaks():
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--sizes", "1", "--rounds", "1"],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout
    (row,) = re.findall(
        r"^ +1,081,344 +[\d.]+ +([\d.]+) +[\d.]+ +(n/a|[\d.]+x) +([\d.]+)x$", out, re.MULTILINE
    )
    seconds, _, numpy_peak = row
    assert float(seconds) > 0
    # The pruner's own arrays: the masks read, the new masks and one buffer of alive scores.
    assert 0 < float(numpy_peak) <= 1.5
