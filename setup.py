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

setup(
    name="tf_lottery",
    version=_VERSION,
    description="Find, train and ship sparse lottery tickets with Keras 3.",
    long_description=(_HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["tf_lottery", "tf_lottery.*"]),
    python_requires=">=3.11",
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "keras>=3.12",
        "numpy",
        "absl-py",
        "ml-collections",
        "tensorflow-datasets",
        # etils (tfds) 1.15 imports it for data_dir access without declaring it.
        "importlib_resources",
        "tensorflow-model-optimization",
        "tf_keras>=2.21,<2.22",
        "mnist1d",
        "matplotlib",
        # tf.summary (and keras.callbacks.TensorBoard) need it; TF 2.21 no longer installs it.
        "tensorboard",
    ],
    extras_require={
        "test": ["pytest", "ruff", "nbclient", "nbformat", "ipykernel"],
    },
    entry_points={"console_scripts": ["tf_lottery=tf_lottery.cli.main:run"]},
)
