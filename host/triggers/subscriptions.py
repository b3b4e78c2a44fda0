"""From the manifest's ``[triggers]`` to subscriptions: queue names and event shapes.

Storage and bus events, and schedule firings, are delivered through queues of their
own (one per subscription, named with a ``!`` that user queues cannot have), so they
get the same leasing, retries and dead letters as a user queue.
"""

from __future__ import annotations

from typing import Any

import msgpack

from host.common.retry import RetryPolicy
from host.common.tracecontext import TRACEPARENT
from host.manifest.grants import topic_matches
from host.manifest.triggers import (
    VISIBILITY_TIMEOUT_S,
    Delivery,
    EventTrigger,
    ScheduleTrigger,
    StorageTrigger,
    Triggers,
    dead_letter_queue,
)
from host.services.queues import Message
from host.triggers.delivery import Subscription


def _text(key: Any) -> Any:
    if isinstance(key, bytes):
        try:
            return key.decode()
        except UnicodeDecodeError:
            return key
    return key


def queue_event(queue: str) -> Any:
    def make(batch: list[Message]) -> dict[str, Any]:
        event = {
            "kind": "queue",
            "id": batch[0].id,
            "queue": queue,
            "messages": [
                {
                    "id": m.id,
                    "body": msgpack.unpackb(m.body),
                    "attempt": m.attempt,
                    "enqueued_ms": m.enqueued_ms,
                }
                for m in batch
            ],
        }
        # a message sent by a traced invocation: the delivery continues its trace
        traced = next((m.traceparent for m in batch if m.traceparent), None)
        if traced is not None:
            event[TRACEPARENT] = traced
        return event

    return make


def record_event(batch: list[Message]) -> dict[str, Any]:
    """A storage or bus event from the outbox record carried by the message."""
    m = batch[0]
    record = msgpack.unpackb(m.body)
    event = {k: v for k, v in record.items() if k != "payload"}
    event["attempt"] = m.attempt
    if record["kind"] == "storage":
        event["key"] = _text(record["key"])
    else:
        event["payload"] = msgpack.unpackb(record["payload"])
    return event


def schedule_event(batch: list[Message]) -> dict[str, Any]:
    m = batch[0]
    return {**msgpack.unpackb(m.body), "kind": "schedule", "attempt": m.attempt}


def storage_matches(t: StorageTrigger, record: dict[str, Any]) -> bool:
    if record["kind"] != "storage":
        return False
    key = record["key"]
    key = key if isinstance(key, bytes) else str(key).encode()
    return (
        record["bucket"] == t.bucket
        and key.startswith(t.prefix.encode())
        and key.endswith(t.suffix.encode())
        and record["op"] in t.events
    )


def event_matches(t: EventTrigger, record: dict[str, Any]) -> bool:
    return record["kind"] == "event" and topic_matches(t.topic, record["topic"])


def subscriptions(triggers: Triggers) -> list[Subscription]:
    subs: list[Subscription] = []
    for q in triggers.queue:
        subs.append(
            Subscription(
                name=f"queue:{q.queue}:{q.function or q.workflow}",
                queue=q.queue,
                function=q.function,
                make_event=queue_event(q.queue),
                delivery=q.delivery,
                dead_letter=dead_letter_queue(q.delivery, q.queue),
                batch_size=q.batch_size,
                visibility_ms=int(q.visibility_timeout_s * 1000),
                concurrency=q.concurrency,
                workflow=q.workflow,
            )
        )
    for i, st in enumerate(triggers.storage):
        subs.append(
            _record_sub(
                "storage", i, st.function, st.delivery, st.workflow, st.visibility_timeout_s
            )
        )
    for i, ev in enumerate(triggers.event):
        subs.append(
            _record_sub("event", i, ev.function, ev.delivery, ev.workflow, ev.visibility_timeout_s)
        )
    for sc in triggers.schedule:
        subs.append(
            Subscription(
                name=f"schedule:{sc.name}",
                queue=schedule_queue(sc),
                function=sc.function,
                make_event=schedule_event,
                delivery=Delivery(RetryPolicy(max_attempts=3)),
                dead_letter=f"{sc.function or sc.workflow}.dlq",
                workflow=sc.workflow,
                visibility_ms=int(sc.visibility_timeout_s * 1000),
            )
        )
    return subs


def _record_sub(
    kind: str,
    i: int,
    function: str,
    delivery: Delivery,
    workflow: str = "",
    visibility_s: float = VISIBILITY_TIMEOUT_S,
) -> Subscription:
    target = function or workflow
    return Subscription(
        name=f"{kind}:{i}:{target}",
        queue=record_queue(kind, i, target),
        function=function,
        make_event=record_event,
        delivery=delivery,
        dead_letter=dead_letter_queue(delivery, target),
        workflow=workflow,
        visibility_ms=int(visibility_s * 1000),
    )


def record_queue(kind: str, i: int, function: str) -> str:
    return f"!{kind}.{i}.{function}"


def schedule_queue(sc: ScheduleTrigger) -> str:
    return f"!schedule.{sc.name}"
