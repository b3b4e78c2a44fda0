"""The event bus import: ``event_publish`` (a payload is at most 256 KiB, as a queue
message: the bus delivers it to every subscriber)."""

from __future__ import annotations

from typing import Any

from host.errors import InvalidArgument
from host.hostcalls import fields as f
from host.hostcalls.context import ServiceAccess
from host.hostcalls.queues import MAX_MESSAGE_BYTES, check_message
from host.hostcalls.wire import SMALL_REQUEST_BYTES, Operation


def event_publish(a: ServiceAccess, req: dict[str, Any]) -> Any:
    topic = req.get("topic")
    if not isinstance(topic, str) or not topic or "*" in topic or "#" in topic:
        raise InvalidArgument("'topic' must be a topic name like 'order.created'")
    a.check("topics", topic, write=True)
    payload = f.raw(req, "payload")
    check_message("an event payload", payload)
    a.charge(len(topic) + len(payload))
    return {"id": a.effects.event_publish(topic, payload, a.traceparent())}


OPERATIONS = (
    Operation(
        "event_publish",
        event_publish,
        MAX_MESSAGE_BYTES + SMALL_REQUEST_BYTES,
        opaque=frozenset({"payload"}),
    ),
)
