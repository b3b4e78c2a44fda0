"""The admin API's view of the deployed schedules and when each fires next, and a
schedule fired once by hand.

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

    def run_now(self, name: str) -> dict[str, object]: ...


class SchedulesApi:
    """Routes under ``/_admin/schedules``."""

    def __init__(self, source: ScheduleSource) -> None:
        self.source = source

    def routes(self, guard: Any) -> list[Route]:
        return [
            Route("/schedules", guard(self.list), methods=["GET"]),
            Route("/schedules/{name}/run", guard(self.run), methods=["POST"]),
        ]

    async def run(self, request: Request) -> Response:
        """Fire a schedule once, now, through its trigger (``nimbus schedules run``)."""
        return JSONResponse(self.source.run_now(request.path_params["name"]), status_code=202)

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
