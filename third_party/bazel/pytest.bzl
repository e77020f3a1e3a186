"""pytest_test / pytest_suite: one Bazel py_test per pytest file.

The tests are pytest-style (fixtures, parametrize, markers), so each py_test runs
//third_party/bazel:pytest_runner.py, which calls pytest on that single file with the
options from pyproject.toml (e.g. `-m 'not slow'`).
"""

_RUNNER = "//third_party/bazel:pytest_runner.py"

def pytest_test(name, src, deps = [], data = [], args = [], size = "medium", timeout = "long", tags = [], **kwargs):
    """A py_test that runs `pytest <src>`.

    Args:
      name: target name.
      src: the test file, e.g. "tests/test_pruning.py".
      deps: py_library deps (the code under test, shared helpers).
      data: extra runtime files; pyproject.toml is wanted so pytest sees its settings.
      args: extra pytest arguments, after the file.
      size: Bazel test size (resources and default timeout).
      timeout: Bazel test timeout; "long" (15 min) since TensorFlow tests are heavy.
      tags: Bazel tags.
      **kwargs: passed to py_test.
    """
    native.py_test(
        name = name,
        srcs = [src, _RUNNER],
        main = _RUNNER,
        args = ["$(rootpath {})".format(src)] + args,
        deps = deps,
        data = data,
        python_version = "PY3",
        srcs_version = "PY3",
        # No generated __init__.py files in the runfiles: pytest must see tests/ exactly
        # as in the source tree, or its rootdir/sys.path handling changes.
        legacy_create_init = False,
        size = size,
        timeout = timeout,
        tags = tags + ["pytest"],
        **kwargs
    )

def pytest_suite(name, srcs, tags_by_src = {}, **kwargs):
    """One pytest_test per file in srcs, plus a test_suite `name` grouping them.

    Each target is named after its file without the "tests/" prefix and ".py":
    tests/test_pruning.py -> :test_pruning.

    Args:
      name: name of the test_suite.
      srcs: test files, usually glob(["tests/**/test_*.py"]).
      tags_by_src: extra Bazel tags per test file, e.g. {"tests/test_layering.py": ["ci"]}
        (select them with `bazel test --test_tag_filters=ci //...`). A key that is not in
        srcs is an error, so a renamed file cannot drop out of a tagged subset unseen.
      **kwargs: passed to every pytest_test.
    """
    for src in tags_by_src:
        if src not in srcs:
            fail("pytest_suite: tags_by_src names %s, which is not one of the test files" % src)
    tests = []
    for src in srcs:
        test_name = src[:-len(".py")]
        if test_name.startswith("tests/"):
            test_name = test_name[len("tests/"):]
        pytest_test(name = test_name, src = src, tags = tags_by_src.get(src, []), **kwargs)
        tests.append(":" + test_name)
    native.test_suite(name = name, tests = tests)
