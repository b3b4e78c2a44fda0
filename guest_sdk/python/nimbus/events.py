"""Typed events, one class per trigger kind, built from the ABI's envelope."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgpack


@dataclass
class Event:
    """What every event carries; ``raw`` is the whole envelope as decoded."""

    kind: str
    id: str
    request_id: str
    function: str
    deadline_ms: int
    env: dict[str, str]
    raw: dict[str, Any] = field(repr=False)


@dataclass
class Auth:
    """The caller, on a route with an authentication policy (ABI.md, ``http``)."""

    kind: str  # "api_key", "jwt" or "authorizer"
    subject: str
    claims: dict[str, Any] = field(default_factory=dict)
    key_id: str | None = None


@dataclass
class HttpEvent(Event):
    method: str = "GET"
    path: str = "/"
    params: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    #: None on a route without an authentication policy
    auth: Auth | None = None

    def json(self) -> Any:
        import json

        return json.loads(self.body) if self.body else None


@dataclass
class AuthorizerEvent(Event):
    """A route's authorizer is asked whether a call may pass; answer with
    ``Response.authorize(allow, subject, context)``."""

    method: str = "GET"
    path: str = "/"
    route: str = "/"
    params: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    source_ip: str = ""
    #: the credential: the value of the policy's identity header
    identity: str = ""


@dataclass
class Message:
    id: str
    body: Any
    attempt: int
    enqueued_ms: int


@dataclass
class QueueEvent(Event):
    queue: str = ""
    messages: list[Message] = field(default_factory=list)


@dataclass
class ScheduleEvent(Event):
    schedule: str = ""
    cron: str = ""
    timezone: str = "UTC"
    scheduled_ms: int = 0


@dataclass
class StorageEvent(Event):
    bucket: str = ""
    key: str = ""
    op: str = ""
    size: int | None = None
    content_type: str | None = None
    etag: str | None = None
    time_ms: int = 0


@dataclass
class BusEvent(Event):
    topic: str = ""
    payload: Any = None
    source: str = ""
    time_ms: int = 0


@dataclass
class WorkflowEvent(Event):
    workflow: str = ""
    run_id: str = ""
    step: str = ""
    attempt: int = 1
    input: Any = None


@dataclass
class InvokeEvent(Event):
    input: Any = None


def decode(raw_bytes: bytes) -> Event:
    """The typed event of a msgpack envelope."""
    return from_map(msgpack.unpackb(raw_bytes, raw=False, strict_map_key=False))


def from_map(raw: dict[Any, Any]) -> Event:
    """The typed event of an envelope already decoded."""
    common = dict(
        kind=raw.get("kind", ""),
        id=raw.get("id", ""),
        request_id=raw.get("request_id", ""),
        function=raw.get("function", ""),
        deadline_ms=raw.get("deadline_ms", 0),
        env=raw.get("env") or {},
        raw=raw,
    )
    kind = common["kind"]
    if kind == "http":
        return HttpEvent(
            **common,
            method=raw.get("method", "GET"),
            path=raw.get("path", "/"),
            params=raw.get("params") or {},
            query=raw.get("query") or {},
            headers=raw.get("headers") or {},
            body=raw.get("body") or b"",
            auth=_auth(raw.get("auth")),
        )
    if kind == "authorizer":
        return AuthorizerEvent(
            **common,
            method=raw.get("method", "GET"),
            path=raw.get("path", "/"),
            route=raw.get("route", "/"),
            params=raw.get("params") or {},
            query=raw.get("query") or {},
            headers=raw.get("headers") or {},
            source_ip=raw.get("source_ip", ""),
            identity=raw.get("identity", ""),
        )
    if kind == "queue":
        messages = [
            Message(m["id"], m.get("body"), m.get("attempt", 1), m.get("enqueued_ms", 0))
            for m in raw.get("messages") or []
        ]
        return QueueEvent(**common, queue=raw.get("queue", ""), messages=messages)
    if kind == "schedule":
        return ScheduleEvent(
            **common,
            schedule=raw.get("schedule", ""),
            cron=raw.get("cron", ""),
            timezone=raw.get("timezone", "UTC"),
            scheduled_ms=raw.get("scheduled_ms", 0),
        )
    if kind == "storage":
        return StorageEvent(
            **common,
            bucket=raw.get("bucket", ""),
            key=raw.get("key", ""),
            op=raw.get("op", ""),
            size=raw.get("size"),
            content_type=raw.get("content_type"),
            etag=raw.get("etag"),
            time_ms=raw.get("time_ms", 0),
        )
    if kind == "event":
        return BusEvent(
            **common,
            topic=raw.get("topic", ""),
            payload=raw.get("payload"),
            source=raw.get("source", ""),
            time_ms=raw.get("time_ms", 0),
        )
    if kind == "workflow":
        return WorkflowEvent(
            **common,
            workflow=raw.get("workflow", ""),
            run_id=raw.get("run_id", ""),
            step=raw.get("step", ""),
            attempt=raw.get("attempt", 1),
            input=raw.get("input"),
        )
    return InvokeEvent(**common, input=raw.get("input"))


def _auth(raw: Any) -> Auth | None:
    if not isinstance(raw, dict):
        return None
    return Auth(
        kind=raw.get("kind", ""),
        subject=raw.get("subject", ""),
        claims=raw.get("claims") or {},
        key_id=raw.get("key_id"),
    )
