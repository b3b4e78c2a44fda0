"""The overview: traffic, errors, latency and cold starts over the last hour.

The page renders the current figures server-side; its charts fetch
``/api/overview`` (the same numbers as per-minute columns) and refresh every few
seconds. The figures are every worker's (the shared activity rows, see ``stats.py``),
at most a flush interval (0.5 s) behind for the other workers.
"""

from __future__ import annotations

import time
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from host.gateway.console import stats
from host.gateway.console.context import Context
from host.gateway.console.sessions import Session


class OverviewPages:
    """``/`` and ``/api/overview``."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def routes(self) -> list[Route]:
        page = self.ctx.web.page
        return [
            Route("/", page(self.overview), methods=["GET"]),
            Route("/api/overview", page(self.api), methods=["GET"]),
        ]

    def _figures(self) -> dict[str, Any]:
        now = int(time.time() * 1000)
        rows = self.ctx.platform.services.activity.rows(now - stats.WINDOW_MS)
        recent = stats.window(rows, now)
        total = stats.summarise(recent)
        return {
            "now_ms": now,
            "total": total,
            "rps": total.count / (stats.WINDOW_MS / 1000),
            "series": stats.series(recent, now),
            "top": stats.top_functions(recent),
        }

    async def overview(self, request: Request, session: Session) -> Response:
        figures = await anyio.to_thread.run_sync(self._figures)
        deployed = len(self.ctx.platform.registry.list())
        return self.ctx.web.render(
            request, "overview.html", session, nav="overview", deployed=deployed, **figures
        )

    async def api(self, request: Request, session: Session) -> Response:
        f = await anyio.to_thread.run_sync(self._figures)
        total = f["total"]
        assert isinstance(total, stats.Summary)
        return JSONResponse(
            {
                "series": f["series"],
                "total": {
                    "count": total.count,
                    "rps": f["rps"],
                    "error_rate": total.error_rate,
                    "p50": total.p50,
                    "p99": total.p99,
                    "cold_share": total.cold_share,
                },
            },
            headers={"cache-control": "no-store"},
        )
