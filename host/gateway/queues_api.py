"""The admin API's view of queues: counts, peek, send, and the dead letters.

Reads and the replay of dead letters go through the services' typed queue
consumption; a send goes through staged effects like a guest's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import msgpack
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from host.common.jsonable import jsonable
from host.gateway.json_body import parse_json
from host.services.keys import check_name
from host.services.services import Services

#: the dead-letter queue of a queue (as the deployed triggers say)
DeadLetterOf = Callable[[str], str]


class QueuesApi:
    """Routes under ``/_admin/queues``."""

    def __init__(self, services: Services, source: str, dead_letter_of: DeadLetterOf) -> None:
        self.services = services
        self.source = source
        self.dead_letter_of = dead_letter_of

    def routes(self, guard: Any) -> list[Route]:
        return [
            Route("/queues", guard(self.stats), methods=["GET"]),
            Route("/queues/{queue}/messages", guard(self.peek), methods=["GET"]),
            Route("/queues/{queue}/messages", guard(self.send), methods=["POST"]),
            Route("/queues/{queue}/dlq", guard(self.dlq_peek), methods=["GET"]),
            Route("/queues/{queue}/dlq/replay", guard(self.dlq_replay), methods=["POST"]),
        ]

    async def stats(self, request: Request) -> Response:
        stats = self.services.consumer.all_stats(int(time.time() * 1000))
        return JSONResponse({"queues": {q: s.__dict__ for q, s in stats.items()}})

    async def peek(self, request: Request) -> Response:
        queue = check_name("queue", request.path_params["queue"])
        limit = min(int(request.query_params.get("limit", "20")), 1000)
        messages = self.services.consumer.peek(queue, limit)
        return JSONResponse({"messages": [jsonable(m.to_dict()) for m in messages]})

    async def send(self, request: Request) -> Response:
        queue = check_name("queue", request.path_params["queue"])
        body = parse_json(await request.body(), "the message (the JSON body)")
        delay = int(request.query_params.get("delay_ms", "0"))
        effects = self.services.begin(self.source)
        message_id = effects.queue_send(queue, msgpack.packb(body), delay)
        effects.commit()
        return JSONResponse({"id": message_id}, status_code=201)

    async def dlq_peek(self, request: Request) -> Response:
        queue = check_name("queue", request.path_params["queue"])
        dlq = self.dead_letter_of(queue)
        limit = min(int(request.query_params.get("limit", "20")), 1000)
        messages = self.services.consumer.peek(dlq, limit)
        return JSONResponse(
            {"dead_letter": dlq, "messages": [jsonable(m.to_dict()) for m in messages]}
        )

    async def dlq_replay(self, request: Request) -> Response:
        """Send every dead-lettered message back to its queue, attempts reset."""
        queue = check_name("queue", request.path_params["queue"])
        dlq = self.dead_letter_of(queue)
        moved = self.services.consumer.replay(dlq, queue, int(time.time() * 1000))
        return JSONResponse({"replayed": moved, "from": dlq, "to": queue})
