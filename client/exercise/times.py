"""Exercise times as directors write them: relative to the exercise's start (``D+2 H+3
M+45``, parts optional) or absolute (RFC 3339, or ``YYYY-MM-DD HH:MM`` in UTC), read as
virtual seconds after the start and written back. Pure."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

_OFFSET = re.compile(r"^(?:D\+(\d+))?\s*(?:H\+(\d+))?\s*(?:M\+(\d+))?\s*(?:S\+(\d+))?$",
                     re.IGNORECASE)
_ABSOLUTE = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?"
                       r"(?:Z|[+-]\d{2}:\d{2})?$", re.IGNORECASE)
_UNITS = (("D", 86400), ("H", 3600), ("M", 60), ("S", 1))


def parse_offset(text: str) -> float:
    """Virtual seconds of a relative time such as ``D+2 H+3 M+45``, ``H+1`` or ``D+1 M+30``
    (parts optional but in that order; ``S+`` seconds rarely needed). Raises ValueError."""
    m = _OFFSET.match(text.strip())
    if not text.strip() or m is None:
        raise ValueError(f"{text!r} is not a relative time such as 'D+1 H+3 M+45' (days, "
                         f"hours, minutes; parts optional, in that order)")
    return float(sum(int(part or 0) * size for part, (_, size) in zip(m.groups(), _UNITS,
                                                                       strict=True)))


def format_offset(seconds: float) -> str:
    """The relative time of ``seconds`` (whole seconds): 99900 -> ``D+1 H+3 M+45``."""
    left, parts = round(seconds), []
    for name, size in _UNITS:
        if left >= size:
            parts.append(f"{name}+{left // size}")
            left %= size
    return " ".join(parts) or "D+0"


def parse_time(value: Any, start: dt.datetime) -> float:
    """Virtual seconds after ``start`` of a relative time (``D+1 H+2``), an RFC 3339 time
    or ``YYYY-MM-DD HH:MM`` (UTC). Raises ValueError naming the value."""
    if isinstance(value, dt.datetime):
        when = value
    elif not isinstance(value, str):
        raise ValueError(f"{value!r} is not a time ('D+1 H+3 M+45' or '2015-12-08 14:30')")
    elif _ABSOLUTE.match(value.strip()):
        when = dt.datetime.fromisoformat(value.strip().upper().replace("Z", "+00:00"))
    else:
        return parse_offset(value)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return float(round((when - start).total_seconds()))
