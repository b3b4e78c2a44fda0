"""The queue import: ``queue_send``. A message body is at most ``MAX_MESSAGE_BYTES``
(256 KiB, as SQS): a queue carries work items, a bucket carries bulk data."""

from __future__ import annotations

from typing import Any

from host.errors import TooLarge
from host.hostcalls import fields as f
from host.hostcalls.context import ServiceAccess
from host.hostcalls.wire import SMALL_REQUEST_BYTES, Operation

MAX_MESSAGE_BYTES = 256 * 1024


def check_message(what: str, body: bytes) -> None:
    if len(body) > MAX_MESSAGE_BYTES:
        raise TooLarge(f"{what} is at most {MAX_MESSAGE_BYTES} bytes, got {len(body)}")


def queue_send(a: ServiceAccess, req: dict[str, Any]) -> Any:
    queue = f.name(req, "queue")
    a.check("queues", queue, write=True)
    delay = f.opt_int(req, "delay_ms", 0) or 0
    body = f.raw(req, "body")
    check_message("a queue message body", body)
    a.charge(len(body))
    return {"id": a.effects.queue_send(queue, body, delay, a.traceparent())}


OPERATIONS = (
    Operation(
        "queue_send",
        queue_send,
        MAX_MESSAGE_BYTES + SMALL_REQUEST_BYTES,
        opaque=frozenset({"body"}),
    ),
)
