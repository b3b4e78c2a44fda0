"""A Python function: hello over HTTP, each event echoed back typed for any other kind,
and misbehaviour on request (an endless loop, a memory bomb, an exception, reaching
for files or the network, a module-level counter)."""

import nimbus

calls = 0


def handle(event: nimbus.Event):
    global calls
    calls += 1
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
        if what == "counter":
            return calls
        if what == "escape":
            return {"file": _try_file(), "network": _try_network()}
    fields = {k: v for k, v in vars(event).items() if k not in ("raw", "env")}
    return {"type": type(event).__name__, **fields}


def _try_file() -> str:
    try:
        with open("/etc/passwd") as f:
            return "read " + f.read(10)
    except Exception as e:
        return f"denied: {type(e).__name__}"


def _try_network() -> str:
    try:
        import socket

        socket.create_connection(("127.0.0.1", 9), timeout=1)
        return "connected"
    except Exception as e:
        return f"denied: {type(e).__name__}"
