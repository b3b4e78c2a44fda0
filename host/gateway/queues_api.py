"""The admin API's view of queues: counts, peek, send, and the dead letters.

Reads and the replay of dead letters go through the services' typed queue
consumption; a send goes through staged effects like a guest's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import msgpack
from msgspec.structs import asdict
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from host.common.jsonable import jsonable
from host.errors import NotFound
from host.gateway.json_body import parse_json
from host.gateway.query import limit_of
from host.services.interface import ServiceSet
from host.services.keys import check_name
from host.telemetry.tracing import TraceparentOf, untraced

#: the dead-letter queue of a queue (as the deployed triggers say)
DeadLetterOf = Callable[[str], str]


class QueuesApi:
    """Routes under ``/_admin/queues``."""

    def __init__(
        self,
        services: ServiceSet,
        source: str,
        dead_letter_of: DeadLetterOf,
        traceparent: TraceparentOf = untraced,
    ) -> None:
        self.services = services
        self.source = source
        self.dead_letter_of = dead_letter_of
        #: what a sent message carries to its consumer (the admin request's span)
        self._traceparent = traceparent

    def routes(self, guard: Any) -> list[Route]:
        return [
            Route("/queues", guard(self.stats), methods=["GET"]),
            Route("/queues/{queue}/messages", guard(self.peek), methods=["GET"]),
            Route("/queues/{queue}/messages", guard(self.send), methods=["POST"]),
            Route("/queues/{queue}/dlq", guard(self.dlq_peek), methods=["GET"]),
            Route("/queues/{queue}/dlq/replay", guard(self.dlq_replay), methods=["POST"]),
        ]

    async def stats(self, request: Request) -> Response:
        return JSONResponse({"queues": self.overview()})

    def overview(self, also: Iterable[str] = ()) -> dict[str, dict[str, Any]]:
        """Every queue that holds a message (and those in ``also``): its counts, its
        dead-letter queue (and how many are there) and the enqueue time of its oldest
        message."""
        consumer = self.services.consumer
        now = int(time.time() * 1000)
        out: dict[str, dict[str, Any]] = {}
        for queue in sorted(set(consumer.all_stats(now)) | set(also)):
            dlq = self.dead_letter_of(queue)
            oldest = consumer.peek(queue, 1)
            out[queue] = {
                **asdict(consumer.stats(queue, now, dlq)),
                "dead_letter": dlq,
                "oldest_ms": oldest[0].enqueued_ms if oldest else None,
            }
        return out

    async def peek(self, request: Request) -> Response:
        messages = self.messages(request.path_params["queue"], limit_of(request.query_params, 20))
        return JSONResponse({"messages": messages})

    def messages(self, queue: str, limit: int) -> list[dict[str, Any]]:
        """The first ``limit`` messages of ``queue``, not leased."""
        queue = check_name("queue", queue)
        return [jsonable(m.to_dict()) for m in self.services.consumer.peek(queue, min(limit, 1000))]

    async def send(self, request: Request) -> Response:
        queue = check_name("queue", request.path_params["queue"])
        body = parse_json(await request.body(), "the message (the JSON body)")
        delay = int(request.query_params.get("delay_ms", "0"))
        effects = self.services.begin(self.source)
        message_id = effects.queue_send(queue, msgpack.packb(body), delay, self._traceparent())
        effects.commit()
        return JSONResponse({"id": message_id}, status_code=201)

    async def dlq_peek(self, request: Request) -> Response:
        queue = check_name("queue", request.path_params["queue"])
        dlq = self.dead_letter_of(queue)
        messages = self.messages(dlq, limit_of(request.query_params, 20))
        return JSONResponse({"dead_letter": dlq, "messages": messages})

    async def dlq_replay(self, request: Request) -> Response:
        """Send the dead-lettered messages (or only ``?id=``) back to the queue."""
        queue = request.path_params["queue"]
        return JSONResponse(self.replay(queue, request.query_params.get("id")))

    def replay(self, queue: str, message_id: str | None = None) -> dict[str, Any]:
        """Move every dead-lettered message of ``queue``, or only ``message_id``, back
        to ``queue`` with its attempts reset: how many moved, from where to where."""
        queue = check_name("queue", queue)
        dlq = self.dead_letter_of(queue)
        now = int(time.time() * 1000)
        moved = self.services.consumer.replay(dlq, queue, now, message_id)
        if message_id is not None and not moved:
            raise NotFound(f"dead-letter queue {dlq} has no message {message_id!r}")
        if moved:
            self.services.notify_committed()
        return {"replayed": moved, "from": dlq, "to": queue}
