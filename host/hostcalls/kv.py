"""The table imports: ``kv_get``, ``kv_put``, ``kv_delete``, ``kv_scan``, ``kv_query``.

A value is at most ``MAX_VALUE_BYTES`` (``too_large`` above it); a scan page stops
early, with a cursor, once its values pass ``MAX_PAGE_BYTES``, so one reply never
holds a thousand large values.
"""

from __future__ import annotations

from typing import Any

import msgpack

from host.errors import InvalidArgument, TooLarge
from host.hostcalls import fields as f
from host.hostcalls.context import ServiceAccess
from host.hostcalls.wire import SMALL_REQUEST_BYTES, Operation, Raw
from host.services.keys import check_key, successor
from host.services.kv import MAX_PAGE_BYTES, MAX_VALUE_BYTES
from host.services.query import IndexQuery

_VALUE_KEY = b"\x82" + msgpack.packb("value")
_VERSION_KEY = msgpack.packb("version")


def kv_get(a: ServiceAccess, req: dict[str, Any]) -> Any:
    table = f.name(req, "table")
    a.check("tables", table, write=False)
    found = a.effects.kv_get(table, check_key(req.get("key")))
    if found is None:
        return None
    # the reply's map, spliced by hand: kv_get is the hot path of a guest's reads
    return Raw(_VALUE_KEY + found[0] + _VERSION_KEY + msgpack.packb(found[1]))


def kv_put(a: ServiceAccess, req: dict[str, Any]) -> Any:
    table = f.name(req, "table")
    a.check("tables", table, write=True)
    key = check_key(req.get("key"))
    value = f.raw(req, "value")
    if len(value) > MAX_VALUE_BYTES:
        raise TooLarge(f"a table value is at most {MAX_VALUE_BYTES} bytes, got {len(value)}")
    a.charge(len(key) + len(value))
    version = a.effects.kv_put(
        table,
        key,
        value,
        if_absent=bool(req.get("if_absent", False)),
        if_version=f.opt_int(req, "if_version"),
    )
    return {"version": version}


def kv_delete(a: ServiceAccess, req: dict[str, Any]) -> Any:
    table = f.name(req, "table")
    a.check("tables", table, write=True)
    key = check_key(req.get("key"))
    a.charge(len(key))
    return {"deleted": a.effects.kv_delete(table, key, f.opt_int(req, "if_version"))}


def kv_scan(a: ServiceAccess, req: dict[str, Any]) -> Any:
    table = f.name(req, "table")
    a.check("tables", table, write=False)
    prefix = f.opt_bytes(req, "prefix") or b""
    start = max(f.opt_bytes(req, "cursor") or f.opt_bytes(req, "start") or b"", prefix)
    end = f.opt_bytes(req, "end")
    if prefix:
        bound = successor(prefix)
        end = bound if end is None or (bound is not None and bound < end) else end
    items, cursor = a.effects.kv_scan(table, start, end, f.limit(req), MAX_PAGE_BYTES)
    return {"items": [[k, Raw(v), ver] for k, v, ver in items], "cursor": cursor}


def kv_query(a: ServiceAccess, req: dict[str, Any]) -> Any:
    table = f.name(req, "table")
    a.check("tables", table, write=False)
    index = req.get("index")
    if not isinstance(index, str):
        raise InvalidArgument("the request needs 'index' (a string: the indexed field)")
    reverse = req.get("reverse") or False
    if not isinstance(reverse, bool):
        raise InvalidArgument("'reverse' must be a boolean")
    query = IndexQuery.of(
        table,
        a.effects.kv_indexes(table),
        index,
        req.get("eq"),
        req.get("start"),
        req.get("end"),
        reverse,
    )
    cursor = f.opt_bytes(req, "cursor")
    after = query.after(cursor) if cursor is not None else None
    items, more = a.effects.kv_query(query, after, f.limit(req), MAX_PAGE_BYTES)
    cursor = query.cursor(items[-1][0]) if more and items else None
    return {"items": [[k, Raw(v), ver] for _, k, v, ver in items], "cursor": cursor}


OPERATIONS = (
    Operation("kv_get", kv_get),
    Operation("kv_put", kv_put, MAX_VALUE_BYTES + SMALL_REQUEST_BYTES, opaque=frozenset({"value"})),
    Operation("kv_delete", kv_delete),
    Operation("kv_scan", kv_scan),
    Operation("kv_query", kv_query),
)
