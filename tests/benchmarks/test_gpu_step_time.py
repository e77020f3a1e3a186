"""`benchmarks/gpu_step_time.py` runs end to end without a GPU (slow: about 1 min for two variants on 2 cores)."""

import pathlib
import re
import subprocess
import sys

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_step_time.py"


@pytest.mark.slow
def test_quick_run_prints_a_row_per_variant():
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--variants", "float32", "mixed-xla"],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    ).stdout
    rows = re.findall(
        r"^(float32|mixed_float16), (XLA|no XLA) +([\d.]+) +([\d.]+) +([\d.]+)x$", out, re.MULTILINE
    )
    assert [(policy, jit) for policy, jit, *_ in rows] == [("float32", "no XLA"), ("mixed_float16", "XLA")]
    for *_, dense, masked, ratio in rows:
        assert float(dense) > 0 and float(masked) > 0
        assert float(ratio) == pytest.approx(float(masked) / float(dense), abs=2e-3)
