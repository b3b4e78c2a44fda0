"""The admin API's view of key-value tables: scan, get, put and delete keys.

Writes go through the same staged effects as a guest's and are committed the same
way. Keys in URLs are UTF-8 strings; values are JSON.
"""

from __future__ import annotations

from typing import Any

import msgpack
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from host.common.jsonable import jsonable
from host.errors import NotFound, TooLarge
from host.gateway.json_body import parse_json
from host.gateway.query import cursor_of, limit_of
from host.services.keys import check_key, check_name, successor
from host.services.kv import MAX_VALUE_BYTES
from host.services.services import Services


class TablesApi:
    """Routes under ``/_admin/tables``."""

    def __init__(self, services: Services, source: str) -> None:
        self.services = services
        self.source = source

    def routes(self, guard: Any) -> list[Route]:
        return [
            Route("/tables/{table}/keys", guard(self.scan), methods=["GET"]),
            Route("/tables/{table}/keys/{key:path}", guard(self.get), methods=["GET"]),
            Route("/tables/{table}/keys/{key:path}", guard(self.put), methods=["PUT"]),
            Route("/tables/{table}/keys/{key:path}", guard(self.delete), methods=["DELETE"]),
        ]

    async def scan(self, request: Request) -> Response:
        q = request.query_params
        page = self.scan_table(
            request.path_params["table"], q.get("prefix", ""), q.get("cursor"), limit_of(q, 100)
        )
        return JSONResponse(page)

    def scan_table(self, table: str, prefix: str, cursor: str | None, limit: int) -> dict[str, Any]:
        """One page of ``table``'s keys under ``prefix``: items and the next cursor."""
        table = check_name("table", table)
        raw_prefix = prefix.encode()
        start = cursor_of(cursor) if cursor else raw_prefix
        end = successor(raw_prefix) if raw_prefix else None
        with self.services.begin(self.source) as effects:
            items, nxt = effects.kv_scan(table, start, end, min(limit, 1000))
        return {
            "items": [
                {"key": jsonable(k), "value": jsonable(msgpack.unpackb(v)), "version": ver}
                for k, v, ver in items
            ],
            "cursor": nxt.hex() if nxt is not None else None,
        }

    async def get(self, request: Request) -> Response:
        table, key = _table_key(request)
        with self.services.begin(self.source) as effects:
            found = effects.kv_get(table, key)
        if found is None:
            raise NotFound(f"table {table} has no key {key.decode(errors='replace')!r}")
        return JSONResponse({"value": jsonable(msgpack.unpackb(found[0])), "version": found[1]})

    async def put(self, request: Request) -> Response:
        table, key = _table_key(request)
        value = parse_json(await request.body(), "the value (the JSON body)")
        packed = msgpack.packb(value)
        if len(packed) > MAX_VALUE_BYTES:
            raise TooLarge(f"a table value is at most {MAX_VALUE_BYTES} bytes, got {len(packed)}")
        effects = self.services.begin(self.source)
        version = effects.kv_put(table, key, packed)
        effects.commit()
        return JSONResponse({"version": version})

    async def delete(self, request: Request) -> Response:
        table, key = _table_key(request)
        effects = self.services.begin(self.source)
        deleted = effects.kv_delete(table, key)
        effects.commit()
        return JSONResponse({"deleted": deleted})


def _table_key(request: Request) -> tuple[str, bytes]:
    table = check_name("table", request.path_params["table"])
    return table, check_key(request.path_params["key"])
