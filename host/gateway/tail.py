"""A live tail of invocation records over server-sent events, for every reader of it.

The console's invocations page and ``GET /_admin/logs/stream`` (``nimbus logs -f``)
follow the same source: the records this worker's telemetry keeps, read after a
position (``Telemetry.since``), so a reader that reconnects with the position it
stopped at (``Last-Event-ID`` or ``?after=``) misses nothing still kept. Each event's
``id`` is that position. Records are made when an invocation ends, so its log lines
arrive together, then; a worker streams its own invocations only.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import StreamingResponse

from host.telemetry.records import InvocationRecord, Telemetry

#: how often the stream looks for new records, and how long it stays silent at most
POLL_S = 0.25
HEARTBEAT_S = 15.0


class Filters:
    """The tail's filters, from the query string; empty ones match everything."""

    def __init__(self, query: Any) -> None:
        self.function = query.get("function", "").strip()
        self.outcome = query.get("outcome", "").strip()
        self.request_id = query.get("request_id", "").strip()

    def match(self, r: InvocationRecord) -> bool:
        if self.function and r.function != self.function:
            return False
        if self.outcome == "ok" and r.outcome != "ok":
            return False
        if self.outcome == "error" and r.outcome == "ok":
            return False
        if self.outcome not in ("", "ok", "error") and r.outcome != self.outcome:
            return False
        return not self.request_id or self.request_id in r.request_id

    def as_dict(self) -> dict[str, str]:
        return {"function": self.function, "outcome": self.outcome, "request_id": self.request_id}


def stream(
    request: Request, telemetry: Telemetry, encode: Callable[[InvocationRecord], str]
) -> StreamingResponse:
    """Every record kept after the request's position (default: now) that matches its
    filters, as ``event: invocation`` with ``data: encode(record)``, until it leaves."""
    after = request.headers.get("last-event-id") or request.query_params.get("after", "")
    position = int(after) if after.isdigit() else telemetry.since(1 << 62)[0]
    filters = Filters(request.query_params)

    async def events() -> AsyncIterator[str]:
        nonlocal position
        idle = 0.0
        yield "retry: 2000\n\n"
        while not await request.is_disconnected():
            position, records = telemetry.since(position)
            sent = False
            for r in records:
                if filters.match(r):
                    sent = True
                    yield f"id: {position}\nevent: invocation\ndata: {encode(r)}\n\n"
            idle = 0.0 if sent else idle + POLL_S
            if idle >= HEARTBEAT_S:
                idle = 0.0
                yield ": keep-alive\n\n"
            await asyncio.sleep(POLL_S)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )
