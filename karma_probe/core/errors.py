"""The exceptions that decide the exit code, and the one line a user sees for each.

The CLI (karma_probe/cli.py) turns ``BadInput`` and any ``OSError`` into a single line on stderr
and exit code 2; ``CheckFailed`` is exit 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class BadInput(Exception):
    """Input that cannot be used: a missing file, a malformed row, an unknown id, ..."""


class CheckFailed(Exception):
    """A regression gate found a metric on the wrong side of its threshold (exit code 1)."""


class Diverged(BadInput):
    """A loss term became NaN or infinite; the message names the step and the term."""


def os_error_line(e: OSError) -> str:
    """One line for an OS error on a path the user gave: what the OS said, and which path.

    Permission denied, no such file or directory (a missing parent), not a directory, is a
    directory, read-only file system, no space left on device, ... all read ``PATH: reason``.
    """
    reason = e.strerror or (str(e).strip().splitlines() or [type(e).__name__])[0]
    paths = [str(p) for p in (e.filename, e.filename2) if p is not None]
    return f"{' -> '.join(paths)}: {reason}" if paths else reason
