"""The read-only browser of tables and buckets, and the usage page.

Tables and buckets have no catalogue of their own: the ones a deployed function is
granted are listed, and any other name can be typed in. Pages are the admin API's
(``TablesApi.scan_table`` / ``BucketsApi.list_objects``): a prefix, a page size, and the cursor of
the next page.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import defaultdict

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from host.errors import NotFound
from host.gateway.console import stats
from host.gateway.console.context import Context
from host.gateway.console.sessions import Session

PAGE = 50


class DataPages:
    """``/data``, ``/data/tables/{name}``, ``/data/buckets/{name}`` and ``/usage``."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def routes(self) -> list[Route]:
        page = self.ctx.web.page
        return [
            Route("/data", page(self.index), methods=["GET"]),
            Route("/data/{kind:str}/{name}", page(self.browse), methods=["GET"]),
            Route("/usage", page(self.usage), methods=["GET"]),
        ]

    def _granted(self) -> tuple[list[str], list[str]]:
        tables: set[str] = set()
        buckets: set[str] = set()
        for dep in self.ctx.platform.registry.list():
            grants = dep.spec.grants.to_dict()
            tables |= set(grants.get("tables", {}))
            buckets |= set(grants.get("buckets", {}))
        return sorted(tables), sorted(buckets)

    async def index(self, request: Request, session: Session) -> Response:
        tables, buckets = self._granted()
        return self.ctx.web.render(
            request, "data.html", session, nav="data", tables=tables, buckets=buckets
        )

    async def browse(self, request: Request, session: Session) -> Response:
        kind, name = request.path_params["kind"], request.path_params["name"]
        q = request.query_params
        prefix, cursor = q.get("prefix", ""), q.get("cursor") or None
        if kind == "tables":
            page = self.ctx.tables.scan_table(name, prefix, cursor, PAGE)
        elif kind == "buckets":
            page = self.ctx.buckets.list_objects(name, prefix, cursor, PAGE)
        else:
            raise NotFound(f"{kind!r} is neither 'tables' nor 'buckets'")
        tables, buckets = self._granted()
        return self.ctx.web.render(
            request,
            "browse.html",
            session,
            nav="data",
            kind=kind,
            name=name,
            prefix=prefix,
            page=page,
            tables=tables,
            buckets=buckets,
            first=cursor is None,
        )

    async def usage(self, request: Request, session: Session) -> Response:
        """Metering does not exist yet: say so, and show the invocation time the
        records do hold (per function per day), which is what metering will price."""
        records = self.ctx.platform.telemetry.recent(None, 1 << 30)
        days: dict[tuple[str, str], list[float]] = defaultdict(list)
        for r in records:
            day = dt.datetime.fromtimestamp(r.started_ms / 1000, dt.UTC).strftime("%Y-%m-%d")
            days[(day, r.function)].append(r.duration_ms)
        rows = [
            {
                "day": day,
                "function": fn,
                "count": len(ds),
                "seconds": sum(ds) / 1000,
                "p99": stats.percentile(sorted(ds), 99),
            }
            for (day, fn), ds in sorted(days.items(), reverse=True)
        ]
        return self.ctx.web.render(
            request,
            "usage.html",
            session,
            nav="usage",
            rows=rows,
            kept=len(records),
            now_ms=int(time.time() * 1000),
        )
