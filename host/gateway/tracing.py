"""The span of each HTTP request to a function or to the admin API, when tracing is on.

A pure ASGI middleware (no task of its own, so the span stays current for the whole
request, inline invocations and worker threads included): it continues the caller's
W3C ``traceparent``, names the span after the method and path, and records the
status and the request id the gateway answered with. The platform makes each
invocation's span a child of it (host/telemetry/tracing.py), and what an admin
request writes (a blob, an event, a message) carries it to the functions it starts.
Installed only when tracing is on (the console is not traced).
"""

from __future__ import annotations

from typing import Any

from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from host.common.tracecontext import context_from
from host.gateway.asgi import REQUEST_ID
from host.telemetry.tracing import ATTR_REQUEST_ID, Tracing

_TRACEPARENT = b"traceparent"
_REQUEST_ID = REQUEST_ID.encode()


class TracingMiddleware:
    """Wraps every HTTP request to the app it is given in a server span."""

    def __init__(self, app: ASGIApp, tracing: Tracing) -> None:
        self.app, self.tracing = app, tracing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        tracer = self.tracing.tracer
        if tracer is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        traceparent = None
        for name, value in scope["headers"]:
            if name == _TRACEPARENT:
                traceparent = value.decode("latin-1")
        method, path = scope["method"], scope["path"]
        attrs: dict[str, Any] = {"http.request.method": method, "url.path": path}
        with tracer.start_as_current_span(
            f"{method} {path}", context=context_from(traceparent), kind=SpanKind.SERVER,
            attributes=attrs,
        ) as span:  # fmt: skip

            async def traced_send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_status(Status(StatusCode.ERROR))
                    for name, value in message.get("headers", []):
                        if name == _REQUEST_ID:
                            span.set_attribute(ATTR_REQUEST_ID, value.decode("latin-1"))
                await send(message)

            await self.app(scope, receive, traced_send)
