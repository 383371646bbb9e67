"""Durations: a number is seconds; strings take the units ms, s, min and h."""

from __future__ import annotations

import math
import re

from django_dbconfig.core.errors import shown

_UNITS_MS = {"ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|min|h)?\s*$")

# A day is the longest timeout any of the backends is asked for; a larger
# value is almost always a unit mistake ("30000" meant as milliseconds).
MAX_MS = 24 * 3_600_000


def parse_duration(value: object) -> int:
    """Return the duration in whole milliseconds, or raise ValueError.

    The message of the ValueError says what was expected; callers add where
    the value came from.
    """
    if isinstance(value, bool):
        raise ValueError('expected a duration such as 30, "500ms", "30s" or "5min", got a boolean')
    if isinstance(value, int) and not isinstance(value, bool) and value > MAX_MS:
        # Checked before any float conversion: 10**400 seconds overflows a float.
        raise ValueError(f"{shown(value)} is longer than a day; check the unit (ms, s, min, h)")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"expected a duration of 0 or more, got {shown(value)}")
        ms = value * 1000
    elif isinstance(value, str):
        match = _PATTERN.match(value)
        if not match:
            raise ValueError(
                f'expected a duration such as 30, "500ms", "30s", "5min" or "1h", got {shown(value)}'
            )
        ms = float(match.group(1)) * _UNITS_MS[match.group(2) or "s"]
    else:
        raise ValueError(
            f'expected a duration such as 30, "500ms", "30s" or "5min", got {type(value).__name__}'
        )
    if ms > MAX_MS:
        raise ValueError(f"{shown(value)} is longer than a day; check the unit (ms, s, min, h)")
    return round(ms)


def format_duration(ms: int) -> str:
    """Format milliseconds in the largest unit that divides them evenly."""
    for unit, size in (("h", 3_600_000), ("min", 60_000), ("s", 1000)):
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"
