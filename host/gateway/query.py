"""Query-string values the admin API and the console share, checked with a clear error."""

from __future__ import annotations

from collections.abc import Mapping

from host.errors import InvalidRequest


def limit_of(query: Mapping[str, str], default: int) -> int:
    """``?limit=``: a positive integer, ``default`` when absent."""
    raw = query.get("limit", str(default))
    if not raw.isdigit() or int(raw) < 1:
        raise InvalidRequest(f"limit must be a positive integer, not {raw!r}")
    return int(raw)


def cursor_of(cursor: str) -> bytes:
    """A paging cursor as this API returned it (hex of the next key)."""
    try:
        return bytes.fromhex(cursor)
    except ValueError:
        raise InvalidRequest(f"cursor {cursor!r} is not one this API returned") from None
