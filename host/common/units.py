"""Durations and sizes as people write them in manifests: "250ms", "10s", "1m30s", "128MiB".

Several parts parse these (the manifest, trigger options, CLI flags), so the grammar
lives here once. A bare number is seconds (durations) or bytes (sizes). A bad value
raises ``ValueError`` whose message says what was given and what is accepted; callers
wrap it in their own typed error with the key it came from.

Durations: one or more ``<number><unit>`` parts, units ``ms``, ``s``, ``m``, ``h``,
``d`` ("1m30s", "1.5h"), or a number of seconds (int or float, or a numeric string).
Sizes: ``<number><unit>`` with binary units ``KiB``, ``MiB``, ``GiB``, decimal ``KB``,
``MB``, ``GB`` or ``B`` ("1.5GiB" is fine when it is a whole number of bytes), or an
integer number of bytes.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+$")
_NUMBER = re.compile(r"^\d+(?:\.\d+)?$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|TiB|KB|MB|GB|TB)?$")
_SIZE_UNITS = {
    None: 1,
    "B": 1,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
    "TiB": 1024**4,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
}
_DURATION_HINT = "a duration like '250ms', '10s', '1m30s', '2h' or a number of seconds"
_SIZE_HINT = "a size like '64KiB', '128MiB', '1GiB' or a whole number of bytes"


def parse_duration(value: object) -> float:
    """Seconds from ``"250ms"``, ``"10s"``, ``"1m30s"``, ``"1h"``, ``"1d"`` or a number."""
    if isinstance(value, bool):
        raise ValueError(f"expected {_DURATION_HINT}, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().replace(" ", "")
        if _NUMBER.match(text):
            seconds = float(text)
        elif _DURATION.match(text):
            seconds = sum(
                float(n) * _DURATION_UNITS[unit] for n, unit in _DURATION_PART.findall(text)
            )
        else:
            raise ValueError(f"expected {_DURATION_HINT}, got {value!r}")
    else:
        raise ValueError(f"expected {_DURATION_HINT}, got {value!r}")
    if not math.isfinite(seconds):
        raise ValueError(f"expected a finite duration, got {value!r}")
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative, got {value!r}")
    return seconds


def parse_size(value: object) -> int:
    """Bytes from ``"64KiB"``, ``"128MiB"``, ``"1GiB"``, ``"10MB"`` or an integer."""
    if isinstance(value, bool):
        raise ValueError(f"expected {_SIZE_HINT}, got {value!r}")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and (m := _SIZE.match(value.strip())):
        exact = Decimal(m.group(1)) * _SIZE_UNITS[m.group(2)]
        if exact != exact.to_integral_value():
            raise ValueError(f"{value!r} is not a whole number of bytes")
        size = int(exact)
    else:
        raise ValueError(f"expected {_SIZE_HINT}, got {value!r}")
    if size < 0:
        raise ValueError(f"a size cannot be negative, got {value!r}")
    return size


def format_duration(seconds: float) -> str:
    """A string that ``parse_duration`` reads back as ``seconds`` ("250ms", "10s")."""
    if 0 < seconds < 1 and (seconds * 1000).is_integer():
        return f"{int(seconds * 1000)}ms"
    if float(seconds).is_integer():
        return f"{int(seconds)}s"
    # positional notation: repr may use an exponent ("1e-05"), which is not a duration
    return f"{Decimal(repr(float(seconds))):f}s"


def format_size(size: int) -> str:
    """A string that ``parse_size`` reads back as ``size`` ("128MiB", or bytes)."""
    for unit in ("GiB", "MiB", "KiB"):
        if size and size % _SIZE_UNITS[unit] == 0:
            return f"{size // _SIZE_UNITS[unit]}{unit}"
    return str(size)
