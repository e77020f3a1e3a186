"""Builds the API reference (HTML) from the package's docstrings with pdoc; a pdoc warning is an error.

    pip install -e ".[test]"          # brings pdoc and the experiments' dependencies
    python docs/build_api.py          # writes build/api/index.html (build/ is not tracked)
    python docs/build_api.py --output /tmp/api

CI (`.ci/run`) runs it, so a docstring pdoc cannot read, a name in an
`__all__` that does not exist, or a module that fails to import stops CI.
Docstrings are read as Google style (`Args:`, `Returns:`, `Example:`).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import warnings

ROOT = pathlib.Path(__file__).resolve().parents[1]


# The public facade first, then each layer (see the README); pdoc adds their submodules.
MODULES = (
    "tf_lottery",
    "tf_lottery.core",
    "tf_lottery.pruning",
    "tf_lottery.lottery",
    "tf_lottery.sparse_training",
    "tf_lottery.distillation",
    "tf_lottery.export",
    "tf_lottery.data",
    "tf_lottery.models",
    "tf_lottery.experiments",
    "tf_lottery.cli",
    "tf_lottery.utils",
)


def build(output: pathlib.Path) -> list[str]:
    """Writes the reference of `MODULES` and their submodules to `output`; returns pdoc's warnings."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import pdoc
    import pdoc.render

    pdoc.render.configure(docformat="google", footer_text="tf_lottery API reference")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pdoc.pdoc(*MODULES, output_directory=output)
    pdoc_dir = str(pathlib.Path(pdoc.__file__).parent)
    return [
        f"{w.filename}:{w.lineno}: {w.category.__name__}: {w.message}"
        for w in caught
        if str(w.filename).startswith(pdoc_dir)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=pathlib.Path, default=ROOT / "build" / "api")
    args = parser.parse_args(argv)
    problems = build(args.output)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"build_api: {len(problems)} pdoc warning(s); fix the docstrings above.", file=sys.stderr)
        return 1
    pages = sum(1 for _ in args.output.rglob("*.html"))
    print(f"build_api: {pages} pages in {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
