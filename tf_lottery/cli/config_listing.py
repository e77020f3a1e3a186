"""`--print_config`: every key of a resolved config with its value and the comment that documents it.

The comments are those written above (or beside) each option where its default
is set: `schema.defaults()` and each kind's `defaults()` in
`tf_lottery/experiments/kinds/`. They are read from those files' source, so the
listing says exactly what the code says, and a key without a comment there is
listed with its value alone.
"""

from __future__ import annotations

import io
import pathlib
import re
import textwrap
import tokenize

_EXPERIMENTS = pathlib.Path(__file__).resolve().parents[1] / "experiments"
# `config.<dotted key> = <value>` at the start of a line, as the defaults functions write them.
_ASSIGNMENT = re.compile(r"^\s*config\.([A-Za-z_][\w.]*)\s*=(?!=)")


def _comments_of(source: str) -> dict[str, str]:
    """Dotted key -> the comment block just above its assignment (or the comment on its line)."""
    comments: dict[str, str] = {}
    lines = source.splitlines()
    inline: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            inline[token.start[0]] = token.string.lstrip("#").strip()
    for number, line in enumerate(lines, start=1):
        match = _ASSIGNMENT.match(line)
        if not match:
            continue
        block = []
        above = number - 1
        while above >= 1 and lines[above - 1].strip().startswith("#"):
            block.insert(0, lines[above - 1].strip().lstrip("#").strip())
            above -= 1
        if not block and number in inline:
            block = [inline[number]]
        if block:
            comments.setdefault(match.group(1), " ".join(block))
    return comments


def option_comments() -> dict[str, str]:
    """Dotted key -> its comment, from `schema.py` first, then every kind's module."""
    comments: dict[str, str] = {}
    for path in [_EXPERIMENTS / "schema.py", *sorted((_EXPERIMENTS / "kinds").glob("*.py"))]:
        for key, comment in _comments_of(path.read_text()).items():
            comments.setdefault(key, comment)
    return comments


def _flatten(config, prefix: str = "") -> list[tuple[str, object]]:
    items = []
    for key, value in config.items():
        if hasattr(value, "items"):
            items.extend(_flatten(value, f"{prefix}{key}."))
        else:
            items.append((f"{prefix}{key}", value))
    return items


def listing(config) -> str:
    """Every key of `config` as `key = value`, each with its comment above it, group by group."""
    comments = option_comments()
    lines = []
    group = None
    for key, value in _flatten(config):
        head = key.split(".")[0] if "." in key else ""
        if head != group:
            group = head
            if lines:
                lines.append("")
            lines.append(f"# config.{head}" if head else "# top level")
        if key in comments:
            lines.extend(
                textwrap.wrap(comments[key], width=100, initial_indent="  # ", subsequent_indent="  # ")
            )
        lines.append(f"  {key} = {value!r}")
    return "\n".join(lines).lstrip("\n") + "\n"
