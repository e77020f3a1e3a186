"""Test session set-up: two logical CPU devices, so `MirroredStrategy` tests
run with 2 real replicas on a CPU-only machine. Must run before TensorFlow
initialises its devices (before any op)."""

import gc
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )
except RuntimeError:  # devices already initialised by an earlier import
    pass


import pytest  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def _long_lived_objects_frozen():
    """Each module starts with what the session holds moved out of the collector's sight.

    `keras.backend.clear_session()`, which every `TestCase` test calls twice, runs a full
    `gc.collect()`; so does Python on its own now and then. A full collection walks every
    tracked object, ~370,000 once TensorFlow, Keras and the package are imported: 0.2-0.5 s
    a call on the 2-core machine, about a second per test. Frozen objects are skipped (their
    reference counts still free them). Each module unfreezes, collects what the previous
    one left (its module fixtures included) and freezes the rest, so nothing stays
    uncollectable beyond a module.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    yield


# Whether the running test keeps the runner's XLA default (it is marked `xla`).
_KEEP_XLA = [False]


@pytest.fixture(scope="session", autouse=True)
def _experiments_compile_without_xla():
    """In-process runner tests compile their seconds-long runs without XLA.

    XLA's compile time is most of such a run (measured: test_level_loop.py and
    test_lottery_kind.py take 113 s with XLA, 67 s without). The default path
    is still tested with XLA: by tests marked `xla` (tests/experiments/test_xla.py)
    and by the tests that run the command line in a subprocess (tests/cli, the
    lottery chain of tests/test_faults.py), which this fixture does not reach. Session-scoped,
    so that module-scoped reference runs (e.g. a finished run a resume is
    compared with) train the same way as the tests that use them.
    """
    try:
        from tf_lottery.experiments import xla
    except ImportError:  # the core install, without the experiments extra
        yield
        return
    apply = xla.apply
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(xla, "apply", lambda model, requested: apply(model, requested and _KEEP_XLA[0]))
        yield


@pytest.fixture(autouse=True)
def _xla_marker(request):
    _KEEP_XLA[0] = request.node.get_closest_marker("xla") is not None
    yield
    _KEEP_XLA[0] = False
