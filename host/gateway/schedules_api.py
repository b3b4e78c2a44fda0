"""The admin API's view of the deployed schedules and when each fires next.

The gateway does not run schedules: the process assembly (``host/server.py``) hands
it a ``ScheduleSource`` (the trigger manager) that knows them.
"""

from __future__ import annotations

from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from host.manifest.triggers import ScheduleTrigger


class ScheduleSource(Protocol):
    """The deployed schedules, each with its next fire time (ms)."""

    def upcoming(self) -> list[tuple[ScheduleTrigger, int]]: ...


class SchedulesApi:
    """Routes under ``/_admin/schedules``."""

    def __init__(self, source: ScheduleSource) -> None:
        self.source = source

    def routes(self, guard: Any) -> list[Route]:
        return [Route("/schedules", guard(self.list), methods=["GET"])]

    async def list(self, request: Request) -> Response:
        return JSONResponse(
            {
                "schedules": [
                    {
                        "name": t.name,
                        "cron": t.cron,
                        "timezone": t.timezone,
                        "function": t.function,
                        "next_ms": next_ms,
                    }
                    for t, next_ms in self.source.upcoming()
                ]
            }
        )
