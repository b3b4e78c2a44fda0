"""Usage and cost: the platform's metering (``services/usage.py``), per function per day.

The page reads what ``GET /_admin/usage`` reports (``usage_report``: the metered rows
priced with the app's ``[billing]`` table), so the console and ``nimbus usage`` never
disagree. The rows live in the data dir, shared by every worker process and kept
across restarts; the chart fetches ``/api/usage`` (per-day columns of requests,
GB-seconds and cost).
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from host.common.units import parse_duration
from host.gateway.console.context import Context
from host.gateway.console.sessions import Session
from host.gateway.usage_api import usage_report
from host.manifest.billing import prices_from_dict
from host.services.usage import DAY_MS

#: how far back the page looks, by default and at most
DEFAULT_DAYS = 30
MAX_DAYS = 366


class UsagePages:
    """``/usage`` and ``/api/usage``."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def routes(self) -> list[Route]:
        page = self.ctx.web.page
        return [
            Route("/usage", page(self.usage), methods=["GET"]),
            Route("/api/usage", page(self.api), methods=["GET"]),
        ]

    async def _report(self, request: Request) -> dict[str, Any]:
        days = _days(request.query_params.get("days", ""))
        now = int(time.time() * 1000)
        since_ms = now - now % DAY_MS - (days - 1) * DAY_MS
        platform = self.ctx.platform
        usage = platform.services.usage
        rows = await anyio.to_thread.run_sync(lambda: usage.query(None, since_ms, "day"))
        prices = prices_from_dict(platform.registry.app_config("billing"))
        report = usage_report(rows, prices, "day", since_ms)
        report["days"] = days
        return report

    async def usage(self, request: Request, session: Session) -> Response:
        report = await self._report(request)
        rows = sorted(report["rows"], key=lambda r: (-r["period_ms"], r["function"]))
        return self.ctx.web.render(
            request,
            "usage.html",
            session,
            nav="usage",
            rows=rows,
            total=report["total"],
            prices=report["prices"],
            days=report["days"],
            metering=self.ctx.platform.options.metering,
        )

    async def api(self, request: Request, session: Session) -> Response:
        report = await self._report(request)
        return JSONResponse(
            {"series": series(report["rows"], report["since_ms"]), "total": {}},
            headers={"cache-control": "no-store"},
        )


def series(rows: list[dict[str, Any]], since_ms: int) -> dict[str, list[Any]]:
    """Per-day columns from ``since_ms`` to today, for the chart: time (s), requests,
    GB-seconds and cost, summed over functions (a day without use is 0)."""
    sums: dict[int, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    for r in rows:
        s = sums[r["period_ms"]]
        s[0] += r["requests"]
        s[1] += r["gb_s"]
        s[2] += r["cost"]
    cols: dict[str, list[Any]] = {"t": [], "requests": [], "gb_s": [], "cost": []}
    now = int(time.time() * 1000)
    day = since_ms - since_ms % DAY_MS
    while day <= now:
        requests, gb_s, cost = sums.get(day, [0, 0.0, 0.0])
        cols["t"].append(day // 1000)
        cols["requests"].append(requests)
        cols["gb_s"].append(gb_s)
        cols["cost"].append(cost)
        day += DAY_MS
    return cols


def _days(raw: str) -> int:
    if not raw:
        return DEFAULT_DAYS
    try:
        days = int(raw) if raw.isdigit() else int(parse_duration(raw) // 86400)
    except ValueError:
        return DEFAULT_DAYS
    return min(max(days, 1), MAX_DAYS)
