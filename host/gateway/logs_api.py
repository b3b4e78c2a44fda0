"""``GET /_admin/logs/stream``: invocation records and their log lines, live.

What ``nimbus logs -f`` reads: server-sent events from the same tail as the console's
invocations page (``tail.py``), each one invocation record as JSON (its log lines
with their levels, outcome, duration, request id). Query: ``function``,
``request_id``, ``outcome`` (``ok``, ``error`` or a kind), ``after`` (a position).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from host.gateway.tail import stream
from host.platform.platform import Platform


class LogsApi:
    """Routes under ``/_admin/logs``."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    def routes(self, guard: Any) -> list[Route]:
        return [Route("/logs/stream", guard(self.stream), methods=["GET"])]

    async def stream(self, request: Request) -> Response:
        return stream(request, self.platform.telemetry, lambda r: json.dumps(r.to_dict()))
