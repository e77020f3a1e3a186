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
import pkgutil
import sys
import warnings

ROOT = pathlib.Path(__file__).resolve().parents[1]


def specs() -> list[str]:
    """What to give pdoc so that it documents every public module of `tf_lottery`, each once.

    pdoc adds a package's submodules itself, except under a package whose
    `__all__` names none of them (e.g. `tf_lottery.distillation`); those are
    added here. Private modules (`_keras_compat`, `__main__`) are left out.
    """
    import pdoc.extract

    import tf_lottery

    found = (name for _, name, _ in pkgutil.walk_packages(tf_lottery.__path__, "tf_lottery."))
    public = sorted(n for n in found if not any(part.startswith("_") for part in n.split(".")))
    chosen = ["tf_lottery"]
    covered = set(pdoc.extract.walk_specs(chosen))
    for name in public:  # sorted: a package comes before its submodules
        if name not in covered:
            chosen.append(name)
            covered.update(pdoc.extract.walk_specs([name]))
    return chosen


def build(output: pathlib.Path) -> list[str]:
    """Writes the reference of every public module (`specs()`) to `output`; returns pdoc's warnings."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import pdoc
    import pdoc.render

    pdoc.render.configure(docformat="google", footer_text="tf_lottery API reference")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pdoc.pdoc(*specs(), output_directory=output)
    pdoc_dir = str(pathlib.Path(pdoc.__file__).parent)
    return [
        f"{w.filename}:{w.lineno}: {w.category.__name__}: {w.message}"
        for w in caught
        if str(w.filename).startswith(pdoc_dir)
    ]


def parser() -> argparse.ArgumentParser:
    """The command's flags: `--output DIR`, the folder the reference is written to."""
    flags = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    flags.add_argument(
        "--output",
        type=pathlib.Path,
        default=ROOT / "build" / "api",
        help="folder to write the HTML into (created if missing). Defaults to build/api in the checkout.",
    )
    return flags


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
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
