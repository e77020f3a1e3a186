"""`tf.distribute` strategies by name: what `config.run.strategy` selects.

The runner builds the model, its masks and its optimizer inside the chosen
strategy's scope. Batch sizes in the config are global: each step's batch
is split across all replicas, so `steps_per_epoch` and the results do not
depend on the strategy (up to float rounding).

- `"default"`: `tf.distribute.get_strategy()`: one device, or the strategy
  whose scope is open when the runner is called.
- `"mirrored"`: `tf.distribute.MirroredStrategy` over every local GPU, or
  over every logical CPU device when there is none (tests split the CPU in
  two with `tf.config.set_logical_device_configuration`).
- `"multi_worker"`: `tf.distribute.MultiWorkerMirroredStrategy` over the
  workers named by each process's `TF_CONFIG`. TensorFlow accepts it only
  before the process runs its first op, so a program calls
  `make_strategy("multi_worker")` before it loads data or builds a model.
  Every worker runs the same levels and writes the same files: give each
  worker its own `--workdir`. Keras' `fit()` fails under this strategy;
  the trainer drives the model's own train step instead (see `trainer.py`).
- `"tpu"`: `tf.distribute.TPUStrategy` on the TPU named by the `TPU_NAME`
  environment variable, or on the TPU attached to this VM (`"local"`). On a
  machine without a TPU it fails with an error that names the fix. Only that
  path has run here (no TPU was available); on a TPU the runner uses Keras'
  `fit()`, which supports `TPUStrategy`, and keeps `steps_per_execution`.

One strategy of each kind is made per process and reused, as TensorFlow
expects.

Example:

```python
strategy = make_strategy("mirrored")
with strategy.scope():
    model = keras.Sequential([keras.Input((40,)), keras.layers.Dense(10)])
```
"""

from __future__ import annotations

import json
import os
import warnings

import tensorflow as tf

from tf_lottery.experiments.schema import STRATEGIES

_STRATEGIES: dict[str, tf.distribute.Strategy] = {}


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The `tf.distribute.Strategy` named `name` (one per process).

    Args:
        name: str. One of `"default"`, `"mirrored"`, `"multi_worker"`,
            `"tpu"` (`config.run.strategy`).

    Returns:
        A `tf.distribute.Strategy`.

    Raises:
        ValueError: for an unknown name, `"multi_worker"` without a usable
            `TF_CONFIG`, or `"tpu"` on a machine without a TPU.
        RuntimeError: for `"multi_worker"` requested after TensorFlow ran
            its first op in this process.
    """
    if name not in STRATEGIES:
        raise ValueError(
            f"Invalid value for `config.run.strategy`: expected one of {STRATEGIES}. Received: strategy={name!r}."
        )
    if name == "default":
        return tf.distribute.get_strategy()
    if name not in _STRATEGIES:
        _STRATEGIES[name] = {"mirrored": _mirrored, "multi_worker": _multi_worker, "tpu": _tpu}[name]()
    return _STRATEGIES[name]


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    """Whether `strategy` spans worker processes (Keras' `fit()` cannot drive it)."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def _mirrored() -> tf.distribute.Strategy:
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy(devices=[device.name for device in devices])


def _multi_worker() -> tf.distribute.Strategy:
    text = os.environ.get("TF_CONFIG", "")
    try:
        cluster = json.loads(text) if text else None
    except json.JSONDecodeError:
        cluster = None
    if not isinstance(cluster, dict) or "cluster" not in cluster or "task" not in cluster:
        raise ValueError(
            "Invalid value for `config.run.strategy`: 'multi_worker' needs the TF_CONFIG environment "
            "variable of every worker to name the cluster and this worker's task, e.g. "
            'TF_CONFIG=\'{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": '
            f'"worker", "index": 0}}\'. Received: TF_CONFIG={text!r}.'
        )
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except RuntimeError as error:
        if "program startup" not in str(error):
            raise
        raise RuntimeError(
            "`config.run.strategy='multi_worker'` must be set up before TensorFlow runs its first op "
            "in this process: call `tf_lottery.experiments.strategy.make_strategy('multi_worker')` at "
            "program start, before loading data or building models."
        ) from error


def _tpu() -> tf.distribute.Strategy:
    tpu = os.environ.get("TPU_NAME") or "local"
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else "no detail"
        raise ValueError(
            f"Invalid value for `config.run.strategy`: 'tpu' needs a TPU, and none was found at "
            f"tpu={tpu!r} ({type(error).__name__}: {reason}). Run on a Cloud TPU VM, set TPU_NAME to "
            "the TPU to connect to, or choose another strategy: --config.run.strategy=default "
            "(one device) or mirrored (all local GPUs or CPUs)."
        ) from error
    return tf.distribute.TPUStrategy(resolver)


def steps_per_execution(name: str, steps: int) -> int:
    """`steps` (`config.run.steps_per_execution`), or 1 where strategy `name` cannot run more.

    Keras 3.15 with TensorFlow 2.21 fails in `fit()` under `MirroredStrategy`
    with `steps_per_execution > 1`, even for a plain `Dense` model (an
    `InvalidArgumentError` in the step loop's `tf.cond`); the multi-worker
    loop runs one step per call anyway. So mirrored and multi-worker runs use
    1 and warn, which keeps configs tuned for one device usable.
    """
    if steps > 1 and name in ("mirrored", "multi_worker"):
        warnings.warn(
            f"`config.run.steps_per_execution={steps}` is not supported with "
            f"`config.run.strategy={name!r}` in this Keras version; using 1.",
            stacklevel=2,
        )
        return 1
    return steps


def jit_compile(name: str, requested: bool) -> bool:
    """`requested` (`config.run.jit_compile`) for the one-device strategy; False for the others.

    Under `MirroredStrategy` an XLA-compiled step reads variables placed on the
    other replicas' devices, which XLA refuses ("Trying to access resource ...
    located in device ...", TensorFlow's XLA known issue "tf.Variable on a
    different device"); Keras' own `jit_compile="auto"` is off under every
    strategy for that reason. The multi-worker loop runs without XLA, and
    `TPUStrategy` compiles every step with XLA anyway.
    """
    return bool(requested) and name == "default"
