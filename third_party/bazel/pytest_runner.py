"""Bazel py_test entry point: runs pytest on the test file(s) given as arguments.

Used as `main` by the targets from //third_party/bazel:pytest.bzl. It runs in the test's
runfiles directory (the workspace root of the runfiles tree), so pyproject.toml there
supplies pytest's options (`-m 'not slow'` etc.). Bazel's test protocol is honoured:
  - exit code 5 (no tests collected, e.g. every test in the file is marked slow) is a pass;
  - results go to $XML_OUTPUT_FILE as JUnit XML;
  - `bazel test --test_filter=EXPR` becomes `pytest -k EXPR`;
  - pytest's temporary directories live under $TEST_TMPDIR.
"""

import os
import sys

import pytest


def pytest_args(argv: list[str], env: dict[str, str]) -> list[str]:
    """The pytest command line for Bazel's `argv` and test environment `env`."""
    args = []
    if os.path.exists("pyproject.toml"):
        args += ["-c", "pyproject.toml", "--rootdir", "."]
    if env.get("TEST_TMPDIR"):
        args += ["--basetemp", os.path.join(env["TEST_TMPDIR"], "pytest")]
    if env.get("XML_OUTPUT_FILE"):
        args += ["--junitxml", env["XML_OUTPUT_FILE"]]
    if env.get("TESTBRIDGE_TEST_ONLY"):
        args += ["-k", env["TESTBRIDGE_TEST_ONLY"]]
    return args + argv


def main() -> int:
    exit_code = pytest.main(pytest_args(sys.argv[1:], dict(os.environ)))
    if exit_code == pytest.ExitCode.NO_TESTS_COLLECTED:
        return 0
    return int(exit_code)


if __name__ == "__main__":
    sys.exit(main())
