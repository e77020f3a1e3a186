"""The docs are self-contained: every relative link resolves inside the repository, none leaves it."""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Text a reader of the repository sees: the docs, the configs' docstrings, the package, the notebooks.
DOCUMENTS = sorted(
    [ROOT / "README.md", ROOT / "CHANGELOG.md", ROOT / "CONTRIBUTING.md"]
    + [
        p
        for folder in ("docs", "configs", "tf_lottery", "colab", "examples", "benchmarks")
        for p in (ROOT / folder).rglob("*")
        if p.suffix in (".md", ".py", ".ipynb")
    ]
)
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _name(path):
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("path", [p for p in DOCUMENTS if p.exists()], ids=_name)
def test_nothing_refers_to_files_outside_the_repository(path):
    text = path.read_text(errors="replace")
    assert "../shared" not in text and "shared/FACTS" not in text and "/work/" not in text
    for target in _LINK.findall(text) if path.suffix in (".md", ".ipynb") else []:
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue  # a URL or an anchor
        resolved = (path.parent / target.split("#")[0]).resolve()
        assert resolved.is_relative_to(ROOT), f"{target} leaves the repository"
        assert resolved.exists(), f"{target} does not exist"
