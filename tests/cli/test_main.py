"""The command line: end to end on a smoke config, errors, kill and resume."""

import getpass
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import tf_lottery as tfl

ROOT = str(pathlib.Path(__file__).resolve().parents[2])


def _command(workdir, *flags, config="configs/default.py:smoke"):
    return [sys.executable, "-m", "tf_lottery.main", f"--config={config}", f"--workdir={workdir}", *flags]


def _run(workdir, *flags, **kwargs):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        _command(workdir, *flags, **kwargs), cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


def _ends(workdir):
    """`{relative path: Ticket}` of every finished level's end.npz under `workdir`."""
    found = {}
    for directory, _, files in os.walk(workdir):
        if "end.npz" in files:
            found[os.path.relpath(directory, workdir)] = tfl.Ticket.load(os.path.join(directory, "end.npz"))
    return found


def test_smoke_config_end_to_end_writes_store_csv_and_plots(tmp_path):
    # Run from a folder that holds a folder named tf_lottery: an editable install is shadowed
    # there for `import tf_lottery`, and the command must still run (one run checks both).
    (tmp_path / "tf_lottery").mkdir()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [*_command(tmp_path / "runs", config=f"{ROOT}/configs/default.py:smoke"), "--progress=on"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ticket (es)" in result.stdout and "reinit (es)" in result.stdout
    assert sorted(os.listdir(tmp_path / "tf_lottery")) == []
    (experiment,) = os.listdir(tmp_path / "runs" / "lottery")
    root = tmp_path / "runs" / "lottery" / experiment
    for level in range(3):
        files = set(os.listdir(root / "replicate_0" / f"round_{level}"))
        assert {"start.npz", "end.npz", "checkpoint.npz", "metrics.json"} <= files
    assert (root / "replicate_0" / "branch_reinit" / "round_2" / "metrics.json").exists()
    lines = (root / "results" / "rounds.csv").read_text().splitlines()
    assert (
        lines[0].startswith("experiment,branch,replicate,level,percent_remaining") and len(lines) == 1 + 3 + 2
    )
    for name in ("accuracy.png", "early_stop.png", "final_accuracy.png"):
        assert (root / "results" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The bar (stderr, not a terminal: `on` writes whole lines) never enters the log on stdout.
    assert "progress: [" in result.stderr and "progress: [" not in result.stdout
    # TensorFlow's C++ start-up lines (oneDNN, CUDA probing, CPU features) are not shown.
    for noise in ("oneDNN", "cuda", "cpu_feature_guard", "absl::InitializeLog"):
        assert noise not in result.stderr, result.stderr[-3000:]


@pytest.mark.parametrize("module", ["tf_lottery", "tf_lottery.main"])
def test_version_answers_without_tensorflow(module):
    from tf_lottery.version import __version__

    # -X importtime lists every module the process imports, on stderr.
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", module, "--version"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout == f"tf_lottery {__version__}\n"
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert "tf_lottery.version" in imported
    assert not {"tensorflow", "keras", "absl", "ml_collections"} & imported


def test_the_console_script_answers_version_and_takes_the_same_flags():
    from tf_lottery.version import __version__

    script = shutil.which("tf_lottery")
    if script is None or "tf_lottery.cli.command" not in pathlib.Path(script).read_text(errors="replace"):
        pytest.skip("the `tf_lottery` console script of this checkout is not installed (pip install -e .)")
    result = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout == f"tf_lottery {__version__}\n", result.stderr
    flags = subprocess.run([script, "--helpfull"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    for flag in ("--config", "--workdir", "--threads", "--progress", "--[no]version", "--verbosity"):
        assert flag in flags.stdout
    assert "oneDNN" not in flags.stderr and "cpu_feature_guard" not in flags.stderr


@pytest.mark.parametrize(
    "flag, message",
    [
        # The three ways the command refuses a flag. Each costs a process (TensorFlow's import):
        # the messages of other config values are checked in process below and in test_usage.py.
        # A ValueError from the config's validation, in `main`:
        (
            "--config.experiment=instabilty",
            "expected one of ('early_bird', 'gradual', 'instability', 'kd_rewind', 'kd_ticket', 'lottery', 'oneshot', "
            "'rigl', 'set', 'static', 'transfer'). "
            "Received: experiment='instabilty'. Did you mean 'instability'?",
        ),
        # A misspelt key at any depth, while absl parses: one line with the closest known key.
        (
            "--config.trian.lr=1",
            "tf_lottery: error: Unknown config key `config.trian` in --config.trian.lr=1. "
            "Did you mean `config.train`?\n",
        ),
        # A bad process flag (absl's UsageError).
        ("--threads=-1", "Invalid value for --threads: expected an int >= 0. Received: -1."),
    ],
)
def test_bad_flags_are_named_without_a_traceback(tmp_path, flag, message):
    result = _run(tmp_path, flag)
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not os.listdir(tmp_path)  # refused before anything is written


@pytest.mark.parametrize("flag", ["--config.trian.lr=1", "--threads=-1"])
def test_a_misspelt_key_or_bad_process_flag_is_answered_before_tensorflow_loads(tmp_path, flag):
    # Was: the config file imported the whole engine through `tf_lottery.experiments`, so every
    # typo waited for TensorFlow and Keras to import (~9 s here) before its one-line answer.
    command = [sys.executable, "-X", "importtime", *_command(tmp_path, flag)[1:]]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line]
    assert "tf_lottery.cli.main" in imported and "absl.flags" in imported
    assert "tensorflow" not in imported and "keras" not in imported


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("train.epochs", 3, "Unknown config key `config.train.epochs`"),
        ("train.lrr", 1.0, "Unknown config key `config.train.lrr`. Did you mean `config.train.lr`?"),
        ("run.only_replicates", "1", "`config.run.only_replicates`: expected comma-separated"),
    ],
)
def test_bad_config_values_of_the_smoke_config_are_named(key, value, message):
    from tf_lottery.experiments import registry

    config = _smoke_config()
    group, name = key.split(".")
    config[group][name] = value
    with pytest.raises(ValueError) as raised:
        registry.validate(config)
    assert message in str(raised.value)


def _smoke_config():
    import importlib.util

    spec = importlib.util.spec_from_file_location("default_config", f"{ROOT}/configs/default.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config("smoke")


def test_the_console_script_and_the_module_are_one_command():
    from tf_lottery import main as module_main
    from tf_lottery.cli import command
    from tf_lottery.cli import main as cli

    setup = (pathlib.Path(ROOT) / "setup.py").read_text()
    assert '"tf_lottery=tf_lottery.cli.command:run"' in setup
    module = subprocess.run(
        [sys.executable, "-m", "tf_lottery.main", "--helpfull"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    for flag in ("--config", "--workdir", "--threads", "--progress", "--[no]version"):
        assert flag in module.stdout
    # One entry point, `command.run`; the absl app does not import its caller back.
    assert module_main.run is command.run and not hasattr(cli, "run")


def test_tfds_config_without_data_says_how_to_prepare_it(tmp_path):
    result = _run(
        tmp_path, f"--config.dataset.data_dir={tmp_path / 'none'}", config="configs/lenet_mnist.py:smoke"
    )
    assert result.returncode != 0
    assert "'mnist' is not prepared" in result.stderr and "tfds build mnist" in result.stderr


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_same_masks_and_weights(tmp_path):
    flags = ("--config.train.training_steps=12ep", "--config.run.branches=reinit")
    reference = _run(tmp_path / "reference", *flags)
    assert reference.returncode == 0, reference.stderr[-3000:]

    workdir = tmp_path / "killed"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    process = subprocess.Popen(
        _command(workdir, *flags), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 300
    level = None
    while time.time() < deadline and process.poll() is None:
        for directory, _, files in os.walk(workdir):
            if directory.endswith("round_1") and "branch_" not in directory and "checkpoint.npz" in files:
                level = directory
        if level and not os.path.exists(os.path.join(level, "metrics.json")):
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not os.path.exists(os.path.join(level, "metrics.json"))

    resumed = _run(workdir, *flags)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected, actual = _ends(tmp_path / "reference"), _ends(workdir)
    assert sorted(expected) == sorted(actual) and len(expected) == 5
    for key, ticket in expected.items():
        assert all(np.array_equal(a, b) for a, b in zip(ticket.masks, actual[key].masks)), key
        assert all(np.array_equal(a, b) for a, b in zip(ticket.weights, actual[key].weights)), key


@pytest.mark.slow
def test_no_flags_runs_the_default_experiment_with_the_reinit_control(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TMPDIR=str(tmp_path))
    began = time.time()
    result = subprocess.run(
        [sys.executable, "-m", "tf_lottery.main"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "reinit (es)" in result.stdout and "\n   12 " in result.stdout
    # Per user: another user's finished run in the same temporary folder is never shown or reused.
    (workdir,) = tmp_path.glob("tf_lottery_runs-*")
    assert workdir.name == f"tf_lottery_runs-{getpass.getuser()}" and (workdir / "lottery").is_dir()
    # Never a folder named after the package: run from there, it would shadow an editable install.
    assert not (tmp_path / "tf_lottery").exists()
    print(f"default run: {time.time() - began:.0f} s")
