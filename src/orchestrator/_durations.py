"""Human durations for the CLI: ``30s``, ``5m``, ``1h30m``, ``2d``, ``1.5`` (seconds).

>>> parse_duration("1h30m")
5400.0
"""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(text: str) -> float:
    """Seconds in ``text``; raises ValueError naming the accepted forms."""
    value = text.strip().lower().replace(" ", "")
    if not value:
        raise ValueError("empty duration; expected e.g. 30s, 5m, 1h30m or a number of seconds")
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if seconds < 0 or seconds != seconds or seconds == float("inf"):
            raise ValueError(f"duration must be a finite number >= 0, got {text!r}")
        return seconds
    position = 0
    total = 0.0
    for match in _PART_RE.finditer(value):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if position != len(value) or position == 0:
        raise ValueError(f"invalid duration {text!r}; expected e.g. 30s, 5m, 1h30m, 2d or seconds")
    return total
