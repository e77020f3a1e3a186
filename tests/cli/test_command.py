"""The command's own argument reading: --version answered first, --verbosity read before absl."""

import pytest

from tf_lottery.cli import command


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--version"], True),
        (["--config=configs/default.py", "--version"], True),
        (["--version=true"], True),
        (["--noversion"], False),
        (["--config.run.version=2"], False),
        ([], False),
    ],
)
def test_asks_version(args, expected):
    assert command.asks_version(args) is expected


@pytest.mark.parametrize(
    "args, expected",
    [
        ([], 0),
        (["--verbosity=1"], 1),
        (["--verbosity", "2"], 2),
        (["-v", "1"], 1),
        (["-v=3"], 3),
        (["--verbosity=-1"], -1),
        (["--verbosity=debug"], 0),  # absl refuses it later, with its own message
        (["--verbosity"], 0),
    ],
)
def test_requested_verbosity(args, expected):
    assert command.requested_verbosity(args) == expected


def test_version_is_printed_without_running_the_app(capsys):
    from tf_lottery.version import __version__

    command.run(["tf_lottery", "--version"])
    assert capsys.readouterr().out == f"tf_lottery {__version__}\n"
