"""Typed reads of decoded JSON: each check raises a BadInput that names the file and the field.

A run directory is produced by other commands, so a reader that finds something wrong must say
where (``runs/x/analysis.json: records[3].layer must be ...``): the user needs to know which
file, and so which command, to re-run.
"""

from __future__ import annotations

import math
from typing import Any

from karma_probe.core.errors import BadInput


def expect(v: Any, kind: type, where: str):
    """``v`` if it is a ``kind`` (dict or list), else BadInput."""
    if not isinstance(v, kind):
        raise BadInput(f"{where} must be a JSON {'object' if kind is dict else 'array'}, got {type(v).__name__}")
    return v


def number(v: Any, where: str) -> float:
    """A JSON number as float; null is NaN (an analyzer that could not compute a value writes null)."""
    if v is None:
        return math.nan
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise BadInput(f"{where} must be a number or null, got {v!r}")
    return float(v)


def numbers(d: Any, where: str) -> dict[str, float]:
    """A JSON object of numbers (or nulls) as ``{key: float}``."""
    d = expect(d, dict, where)
    return {k: number(v, f"{where}[{k!r}]") for k, v in d.items()}


def is_int(v: Any) -> bool:
    """A JSON integer (true / false are not)."""
    return isinstance(v, int) and not isinstance(v, bool)


def finite_or_none(v: float):
    """``v`` as a float for JSON, or None where it is NaN or infinite (JSON has neither)."""
    v = float(v)
    return v if math.isfinite(v) else None
