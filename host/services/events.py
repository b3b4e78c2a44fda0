"""The event bus's and the buckets' records, as they go into the outbox.

``publish(topic, payload)`` and every blob put or delete produce one record here;
the effects append it to the outbox (``outbox.py``) in the transaction that commits
the write that caused it, so a fan-out that reads the outbox in order sees each
record once, and only for writes that happened. A record is a plain map, the fields
of the ``event`` and ``storage`` envelopes of guest_sdk/ABI.md, so fan-out hands it
to subscribers without translation; its ``id`` is stable and sorts by time.
"""

from __future__ import annotations

from typing import Any

from host.common.ids import sortable_id
from host.services.blobs import BlobInfo

Record = dict[str, Any]


def event_record(
    topic: str, payload: bytes, source: str, now_ms: int, traceparent: str | None = None
) -> Record:
    """A published event; ``payload`` is msgpack bytes, passed through untouched. A
    ``traceparent`` (the publisher's span, when tracing is on) travels with it to the
    subscribers' event envelope."""
    record: Record = {
        "kind": "event",
        "id": sortable_id("evt", now_ms),
        "topic": topic,
        "payload": payload,
        "source": source,
        "time_ms": now_ms,
    }
    return _traced(traceparent, record)


def storage_put(bucket: str, info: BlobInfo, traceparent: str | None = None) -> Record:
    """An object was written (created or replaced); a ``traceparent`` (the writer's
    span, when tracing is on) travels to the storage envelope, as an event's does."""
    return _traced(
        traceparent,
        {
            "kind": "storage",
            "id": sortable_id("evt", info.modified_ms),
            "bucket": bucket,
            "key": info.key,
            "op": "put",
            "size": info.size,
            "content_type": info.content_type,
            "etag": info.etag,
            "time_ms": info.modified_ms,
        },
    )


def storage_delete(bucket: str, key: bytes, now_ms: int, traceparent: str | None = None) -> Record:
    """An object was deleted."""
    return _traced(
        traceparent,
        {
            "kind": "storage",
            "id": sortable_id("evt", now_ms),
            "bucket": bucket,
            "key": key,
            "op": "delete",
            "time_ms": now_ms,
        },
    )


def _traced(traceparent: str | None, record: Record) -> Record:
    if traceparent is not None:
        record["traceparent"] = traceparent
    return record
