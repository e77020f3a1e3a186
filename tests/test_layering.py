"""The package's arrows point down (the layers in CONTRIBUTING.md, "The package's layers"; the table below).

Every import of a `tf_lottery` module from inside the package, at any depth
(function-level imports included), is checked against the layer table
below; nothing inside the package imports the public facade
(`import tf_lottery`, `from tf_lottery import <name>`).
"""

from __future__ import annotations

import ast
import pathlib

import pytest

from tests.layers_table import ALLOWED, FACADE

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "tf_lottery"


def unit_of(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def imported_modules(source: str, filename: str = "<source>") -> list[tuple[int, str]]:
    """`(line, dotted module)` of every `tf_lottery` import in `source`; the facade is `tf_lottery`."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "tf_lottery"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] != "tf_lottery":
                continue
            if node.module == "tf_lottery":
                # `from tf_lottery import core` names a subpackage; anything else is the facade.
                for alias in node.names:
                    target = PACKAGE / alias.name
                    is_unit = target.is_dir() or target.with_suffix(".py").exists()
                    found.append((node.lineno, f"tf_lottery.{alias.name}" if is_unit else "tf_lottery"))
            else:
                found.append((node.lineno, node.module))
    return found


def violations(path: pathlib.Path, source: str | None = None) -> list[str]:
    source = path.read_text() if source is None else source
    unit = unit_of(path)
    allowed = FACADE if path == PACKAGE / "__init__.py" else ALLOWED[unit]
    problems = []
    for line, module in imported_modules(source, str(path)):
        parts = module.split(".")
        where = f"{path.relative_to(PACKAGE.parent)}:{line}"
        if module == "tf_lottery":
            problems.append(f"{where} imports the public facade `tf_lottery`: import the defining module.")
            continue
        target = parts[1]
        if target != unit and target not in allowed:
            problems.append(f"{where} ({unit}) imports `{module}` ({target}): not below it.")
    return problems


def _modules():
    return sorted(PACKAGE.rglob("*.py"))


def test_every_unit_has_a_layer():
    units = {unit_of(p) for p in _modules() if p != PACKAGE / "__init__.py"}
    assert units <= set(ALLOWED), f"units without a layer: {sorted(units - set(ALLOWED))}"


def test_arrows_point_down():
    problems = [problem for path in _modules() for problem in violations(path)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "relative, source, message",
    [
        (
            "core/x.py",
            "from tf_lottery.lottery.rewind import Snapshot\n",
            "imports `tf_lottery.lottery.rewind`",
        ),
        ("lottery/x.py", "def f():\n    from tf_lottery.experiments import schema\n", "(lottery) imports"),
        ("pruning/x.py", "import tf_lottery as tfl\n", "public facade"),
        ("export/x.py", "from tf_lottery import prunable\n", "public facade"),
        ("distillation/x.py", "from tf_lottery import data\n", "imports `tf_lottery.data`"),
        ("__init__.py", "from tf_lottery.experiments import run_experiment\n", "(experiments)"),
    ],
)
def test_the_check_catches_an_upward_arrow(relative, source, message):
    problems = violations(PACKAGE / relative, source)
    assert len(problems) == 1 and message in problems[0], problems


def test_downward_imports_pass():
    source = "from tf_lottery.core.walk import prune_wrappers\nfrom tf_lottery import utils\n"
    assert violations(PACKAGE / "lottery" / "x.py", source) == []


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports (`from a import b` counts `a.b` when it is a module)."""
    names = {_module_name(p) for p in _modules()}
    graph = {}
    for path in _modules():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.ImportFrom)
                and node.level == 0
                and (node.module or "").startswith("tf_lottery")
            ):
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    targets.add(sub if sub in names else node.module)
            elif isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name in names)
        graph[_module_name(path)] = {t for t in targets if t in names and t != "tf_lottery"}
    return graph


def test_no_two_modules_of_the_engine_import_each_other():
    # Even lazily, inside a function: a pair that imports each other is one module cut in two
    # (issue 27 broke `level_loop` <-> `pretrain` and `cli.command` <-> `cli.main`).
    graph = _import_graph()
    engine = ("tf_lottery.experiments", "tf_lottery.cli")
    pairs = sorted(
        f"{a} <-> {b}"
        for a, targets in graph.items()
        for b in targets
        if a < b and a in graph.get(b, ()) and a.startswith(engine)
    )
    assert not pairs, pairs
