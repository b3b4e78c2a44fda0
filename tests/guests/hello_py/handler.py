"""A Python function: hello over HTTP, its event echoed for any other kind, and
misbehaviour on request (an endless loop, a memory bomb, an exception)."""

import nimbus


def handle(event: nimbus.Event):
    if isinstance(event, nimbus.HttpEvent):
        name = event.params.get("name") or event.query.get("name") or "world"
        nimbus.log.info(f"saying hello to {name}")
        return nimbus.Response.text(f"hello, {name}\n")
    if isinstance(event, nimbus.InvokeEvent):
        what = (event.input or {}).get("do") if isinstance(event.input, dict) else None
        if what == "loop":
            while True:
                pass
        if what == "bomb":
            hoard = []
            while True:
                hoard.append(bytearray(1 << 20))
        if what == "raise":
            raise ValueError("asked to fail")
        if what == "random":
            return {"now": nimbus.now_ns(), "random": nimbus.random_bytes(16)}
    return {"kind": event.kind, "id": event.id, "type": type(event).__name__}
