"""`--help` without TensorFlow, shipped configs by name, a missing config file, `--print_config`."""

import os
import pathlib
import subprocess
import sys

import ml_collections
import pytest

from tf_lottery.cli import config_listing, usage
from tf_lottery.cli import main as cli
from tf_lottery.experiments import registry, schema

ROOT = pathlib.Path(__file__).resolve().parents[2]
SHIPPED = sorted(p.stem for p in (ROOT / "configs").glob("*.py") if not p.name.startswith("_"))
# What --help must not wait for (TensorFlow alone costs ~10 s on 2 shared cores).
HEAVY = ("tensorflow", "keras", "absl", "ml_collections", "numpy")


def test_the_kind_table_is_the_registry():
    assert usage.KINDS == {name: registry.get(name).summary for name in registry.names()}


@pytest.mark.parametrize("module", ["tf_lottery.main", "tf_lottery"])
def test_help_answers_without_tensorflow_and_lists_every_kind_and_config(module):
    # -X importtime lists every module the process imported, on stderr.
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", module, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    imported = {
        line.split("|")[-1].strip().split(".")[0] for line in result.stderr.splitlines() if "|" in line
    }
    assert not imported & set(HEAVY), imported & set(HEAVY)
    for name in registry.names():
        assert f"\n  {name} " in result.stdout
    for name in SHIPPED:
        assert f"\n  {name}: " in result.stdout
    for text in ("--print_config", "--config.<group>.<key>=<value>", "--workdir", "resumes", ":smoke"):
        assert text in result.stdout


def test_each_config_says_what_it_reproduces_and_its_variants():
    for name, path in usage.shipped_configs().items():
        summary, variants = usage.describe_config(path)
        assert summary and variants, name
    assert usage.describe_config(ROOT / "configs" / "gradual_mnist1d.py")[1].count('"') >= 8  # names each one


def test_a_shipped_config_resolves_by_name_from_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lenet = str(ROOT / "configs" / "lenet_mnist.py")
    assert usage.resolve_config("lenet_mnist") == lenet
    assert usage.resolve_config("lenet_mnist:smoke") == f"{lenet}:smoke"
    assert usage.resolve_config("lenet_mnist.py:smoke") == f"{lenet}:smoke"
    assert usage.resolve_config("configs/lenet_mnist.py") == lenet  # a checkout's command, elsewhere
    (tmp_path / "mine.py").write_text("")
    assert usage.resolve_config("mine.py:x") == "mine.py:x"  # an existing file is kept as given


def test_a_missing_config_file_is_one_line_naming_it():
    result = subprocess.run(
        [sys.executable, "-m", "tf_lottery.main", "--config=nope.py"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tf_lottery: error: no config file 'nope.py' (looked in ")
    assert "lenet_mnist" in lines[0] and "free space" not in lines[0]


def test_a_misspelt_group_is_named_with_the_closest_one():
    config = schema.defaults()
    with pytest.raises(KeyError) as raised:
        config["trian"]
    message = cli.unknown_key_message(["x", "--config.trian.lr=1"], raised.value)
    assert message == "Unknown config key `config.trian` in --config.trian.lr=1. Did you mean `config.train`?"
    with pytest.raises(KeyError) as raised:
        config.train["schedul"]
    message = cli.unknown_key_message(["x", "--config.train.schedul.x=1"], raised.value)
    assert message == (
        "Unknown config key `config.train.schedul` in --config.train.schedul.x=1. "
        "Did you mean `config.train.schedule`?"
    )


def test_unknown_keys_name_the_closest_known_key():
    config = schema.defaults()
    config.train.lrr = 1.0
    with pytest.raises(
        ValueError, match=r"`config\.train\.lrr`\. Did you mean `config\.train\.lr`\? Known keys"
    ):
        schema.validate(config)
    config = schema.defaults()
    config.pruningg = ml_collections.ConfigDict()
    with pytest.raises(ValueError, match=r"`config\.pruningg`\. Did you mean `config\.pruning`\?"):
        schema.validate(config)


def test_print_config_lists_every_key_with_its_comment():
    config = schema.defaults()
    config.train.lr = 0.5
    text = config_listing.listing(config)
    assert "  # Fraction of the surviving weights removed at each level.\n  pruning.rate = 0.2\n" in text
    assert "  train.lr = 0.5\n" in text
    keys = [line.split(" = ")[0].strip() for line in text.splitlines() if " = " in line and "#" not in line]
    assert keys == [key for key, _ in config_listing._flatten(config)] and len(keys) == 56
    assert sum(line.startswith("  # ") for line in text.splitlines()) >= 40
    # A kind's own group: its comments come from the kind's module.
    gradual = registry.get("gradual").defaults()
    assert (
        "  # '' (unstructured), 'N:M' (e.g. '2:4'), 'RxC' blocks (e.g. '1x4', TFLite's sparse kernel) or\n"
        "  # 'channels' (whole units and filters).\n  gradual.structure = ''\n"
        in config_listing.listing(gradual)
    )


def test_print_config_prints_the_resolved_config_and_runs_nothing(tmp_path):
    # From another folder: this checkout's package, not whichever one is installed.
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    workdir = tmp_path / "runs"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tf_lottery.main",
            "--config=gradual_mnist1d:2of4",
            f"--workdir={workdir}",
            "--config.train.lr=0.5",
            "--print_config",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "  train.lr = 0.5\n" in result.stdout
    assert "  gradual.structure = '2:4'\n" in result.stdout
    assert "  experiment = 'gradual'\n" in result.stdout
    assert not workdir.exists()


def test_an_installed_package_finds_its_own_configs(tmp_path, monkeypatch):
    # The layout a wheel installs (setup.py's package_dir): site/tf_lottery/configs/*.py, no checkout.
    package = tmp_path / "site" / "tf_lottery"
    (package / "configs").mkdir(parents=True)
    (package / "configs" / "lenet_mnist.py").write_text('"""LeNet."""\n')
    monkeypatch.setattr(usage, "_PACKAGE", package)
    monkeypatch.chdir(tmp_path)
    assert usage.config_folders() == [package / "configs"]
    assert usage.resolve_config("lenet_mnist:smoke") == f"{package / 'configs' / 'lenet_mnist.py'}:smoke"
    with pytest.raises(FileNotFoundError, match="no config file 'mnist1d_mlp'.*shipped config: lenet_mnist "):
        usage.resolve_config("mnist1d_mlp")
