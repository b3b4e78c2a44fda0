"""Invocations: a live tail over server-sent events, filtered, and one invocation's page.

The tail page renders the latest records and the telemetry position it rendered up
to; its script opens ``/invocations/stream?after=POSITION&…`` and the stream sends
every record kept after that position that matches the filters (function, outcome,
request id), so nothing falls between the page and the stream.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from host.errors import NotFound
from host.gateway.console.context import Context
from host.gateway.console.sessions import Session
from host.gateway.tail import Filters, stream
from host.telemetry.preview import MAX_PREVIEW
from host.telemetry.records import InvocationRecord


def row(r: InvocationRecord) -> dict[str, Any]:
    """What the tail shows of a record (the stream sends the same as JSON)."""
    return {
        "request_id": r.request_id,
        "function": r.function,
        "version": r.version,
        "trigger": r.trigger,
        "cold": r.cold,
        "started_ms": r.started_ms,
        "duration_ms": round(r.duration_ms, 3),
        "outcome": r.outcome,
        "error": r.error,
        "logs": len(r.logs),
    }


class InvocationPages:
    """``/invocations``, ``/invocations/stream`` and ``/invocations/{request_id}``."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def routes(self) -> list[Route]:
        page = self.ctx.web.page
        return [
            Route("/invocations", page(self.tail), methods=["GET"]),
            Route("/invocations/stream", page(self.stream), methods=["GET"]),
            Route("/invocations/{request_id}", page(self.show), methods=["GET"]),
        ]

    async def tail(self, request: Request, session: Session) -> Response:
        telemetry = self.ctx.platform.telemetry
        position, _ = telemetry.since(1 << 62)
        filters = Filters(request.query_params)
        rows = [row(r) for r in reversed(telemetry.recent(None, 2000)) if filters.match(r)][:100]
        functions = sorted(d.name for d in self.ctx.platform.registry.list())
        return self.ctx.web.render(
            request,
            "invocations.html",
            session,
            nav="invocations",
            rows=rows,
            position=position,
            filters=filters.as_dict(),
            functions=functions,
        )

    async def stream(self, request: Request, session: Session) -> Response:
        return stream(request, self.ctx.platform.telemetry, lambda r: json.dumps(row(r)))

    async def show(self, request: Request, session: Session) -> Response:
        request_id = request.path_params["request_id"]
        found = [
            r
            for r in self.ctx.platform.telemetry.recent(None, 1 << 30)
            if r.request_id == request_id
        ]
        if not found:
            raise NotFound(
                f"no invocation {request_id!r} among the records this process keeps "
                "(the most recent 10 000; a restart forgets them)"
            )
        return self.ctx.web.render(
            request,
            "invocation.html",
            session,
            nav="invocations",
            record=found[-1],
            attempts=found,
            preview_limit=MAX_PREVIEW,
        )
