"""The read-only browser of tables and buckets.

Tables and buckets have no catalogue of their own: the ones a deployed function is
granted are listed, and any other name can be typed in. Pages are the admin API's
(``TablesApi.scan_table`` / ``BucketsApi.list_objects``): a prefix, a page size, and the cursor of
the next page.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from host.errors import NotFound
from host.gateway.console.context import Context
from host.gateway.console.sessions import Session

PAGE = 50


class DataPages:
    """``/data``, ``/data/tables/{name}`` and ``/data/buckets/{name}``."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def routes(self) -> list[Route]:
        page = self.ctx.web.page
        return [
            Route("/data", page(self.index), methods=["GET"]),
            Route("/data/{kind:str}/{name}", page(self.browse), methods=["GET"]),
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
