"""Installs tf_lottery: lottery-ticket pruning for Keras 3 / TensorFlow."""

import pathlib
import re

from setuptools import find_packages, setup

_HERE = pathlib.Path(__file__).parent
_VERSION = re.search(
    r'^__version__ = "([^"]+)"',
    (_HERE / "tf_lottery" / "version.py").read_text(),
    re.M,
).group(1)

# The experiment runner (`python -m tf_lottery.main`, the `tf_lottery` command).
_EXPERIMENTS = [
    "absl-py",
    "ml-collections",
    "tensorflow-datasets",
    # etils (tfds) 1.15 imports it for data_dir access without declaring it.
    "importlib_resources",
    "mnist1d",
    "matplotlib",
    # tf.summary (LotterySummaries, keras.callbacks.TensorBoard) needs it; TF 2.21 no longer installs it.
    "tensorboard",
]
# benchmarks/vs_tfmot.py: tfmot prunes Keras 2 models only, so it brings tf_keras.
_BENCH = ["tensorflow-model-optimization", "tf_keras"]
# The tests run the experiments too; pdoc builds the API reference (.ci/run, docs/build_api.py --output DIR).
# keras-hub: tests/core/test_keras_hub.py prunes small BERT, GPT-2 and Gemma configs.
_TEST = [
    "pytest",
    "pytest-xdist",
    "ruff",
    "nbclient",
    "nbformat",
    "ipykernel",
    "pdoc",
    "keras-hub",
    *_EXPERIMENTS,
]
_EXTRAS = {
    "experiments": _EXPERIMENTS,
    "bench": _BENCH,
    "test": _TEST,
    "all": sorted(set(_EXPERIMENTS + _BENCH + _TEST)),
}

setup(
    name="tf_lottery",
    version=_VERSION,
    description="Find, train and ship sparse lottery tickets with Keras 3.",
    long_description=(_HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    # configs/ (the paper setups, top level in a checkout) ships inside the wheel as
    # tf_lottery/configs/, so `tf_lottery --config=lenet_mnist` finds it after a pip install
    # (tf_lottery.cli.usage.config_folders looks in both places).
    packages=[*find_packages(include=["tf_lottery", "tf_lottery.*"]), "tf_lottery.configs"],
    package_dir={"tf_lottery.configs": "configs"},
    python_requires=">=3.11",
    # The Keras library alone: TensorFlow (any release that ships Keras 3) and
    # Keras 3.12.0+ (the first with `keras.distillation`). The oldest pair,
    # tensorflow==2.16.2 with keras==3.12.0, is what .ci/run tests on the library's
    # tests (OLDEST_TF / OLDEST_KERAS there); the full suite runs on the newest pair.
    install_requires=[
        "tensorflow>=2.16.2",
        # Capped below the next minor: the masks rest on Keras internals that
        # tf_lottery.core.masked_variable checks at run time (TESTED_KERAS).
        "keras>=3.12.0,<3.16",
        "numpy",
    ],
    extras_require=_EXTRAS,
    entry_points={"console_scripts": ["tf_lottery=tf_lottery.cli.command:run"]},
)
