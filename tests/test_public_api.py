"""The public API is an explicit list, and every name in it imports."""

import importlib

import pytest

import tf_lottery


@pytest.mark.parametrize("name", tf_lottery.__all__)
def test_every_public_name_imports(name):
    namespace = {}
    exec(f"from tf_lottery import {name}", namespace)  # noqa: S102 - the import statement itself is the test
    assert namespace[name] is getattr(tf_lottery, name)


def test_no_public_name_is_left_out_of_all():
    modules = {n for n in dir(tf_lottery) if importlib.util.find_spec(f"tf_lottery.{n}") is not None}
    public = {n for n in dir(tf_lottery) if not n.startswith("_")} - modules
    missing = public - set(tf_lottery.__all__)
    assert not missing, f"public names not listed in tf_lottery.__all__: {sorted(missing)}"
    assert len(tf_lottery.__all__) == len(set(tf_lottery.__all__))


def test_version():
    from tf_lottery.version import __version__

    assert tf_lottery.__version__ == __version__
    assert all(part.isdigit() for part in __version__.split("."))


def test_every_public_name_is_one_entry_of_the_table_in_a_library_layer():
    # `_EXPORTS` is the facade's one list of where each name is defined (imported lazily by the
    # command line); only the Keras library's layers may appear in it (see tests/layers_table.py).
    from tests.layers_table import FACADE

    assert set(tf_lottery._EXPORTS) == set(tf_lottery.__all__) - {"__version__"}
    for name, (module, _) in tf_lottery._EXPORTS.items():
        assert module.split(".")[1] in FACADE, f"{name} comes from {module}, above the library"
