"""The one exception type that means "the user gave us something we cannot use".

The CLI turns it into a single line on stderr and exit code 2 (DESIGN.md §7); anything else
is a bug and keeps its traceback.
"""


class BadInput(Exception):
    """Input that cannot be used: a missing file, a malformed row, an unknown id, ..."""


class CheckFailed(Exception):
    """A regression gate found a metric on the wrong side of its threshold (exit code 1)."""


class Diverged(BadInput):
    """A loss term became NaN or infinite; the message names the step and the term."""
