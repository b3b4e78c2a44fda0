"""Table writes and index queries through the Python SDK, as listed in the input.

input: {"ops": [{"op": "put", "key": "k", "value": {...}} | {"op": "query", "index":
"at", "eq": 1, ...} | {"op": "all", "index": "at", "limit": 2, ...}], "fail": bool}
on table "orders"; one result per op: {"ok": ...} or {"err": the exception's name}.
"all" pages through every cursor and returns the keys.
"""

import nimbus
from nimbus import tables


def run(op: dict):
    kind = op.pop("op")
    if kind == "put":
        return tables.put("orders", op["key"], op["value"])
    if kind == "delete":
        return tables.delete("orders", op["key"])
    if kind == "query":
        items, cursor = tables.query("orders", **op)
        return {"items": items, "cursor": cursor}
    if kind == "all":
        keys, cursor = [], None
        while True:
            items, cursor = tables.query("orders", cursor=cursor, **op)
            keys += [k for k, _, _ in items]
            if cursor is None:
                return keys
    raise ValueError(kind)


def handle(event: nimbus.InvokeEvent):
    out = []
    for op in event.input["ops"]:
        try:
            out.append({"ok": run(dict(op))})
        except nimbus.ServiceError as e:
            out.append({"err": type(e).__name__, "message": str(e)})
    if event.input.get("fail"):
        raise RuntimeError("failing after writes")
    return out
