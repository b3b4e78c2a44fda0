"""The admin API's view of key-value tables: scan, query an index (and list a table's
indexes), get, put and delete.

Writes go through the same staged effects as a guest's and are committed the same
way. Keys in URLs are UTF-8 strings; values are JSON. A query's bounds are query
parameters read as the index's type: an ``int`` index takes decimal integers, a
``string`` or ``bytes`` index the parameter's UTF-8 bytes.
"""

from __future__ import annotations

from typing import Any

import msgpack
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from host.common.jsonable import jsonable
from host.errors import InvalidRequest, NotFound, TooLarge
from host.gateway.json_body import parse_json
from host.gateway.query import cursor_of, limit_of
from host.services.interface import ServiceSet
from host.services.keys import check_key, check_name, successor
from host.services.kv import MAX_PAGE_BYTES, MAX_VALUE_BYTES
from host.services.query import IndexQuery


class TablesApi:
    """Routes under ``/_admin/tables``."""

    def __init__(self, services: ServiceSet, source: str) -> None:
        self.services = services
        self.source = source

    def routes(self, guard: Any) -> list[Route]:
        return [
            Route("/tables/{table}/keys", guard(self.scan), methods=["GET"]),
            Route("/tables/{table}/query", guard(self.query), methods=["GET"]),
            Route("/tables/{table}/indexes", guard(self.indexes), methods=["GET"]),
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
            items, nxt = effects.kv_scan(table, start, end, min(limit, 1000), MAX_PAGE_BYTES)
        return {
            "items": [
                {"key": jsonable(k), "value": _json(v), "version": ver} for k, v, ver in items
            ],
            "cursor": nxt.hex() if nxt is not None else None,
        }

    async def indexes(self, request: Request) -> Response:
        table = check_name("table", request.path_params["table"])
        with self.services.begin(self.source) as effects:
            return JSONResponse({"table": table, "indexes": effects.kv_indexes(table)})

    async def query(self, request: Request) -> Response:
        q = request.query_params
        reverse = q.get("reverse", "false").lower()
        if reverse not in ("true", "false", "1", "0"):
            raise InvalidRequest(f"reverse must be true or false, not {reverse!r}")
        bounds = {b: q.get(b) for b in ("eq", "start", "end")}
        page = self.query_table(
            request.path_params["table"],
            q.get("index", ""),
            bounds,
            q.get("cursor"),
            limit_of(q, 100),
            reverse in ("true", "1"),
        )
        return JSONResponse(page)

    def query_table(
        self,
        table: str,
        index: str,
        bounds: dict[str, str | None],
        cursor: str | None,
        limit: int,
        reverse: bool = False,
    ) -> dict[str, Any]:
        """One page of ``table`` ordered by ``index``: ``bounds`` (``eq``, ``start``,
        ``end``) as text, read as the index's type; items and the next cursor (hex)."""
        table = check_name("table", table)
        if not index:
            raise InvalidRequest("a query needs ?index= (an indexed field of the table)")
        with self.services.begin(self.source) as effects:
            specs = effects.kv_indexes(table)
            typed = {b: _typed(specs.get(index, ""), b, v) for b, v in bounds.items()}
            query = IndexQuery.of(table, specs, index, reverse=reverse, **typed)
            after = query.after(cursor_of(cursor)) if cursor else None
            items, more = effects.kv_query(query, after, min(limit, 1000), MAX_PAGE_BYTES)
        return {
            "items": [
                {"key": jsonable(k), "value": _json(v), "version": ver} for _, k, v, ver in items
            ],
            "cursor": query.cursor(items[-1][0]).hex() if more and items else None,
        }

    async def get(self, request: Request) -> Response:
        table, key = _table_key(request)
        with self.services.begin(self.source) as effects:
            found = effects.kv_get(table, key)
        if found is None:
            raise NotFound(f"table {table} has no key {key.decode(errors='replace')!r}")
        return JSONResponse({"value": _json(found[0]), "version": found[1]})

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


def _typed(kind: str, name: str, text: str | None) -> object:
    """A query-string bound as the value an index of type ``kind`` holds."""
    if text is None:
        return None
    if kind == "int":
        try:
            return int(text)
        except ValueError:
            raise InvalidRequest(
                f"{name} must be an integer (the index is int), not {text!r}"
            ) from None
    return text.encode() if kind == "bytes" else text


def _json(value: bytes) -> Any:
    """A stored value for a JSON reply (a guest may have used any scalar as a map key)."""
    return jsonable(msgpack.unpackb(value, strict_map_key=False))
