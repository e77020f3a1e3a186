"""What setup.py promises: a lean core install, the oldest pair CI tests, a library without the runner's deps."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
# The `experiments` extra: what the runner, data, plots and command line import (absl-py too,
# but TensorFlow itself needs that one).
EXPERIMENT_MODULES = ("ml_collections", "tensorflow_datasets", "mnist1d", "matplotlib")


def _setup():
    return (ROOT / "setup.py").read_text()


def test_the_core_install_is_tensorflow_keras_and_numpy():
    requires = re.search(r"install_requires=\[(.*?)\]", _setup(), re.S).group(1)
    names = [re.match(r"[A-Za-z0-9_.-]+", r).group(0) for r in re.findall(r'"([^"]+)"', requires)]
    assert names == ["tensorflow", "keras", "numpy"]
    for extra in ("experiments", "bench", "test", "all"):
        assert f'"{extra}":' in _setup()


def test_the_floor_in_setup_is_the_oldest_pair_ci_tests():
    ci = (ROOT / ".ci" / "run").read_text()
    oldest_tf = re.search(r"^OLDEST_TF=(\S+)", ci, re.M).group(1)
    oldest_keras = re.search(r"^OLDEST_KERAS=(\S+)", ci, re.M).group(1)
    assert f'"tensorflow>={oldest_tf}"' in _setup()
    assert f'"keras>={oldest_keras},' in _setup()
    assert (
        'pip install --quiet "tensorflow==$OLDEST_TF" "keras==$OLDEST_KERAS" -e . pytest pytest-xdist' in ci
    )


def test_the_library_imports_without_the_experiments_extra():
    # Every import of the runner's dependencies fails, as in a core-only install.
    program = (
        "import sys\n"
        f"blocked = {EXPERIMENT_MODULES!r}\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in blocked:\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import tf_lottery as tfl\n"
        "import keras\n"
        "model = tfl.prunable(keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)]))\n"
        "tfl.prune(model, target_sparsity=0.5)\n"
        "print(tfl.sparsity_report(model).sparsity)\n"
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, env=env, timeout=300, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert float(result.stdout.split()[-1]) == 0.5


def test_the_command_without_the_experiments_extra_says_what_to_install():
    from tf_lottery.cli import command

    program = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'ml_collections':\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "sys.argv = ['tf_lottery']\n"
        f"exec(open({command.__file__!r}).read())\n"
        "run()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode != 0
    assert "needs the `experiments` extra (module 'ml_collections' is missing)" in result.stderr
    assert "pip install 'tf_lottery[experiments]'" in result.stderr


def test_the_bazel_ci_subset_names_existing_test_files():
    # CI tests only the Bazel targets tagged "ci"; a renamed file must not drop out unseen.
    build = (ROOT / "BUILD").read_text()
    block = re.search(r"_CI_SUBSET = \[(.*?)\]", build, re.S).group(1)
    subset = re.findall(r'"([^"]+)"', block)
    assert len(subset) >= 5
    for src in subset:
        assert (ROOT / src).is_file(), src
        assert re.fullmatch(r"tests/(.+/)?test_\w+\.py", src), src
    assert "--test_tag_filters=ci" in (ROOT / ".ci" / "run").read_text()


def _build_wheel(tmp_path) -> pathlib.Path:
    """The wheel of a copy of the project's sources (so no build/ lands in the checkout)."""
    import shutil

    source = tmp_path / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("tf_lottery", "configs"):
        shutil.copytree(ROOT / folder, source / folder, ignore=ignore)
    for name in ("setup.py", "README.md", "pyproject.toml"):
        shutil.copy(ROOT / name, source / name)
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            wheels,
            source,
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("tf_lottery-*.whl")
    return wheel


@pytest.mark.slow  # builds and installs a wheel: about 10 s
def test_the_shipped_configs_resolve_by_name_from_a_non_editable_install(tmp_path):
    import zipfile

    wheel = _build_wheel(tmp_path)
    shipped = sorted(p.name for p in (ROOT / "configs").glob("*.py"))
    in_wheel = sorted(
        pathlib.PurePosixPath(n).name
        for n in zipfile.ZipFile(wheel).namelist()
        if n.startswith("tf_lottery/configs/")
    )
    assert in_wheel == shipped
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", target, wheel],
        check=True,
        capture_output=True,
        timeout=300,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = dict(os.environ, PYTHONPATH=str(target))
    program = (
        "import sys; sys.argv = ['tf_lottery']\n"
        "from tf_lottery.cli import usage\n"
        "print(usage.resolve_config('lenet_mnist:smoke'))\n"
        "print(usage.resolve_config('configs/default.py'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, env=env, cwd=elsewhere, timeout=60
    )
    assert result.returncode == 0, result.stderr[-2000:]
    packaged = target / "tf_lottery" / "configs"
    assert result.stdout.splitlines() == [
        f"{packaged / 'lenet_mnist.py'}:smoke",
        str(packaged / "default.py"),
    ]
    helped = subprocess.run(
        [sys.executable, "-m", "tf_lottery", "--help"], capture_output=True, text=True, env=env, cwd=elsewhere
    )
    assert f"from {packaged})" in helped.stdout and "\n  lenet_mnist: " in helped.stdout


def test_setup_ships_the_configs_folder_inside_the_package():
    assert '"tf_lottery.configs"' in _setup()
    assert 'package_dir={"tf_lottery.configs": "configs"}' in _setup()
