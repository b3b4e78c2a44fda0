"""JSON from HTTP callers, parsed with a nesting bound: a body nested thousands deep
is a 400 naming the limit, never a ``RecursionError``, and nothing deeper than the
bound is stored (so everything stored can be shown again)."""

from __future__ import annotations

from typing import Any

from host.common.bounded import MAX_DEPTH, Unbounded, loads_json
from host.errors import InvalidRequest


def parse_json(raw: str | bytes, what: str) -> Any:
    """The JSON value in ``raw``; ``InvalidRequest`` naming ``what`` and the problem."""
    try:
        return loads_json(raw, MAX_DEPTH)
    except Unbounded as e:
        raise InvalidRequest(
            f"{what} is refused: {e} (JSON is accepted nested at most {MAX_DEPTH} deep)"
        ) from None
