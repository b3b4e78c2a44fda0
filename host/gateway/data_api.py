"""The admin API's debugging view of the managed services: tables, buckets, queues.

Writes made here go through the same staged effects as a guest's and are committed
the same way, so a blob written by an operator produces the same storage event as
one written by a function. Keys in URLs are UTF-8 strings; table values are JSON.
"""

from __future__ import annotations

import json
import time
from typing import Any

import msgpack
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from host.common.jsonable import jsonable
from host.errors import InvalidRequest, NotFound
from host.manifest.grants import TOPIC
from host.platform.platform import Platform
from host.services.keys import check_key, check_name, successor
from host.services.queues import new_message

ADMIN_SOURCE = "admin"


class DataApi:
    """Routes under ``/_admin/tables``, ``/_admin/buckets`` and ``/_admin/queues``."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.services = platform.services

    def routes(self, guard: Any) -> list[Route]:
        return [
            Route("/tables/{table}/keys", guard(self.scan), methods=["GET"]),
            Route("/tables/{table}/keys/{key:path}", guard(self.kv_get), methods=["GET"]),
            Route("/tables/{table}/keys/{key:path}", guard(self.kv_put), methods=["PUT"]),
            Route("/tables/{table}/keys/{key:path}", guard(self.kv_delete), methods=["DELETE"]),
            Route("/buckets/{bucket}/objects", guard(self.blob_list), methods=["GET"]),
            Route("/buckets/{bucket}/objects/{key:path}", guard(self.blob_get), methods=["GET"]),
            Route("/buckets/{bucket}/objects/{key:path}", guard(self.blob_put), methods=["PUT"]),
            Route(
                "/buckets/{bucket}/objects/{key:path}", guard(self.blob_delete), methods=["DELETE"]
            ),
            Route("/queues", guard(self.queue_stats), methods=["GET"]),
            Route("/queues/{queue}/messages", guard(self.queue_peek), methods=["GET"]),
            Route("/queues/{queue}/messages", guard(self.queue_send), methods=["POST"]),
            Route("/queues/{queue}/dlq", guard(self.dlq_peek), methods=["GET"]),
            Route("/queues/{queue}/dlq/replay", guard(self.dlq_replay), methods=["POST"]),
            Route("/events/{topic}", guard(self.publish), methods=["POST"]),
            Route("/schedules", guard(self.schedules), methods=["GET"]),
        ]

    # --- tables ----------------------------------------------------------------------

    async def scan(self, request: Request) -> Response:
        table = check_name("table", request.path_params["table"])
        prefix = request.query_params.get("prefix", "").encode()
        cursor = request.query_params.get("cursor")
        limit = min(int(request.query_params.get("limit", "100")), 1000)
        start = bytes.fromhex(cursor) if cursor else prefix
        end = successor(prefix) if prefix else None
        with self.services.begin(ADMIN_SOURCE) as effects:
            items, nxt = effects.kv_scan(table, start, end, limit)
        return JSONResponse(
            {
                "items": [
                    {"key": jsonable(k), "value": jsonable(msgpack.unpackb(v)), "version": ver}
                    for k, v, ver in items
                ],
                "cursor": nxt.hex() if nxt is not None else None,
            }
        )

    async def kv_get(self, request: Request) -> Response:
        table, key = self._table_key(request)
        with self.services.begin(ADMIN_SOURCE) as effects:
            found = effects.kv_get(table, key)
        if found is None:
            raise NotFound(f"table {table} has no key {key.decode(errors='replace')!r}")
        return JSONResponse({"value": jsonable(msgpack.unpackb(found[0])), "version": found[1]})

    async def kv_put(self, request: Request) -> Response:
        table, key = self._table_key(request)
        try:
            value = json.loads(await request.body())
        except json.JSONDecodeError as e:
            raise InvalidRequest(f"the body must be the value as JSON: {e}") from None
        effects = self.services.begin(ADMIN_SOURCE)
        version = effects.kv_put(table, key, msgpack.packb(value))
        effects.commit()
        return JSONResponse({"version": version})

    async def kv_delete(self, request: Request) -> Response:
        table, key = self._table_key(request)
        effects = self.services.begin(ADMIN_SOURCE)
        deleted = effects.kv_delete(table, key)
        effects.commit()
        return JSONResponse({"deleted": deleted})

    def _table_key(self, request: Request) -> tuple[str, bytes]:
        table = check_name("table", request.path_params["table"])
        return table, check_key(request.path_params["key"])

    # --- buckets ---------------------------------------------------------------------

    async def blob_list(self, request: Request) -> Response:
        bucket = check_name("bucket", request.path_params["bucket"])
        prefix = request.query_params.get("prefix", "").encode()
        cursor = request.query_params.get("cursor")
        limit = min(int(request.query_params.get("limit", "100")), 1000)
        start = bytes.fromhex(cursor) if cursor else b""
        with self.services.begin(ADMIN_SOURCE) as effects:
            infos, nxt = effects.blob_list(bucket, prefix, start, limit)
        return JSONResponse(
            {
                "items": [{"key": jsonable(i.key), **i.to_dict()} for i in infos],
                "cursor": nxt.hex() if nxt is not None else None,
            }
        )

    async def blob_get(self, request: Request) -> Response:
        bucket, key = self._bucket_key(request)
        with self.services.begin(ADMIN_SOURCE) as effects:
            found = effects.blob_get(bucket, key)
        if found is None:
            raise NotFound(f"bucket {bucket} has no object {key.decode(errors='replace')!r}")
        data, info = found
        return Response(data, media_type=info.content_type, headers={"etag": info.etag})

    async def blob_put(self, request: Request) -> Response:
        bucket, key = self._bucket_key(request)
        data = await request.body()
        content_type = request.headers.get("content-type", "application/octet-stream")
        effects = self.services.begin(ADMIN_SOURCE)
        info = effects.blob_put(bucket, key, data, content_type, {})
        effects.commit()
        return JSONResponse({"size": info.size, "etag": info.etag}, status_code=201)

    async def blob_delete(self, request: Request) -> Response:
        bucket, key = self._bucket_key(request)
        effects = self.services.begin(ADMIN_SOURCE)
        deleted = effects.blob_delete(bucket, key)
        effects.commit()
        return JSONResponse({"deleted": deleted})

    def _bucket_key(self, request: Request) -> tuple[str, bytes]:
        bucket = check_name("bucket", request.path_params["bucket"])
        return bucket, check_key(request.path_params["key"])

    # --- queues ----------------------------------------------------------------------

    async def queue_stats(self, request: Request) -> Response:
        s = self.services
        now = int(time.time() * 1000)
        with s.storage.read() as txn:
            stats = {q: s.queues.stats(txn, q, now).__dict__ for q in s.queues.names(txn)}
        return JSONResponse({"queues": stats})

    async def queue_peek(self, request: Request) -> Response:
        queue = check_name("queue", request.path_params["queue"])
        limit = min(int(request.query_params.get("limit", "20")), 1000)
        with self.services.storage.read() as txn:
            messages = self.services.queues.peek(txn, queue, limit)
        return JSONResponse({"messages": [jsonable(m.to_dict()) for m in messages]})

    async def queue_send(self, request: Request) -> Response:
        queue = check_name("queue", request.path_params["queue"])
        try:
            body = json.loads(await request.body())
        except json.JSONDecodeError as e:
            raise InvalidRequest(f"the body must be the message as JSON: {e}") from None
        delay = int(request.query_params.get("delay_ms", "0"))
        effects = self.services.begin(ADMIN_SOURCE)
        message_id = effects.queue_send(queue, msgpack.packb(body), delay)
        effects.commit()
        return JSONResponse({"id": message_id}, status_code=201)

    # --- triggers: dead letters, events, schedules ----------------------------------

    def _dead_letter(self, queue: str) -> str:
        for t in self.platform.registry.triggers().queue:
            if t.queue == queue:
                return t.delivery.dead_letter or f"{queue}.dlq"
        return f"{queue}.dlq"

    async def dlq_peek(self, request: Request) -> Response:
        queue = check_name("queue", request.path_params["queue"])
        dlq = self._dead_letter(queue)
        limit = min(int(request.query_params.get("limit", "20")), 1000)
        with self.services.storage.read() as txn:
            messages = self.services.queues.peek(txn, dlq, limit)
        return JSONResponse(
            {"dead_letter": dlq, "messages": [jsonable(m.to_dict()) for m in messages]}
        )

    async def dlq_replay(self, request: Request) -> Response:
        """Send every dead-lettered message back to its queue, attempts reset."""
        queue = check_name("queue", request.path_params["queue"])
        dlq = self._dead_letter(queue)
        s = self.services
        now = int(time.time() * 1000)

        def write(txn: Any) -> int:
            moved = 0
            for m in s.queues.peek(txn, dlq, 1 << 62):
                s.queues.ack(txn, dlq, m.id)
                s.queues.send(txn, new_message(queue, m.body, now))
                moved += 1
            return moved

        moved = s.storage.write(write)
        return JSONResponse({"replayed": moved, "from": dlq, "to": queue})

    async def publish(self, request: Request) -> Response:
        topic = request.path_params["topic"]
        if not TOPIC.match(topic) or "*" in topic or "#" in topic:
            raise InvalidRequest(f"{topic!r} is not a topic name like 'order.created'")
        try:
            payload = json.loads(await request.body())
        except json.JSONDecodeError as e:
            raise InvalidRequest(f"the body must be the event payload as JSON: {e}") from None
        effects = self.services.begin(ADMIN_SOURCE)
        event_id = effects.event_publish(topic, msgpack.packb(payload))
        effects.commit()
        return JSONResponse({"id": event_id}, status_code=201)

    async def schedules(self, request: Request) -> Response:
        from host.common.clock import WallClock
        from host.triggers.schedules import Scheduler

        triggers = self.platform.registry.triggers().schedule
        nxt = Scheduler(self.services, triggers, WallClock()).next_fire_times()
        return JSONResponse(
            {
                "schedules": [
                    {
                        "name": t.name,
                        "cron": t.cron,
                        "timezone": t.timezone,
                        "function": t.function,
                        "next_ms": nxt[t.name],
                    }
                    for t in triggers
                ]
            }
        )
