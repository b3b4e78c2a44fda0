"""The admin API's event publishing: an operator's event goes through the same staged
effects and outbox as a function's, so subscribers cannot tell them apart."""

from __future__ import annotations

from typing import Any

import msgpack
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from host.errors import InvalidRequest
from host.gateway.json_body import parse_json
from host.manifest.grants import TOPIC
from host.services.interface import ServiceSet
from host.telemetry.tracing import TraceparentOf, untraced


class EventsApi:
    """Routes under ``/_admin/events``."""

    def __init__(
        self, services: ServiceSet, source: str, traceparent: TraceparentOf = untraced
    ) -> None:
        self.services = services
        self.source = source
        #: what a published event carries to its subscribers (the admin request's span)
        self._traceparent = traceparent

    def routes(self, guard: Any) -> list[Route]:
        return [Route("/events/{topic}", guard(self.publish), methods=["POST"])]

    async def publish(self, request: Request) -> Response:
        topic = request.path_params["topic"]
        if not TOPIC.match(topic) or "*" in topic or "#" in topic:
            raise InvalidRequest(f"{topic!r} is not a topic name like 'order.created'")
        payload = parse_json(await request.body(), "the event payload (the JSON body)")
        effects = self.services.begin(self.source)
        event_id = effects.event_publish(topic, msgpack.packb(payload), self._traceparent())
        effects.commit()
        return JSONResponse({"id": event_id}, status_code=201)
