"""TensorFlow's C++ start-up lines are dropped from stderr; everything else passes unchanged."""

import os
import subprocess
import sys

import pytest

from tf_lottery.cli import stderr_filter

# Written by TensorFlow 2.21 on a CPU machine with TF_CPP_MIN_LOG_LEVEL=2 (logged before absl's init).
NOISE = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796085818.144414    2470 port.cc:153] oneDNN custom operations are on. You may see "
    "slightly different numerical results due to floating-point round-off errors from different "
    "computation orders. To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.",
    "I0000 00:00:1796085818.144792    2470 cudart_stub.cc:31] Could not find cuda drivers on your "
    "machine, GPU will not be used.",
    "I0000 00:00:1796085765.963516    1516 cpu_feature_guard.cc:227] This TensorFlow binary is optimized "
    "to use available CPU instructions in performance-critical operations.",
    "To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild TensorFlow "
    "with the appropriate compiler flags.",
    "E0000 00:00:1796085820.919401    2470 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA "
    "error: Failed call to cuInit: UNKNOWN ERROR (303)",
    # TensorFlow 2.16 (the oldest supported) logs through TSL, with another prefix.
    "2026-12-01 01:50:52.980682: I tensorflow/core/util/port.cc:113] oneDNN custom operations are on.",
    "2026-12-01 01:50:52.981465: I external/local_tsl/tsl/cuda/cudart_stub.cc:32] Could not find cuda "
    "drivers on your machine, GPU will not be used.",
    "2026-12-01 01:50:53.018052: E external/local_xla/xla/stream_executor/cuda/cuda_fft.cc:479] Unable "
    "to register cuFFT factory: Attempting to register factory for plugin cuFFT when one has already "
    "been registered",
    "2026-12-01 01:50:56.280623: W tensorflow/compiler/tf2tensorrt/utils/py_utils.cc:38] TF-TRT "
    "Warning: Could not find TensorRT",
]
KEPT = [
    "E0000 00:00:1796085820.919401    2470 tensor_slice_reader.cc:98] Could not open ckpt: NOT_FOUND",
    "2026-12-01 01:50:53.018052: E tensorflow/core/util/tensor_slice_reader.cc:98] Could not open ckpt",
    "Traceback (most recent call last):",
    "tf_lottery: error: Unknown config key `config.train.epochs`.",
    "UserWarning: fit(epochs=3) is fewer than rounds * epochs_per_round = 4",
]


@pytest.mark.parametrize("line", NOISE)
def test_start_up_lines_are_noise(line):
    assert stderr_filter.is_noise(line)


@pytest.mark.parametrize("line", KEPT)
def test_errors_and_messages_are_kept(line):
    assert not stderr_filter.is_noise(line)


def test_the_filter_drops_noise_written_to_fd_2_and_keeps_the_rest():
    # The module is loaded from its file: importing the package would load TensorFlow, noise and all.
    program = (
        "import importlib.util, os, sys\n"
        f"spec = importlib.util.spec_from_file_location('stderr_filter', {stderr_filter.__file__!r})\n"
        "stderr_filter = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(stderr_filter)\n"
        f"lines = {NOISE + KEPT!r}\n"
        "with stderr_filter.without_startup_noise():\n"
        "    for line in lines:\n"
        "        os.write(2, (line + '\\n').encode())\n"
        "    os.write(2, b'\\r[###] 50%')\n"  # a progress bar's partial line passes at once
        "    print('python', file=sys.stderr)\n"
        "os.write(2, (lines[1] + '\\n').encode())\n"  # after the block: untouched
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    kept = result.stderr.decode().split("\n")  # bytes: text mode would turn "\r" into "\n"
    assert kept[: len(KEPT)] == KEPT
    assert kept[len(KEPT)] == "\r[###] 50%python"
    assert kept[len(KEPT) + 1] == NOISE[1]
