"""Whether this process is the `tf_lottery` command line (where packages import lazily).

`tf_lottery` and `tf_lottery.experiments` import their public names at once
on an ordinary import, and on first use in a command-line process, so that
`--help`, `--version` and flag errors are answered without TensorFlow.
Standard library only: the package's root imports this before anything else.
"""

from __future__ import annotations

import os
import sys

_MAIN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "main.py")


def started_as_command() -> bool:
    """Whether this process is the console script or `python -m tf_lottery.main`.

    While `python -m <module>` imports the packages above `<module>`,
    `sys.argv[0]` is `"-m"` (see the `-m` option in Python's documentation);
    once `tf_lottery/main.py` runs, it is that file's path. An ordinary
    import sees neither.

    Example:

    ```python
    from tf_lottery.utils.command_line import started_as_command

    started_as_command()  # False in a notebook, a test or a script of yours
    ```
    """
    argv0 = sys.argv[0] if sys.argv else ""
    if argv0 == "-m" or os.path.basename(argv0) in ("tf_lottery", "tf_lottery.exe"):
        return True
    return bool(argv0) and os.path.abspath(argv0) == _MAIN
