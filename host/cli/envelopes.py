"""The events ``nimbus invoke`` hands a function: the envelopes of guest_sdk/ABI.md.

A local run should see what the served app would give it: an ``http`` event whose
``params`` come from the app's route table, a ``queue`` event for the queue its
trigger reads, a ``schedule`` event named after its schedule, and so on. The trigger
settings come from the function's own ``[[triggers.KIND]]`` when the app has one;
otherwise plausible defaults, named so they are easy to spot.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from host.common.ids import new_id
from host.errors import InvalidRequest
from host.gateway.routing import RouteTable
from host.manifest.app import Manifest
from host.manifest.triggers import KINDS as TRIGGER_KINDS


def http_event(
    method: str, target: str, body: str | None, routes: Manifest | None, function: str | None
) -> dict[str, Any]:
    """An ``http`` event; with an app, routed through its table as the gateway would."""
    url = urlsplit(target)
    path = url.path or "/"
    params: dict[str, str] = {}
    if routes is not None and function is not None:
        params = _route(routes, method.upper(), path, function)
    return {
        "kind": "http",
        "method": method.upper(),
        "path": path,
        "params": params,
        "query": dict(parse_qsl(url.query)),
        "raw_query": url.query,
        "headers": {"host": "localhost"},
        "body": (body or "").encode(),
    }


def _route(app: Manifest, method: str, path: str, function: str) -> dict[str, str]:
    mine = [r for r in app.routes if r.function == function]
    listed = ", ".join(f"{'|'.join(r.methods)} {r.path}" for r in mine) or "none"
    found = RouteTable(list(app.routes)).match(method, path)
    if found is None:
        raise InvalidRequest(
            f"no route of {app.path} matches {method} {path}; {function}'s routes: {listed}"
        )
    if isinstance(found, list):
        raise InvalidRequest(
            f"{method} {path}: the route allows {', '.join(found)}, not {method}; "
            f"{function}'s routes: {listed}"
        )
    if found.route.workflow:
        raise InvalidRequest(
            f"{method} {path} starts the workflow {found.route.workflow!r}; "
            f"run it with `nimbus wf start {found.route.workflow}` on a served app"
        )
    if found.route.function != function:
        raise InvalidRequest(
            f"{method} {path} is routed to {found.route.function!r}, not {function!r}; "
            f"{function}'s routes: {listed}"
        )
    return found.params


def trigger_event(
    kind: str, app: Manifest | None, function: str, given: Any = None
) -> dict[str, Any]:
    """The envelope a ``kind`` trigger would deliver to ``function``; ``given`` is the
    message body (queue), the payload (event) or fields to set (schedule, storage)."""
    if kind not in TRIGGER_KINDS:
        raise InvalidRequest(f"--trigger {kind}: expected one of {', '.join(TRIGGER_KINDS)}")
    now = int(time.time() * 1000)
    trig = _trigger(app, kind, function)
    if kind == "queue":
        mid = new_id("msg")
        queue = trig.queue if trig is not None else "local"
        body = {} if given is None else given
        message = {"id": mid, "body": body, "attempt": 1, "enqueued_ms": now}
        return {"kind": "queue", "id": mid, "queue": queue, "messages": [message]}
    if kind == "event":
        topic = trig.topic.replace("#", "example").replace("*", "example") if trig else "local"
        return {
            "kind": "event",
            "id": new_id("evt"),
            "topic": topic,
            "payload": {} if given is None else given,
            "source": "nimbus invoke",
            "time_ms": now,
        }
    fields = _fields(kind, given)
    if kind == "schedule":
        name = trig.name if trig else "local"
        scheduled = now - now % 60_000
        return {
            "kind": "schedule",
            "id": f"{name}@{scheduled}",
            "schedule": name,
            "cron": trig.cron if trig else "* * * * *",
            "timezone": trig.timezone if trig else "UTC",
            "scheduled_ms": scheduled,
            **fields,
        }
    key = f"{trig.prefix}example{trig.suffix}" if trig else "example.txt"
    return {
        "kind": "storage",
        "id": new_id("evt"),
        "bucket": trig.bucket if trig else "local",
        "key": key,
        "op": "put",
        "size": 0,
        "content_type": "application/octet-stream",
        "etag": "",
        "time_ms": now,
        **fields,
    }


def _fields(kind: str, given: Any) -> dict[str, Any]:
    if given is None:
        return {}
    if not isinstance(given, dict):
        raise InvalidRequest(
            f"--event with --trigger {kind} sets fields of the envelope: give a JSON object, "
            'e.g. \'{"key": "a.png"}\''
        )
    return given


def _trigger(app: Manifest | None, kind: str, function: str) -> Any:
    if app is None:
        return None
    return next((t for t in getattr(app.triggers, kind) if t.function == function), None)
