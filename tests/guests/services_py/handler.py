"""Every service wrapper of the Python SDK, in one invocation; then fails if asked."""

import nimbus
from nimbus import blobs, events, queues, tables


def handle(event: nimbus.InvokeEvent):
    out = {}
    out["put"] = tables.put("t", "k", {"n": 1})
    out["get"] = tables.get("t", "k")
    try:
        tables.put("t", "k", 2, if_absent=True)
    except nimbus.Conflict:
        out["conflict"] = True
    out["scan"] = tables.scan("t")[0]
    out["blob"] = blobs.put("b", "x.txt", b"data", "text/plain")["size"]
    out["blob_get"] = blobs.get("b", "x.txt")["data"]
    out["blob_list"] = [i["key"] for i in blobs.list("b")[0]]
    out["sent"] = queues.send("q", {"job": 1}).startswith("msg-")
    out["published"] = events.publish("order.created", {"id": 1}).startswith("evt-")
    try:
        tables.get("secret", "k")
    except nimbus.PermissionDenied as e:
        out["denied"] = str(e)
    if isinstance(event.input, dict) and event.input.get("fail"):
        raise RuntimeError("failing after writes")
    return out
