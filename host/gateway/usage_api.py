"""``GET /_admin/usage``: requests, GB-seconds and cost per function per hour or day.

The report ``nimbus usage`` prints, as JSON: the usage metered by the platform
(``host/services/usage.py``), priced with the app's ``[billing]`` table (Lambda's
published prices by default). Query parameters: ``function``, ``since`` (a duration
back from now, ``7d`` by default) and ``by`` (``hour`` or ``day``).
"""

from __future__ import annotations

import time
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from host.common.units import parse_duration
from host.errors import InvalidRequest
from host.manifest.billing import Prices, prices_from_dict
from host.platform.platform import Platform
from host.services.usage import BYTE_MS_PER_GB_S, UsageRow

DEFAULT_SINCE = "7d"


class UsageApi:
    """Routes under ``/_admin/usage``."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    def routes(self, guard: Any) -> list[Route]:
        return [Route("/usage", guard(self.usage), methods=["GET"])]

    async def usage(self, request: Request) -> Response:
        q = request.query_params
        by = q.get("by", "hour")
        if by not in ("hour", "day"):
            raise InvalidRequest(f"by must be 'hour' or 'day', not {by!r}")
        since = q.get("since", DEFAULT_SINCE)
        try:
            since_s = parse_duration(since)
        except ValueError as e:
            raise InvalidRequest(f"since must be a duration like '7d' or '12h': {e}") from None
        function = q.get("function") or None
        since_ms = int(time.time() * 1000 - since_s * 1000)
        usage = self.platform.services.usage
        rows = await anyio.to_thread.run_sync(lambda: usage.query(function, since_ms, by))
        prices = prices_from_dict(self.platform.registry.app_config("billing"))
        return JSONResponse(usage_report(rows, prices, by, since_ms))


def usage_report(rows: list[UsageRow], prices: Prices, by: str, since_ms: int) -> dict[str, Any]:
    """The JSON document of ``GET /_admin/usage`` for ``rows`` at ``prices``."""
    items = [_item(r, prices) for r in rows]
    requests = sum(r.requests for r in rows)
    byte_ms = sum(r.byte_ms for r in rows)
    bytes_out = sum(r.bytes_out for r in rows)
    gb_s = byte_ms / BYTE_MS_PER_GB_S
    return {
        "by": by,
        "since_ms": since_ms,
        "prices": prices.to_dict(),
        "rows": items,
        "total": {
            "requests": requests,
            "errors": sum(r.errors for r in rows),
            "billed_ms": sum(r.billed_ms for r in rows),
            "gb_s": gb_s,
            "bytes_out": bytes_out,
            "cpu_ms": round(sum(r.cpu_ms for r in rows), 3),
            "host_calls": sum(r.host_calls for r in rows),
            "outbound_calls": sum(r.outbound_calls for r in rows),
            "peak_memory": max((r.peak_memory for r in rows), default=0),
            "cost": prices.cost(requests, gb_s, bytes_out),
        },
    }


def _item(r: UsageRow, prices: Prices) -> dict[str, Any]:
    return {
        "period_ms": r.period_ms,
        "period": time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(r.period_ms / 1000)),
        "function": r.function,
        "requests": r.requests,
        "errors": r.errors,
        "cold": r.cold,
        "wall_ms": round(r.wall_ms, 3),
        "billed_ms": r.billed_ms,
        "gb_s": r.gb_s,
        "bytes_in": r.bytes_in,
        "bytes_out": r.bytes_out,
        "cpu_ms": round(r.cpu_ms, 3),
        "host_calls": r.host_calls,
        "outbound_calls": r.outbound_calls,
        "peak_memory": r.peak_memory,
        "triggers": r.triggers,
        "cost": prices.cost(r.requests, r.gb_s, r.bytes_out),
    }
