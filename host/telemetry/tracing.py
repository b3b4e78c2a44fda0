"""OpenTelemetry traces: off unless an exporter is configured, and then a span per
request or trigger, a child per invocation, and children per host call and outbound call.

Tracing is off by default and then costs nothing: ``Tracing.tracer`` is None, and
every place that would make a span checks that first, so no span object is made.
It is on when the process is given an exporter: OTLP over HTTP when
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (the
standard variables; spans are sent in batches), or any ``SpanExporter`` passed in
(tests pass an in-memory one, exported as each span ends).

The provider is this platform's own (never OpenTelemetry's global one), so two
platforms in one process trace independently. Which span is current is
OpenTelemetry's context (a context variable): the gateway's request span is current
while its invocation runs, inline or in a worker thread (anyio copies the context),
and the host calls run on the guest's thread, inside the invocation's span.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from typing import TYPE_CHECKING, Any

from host.common.tracecontext import TRACEPARENT, context_from, current_traceparent

if TYPE_CHECKING:  # OpenTelemetry itself is imported only once tracing is on
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer

ENDPOINT_ENVS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
SERVICE_NAME_ENV = "OTEL_SERVICE_NAME"
#: the span kind of the trigger span that starts each kind of invocation
_TRIGGER_KINDS = {"http": "SERVER", "queue": "CONSUMER", "event": "CONSUMER", "storage": "CONSUMER"}
ATTR_REQUEST_ID = "nimbus.request_id"
#: where a writer outside an invocation (the admin API) finds the ``traceparent`` to
#: store with what it starts: ``Tracing.traceparent``, or ``untraced``
TraceparentOf = Callable[[], str | None]


def untraced() -> str | None:
    """No trace to carry on."""
    return None


class Tracing:
    """The platform's tracer (None when tracing is off) and the spans it makes."""

    def __init__(self, exporter: SpanExporter | None = None) -> None:
        self.provider: TracerProvider | None = None
        self.tracer: Tracer | None = None
        endpoint = _endpoint() if exporter is None else None
        if exporter is None and endpoint is None:
            return  # off: OpenTelemetry is not even imported
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        if exporter is not None:
            processor: Any = SimpleSpanProcessor(exporter)
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            processor = BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint))
        name = os.environ.get(SERVICE_NAME_ENV) or "nimbus"
        self.provider = TracerProvider(resource=Resource.create({"service.name": name}))
        self.provider.add_span_processor(processor)
        self.tracer = self.provider.get_tracer("nimbus")

    def close(self) -> None:
        if self.provider is not None:
            self.provider.shutdown()

    def traceparent(self) -> str | None:
        """The current span's ``traceparent``, for what an operation starts (a message,
        an event, a run) to carry on; None when tracing is off or no span is current."""
        return current_traceparent() if self.tracer is not None else None

    def span(
        self, name: str, kind: str = "internal", attributes: dict[str, Any] | None = None
    ) -> AbstractContextManager[Span]:
        """A child of the current span, current while the block runs (tracing on only)."""
        from opentelemetry.trace import SpanKind

        assert self.tracer is not None
        return self.tracer.start_as_current_span(
            name, kind=SpanKind[kind.upper()], attributes=attributes
        )

    @contextmanager
    def invocation(
        self, function: str, trigger: str, request_id: str, event: dict[str, Any]
    ) -> Iterator[Span]:
        """The span of one invocation, current while it runs. Under a current span
        (the gateway's request span) it is that span's child; otherwise a trigger span
        is made for it first, the child of the ``traceparent`` the event carries (one a
        publishing function's host call stored with the event, or an HTTP header)."""
        from opentelemetry import trace
        from opentelemetry.trace import SpanKind

        assert self.tracer is not None
        attrs = {ATTR_REQUEST_ID: request_id, "nimbus.function": function}
        with ExitStack() as stack:
            if not trace.get_current_span().get_span_context().is_valid:
                parent = context_from(_traceparent(event))
                stack.enter_context(
                    self.tracer.start_as_current_span(
                        _trigger_name(trigger, function, event),
                        context=parent,
                        kind=SpanKind[_TRIGGER_KINDS.get(trigger, "INTERNAL")],
                        attributes={**attrs, "nimbus.trigger": trigger},
                    )
                )
            span = stack.enter_context(
                self.tracer.start_as_current_span(
                    f"invoke {function}", attributes={**attrs, "nimbus.trigger": trigger}
                )
            )
            yield span


def ended(span: Span, outcome: str, cold: bool, error: str | None) -> None:
    """Mark an invocation's span with how it ended."""
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("nimbus.outcome", outcome)
    span.set_attribute("nimbus.cold", cold)
    if error is not None:
        span.set_status(Status(StatusCode.ERROR, error))


def _traceparent(event: dict[str, Any]) -> object:
    if TRACEPARENT in event:
        return event[TRACEPARENT]
    headers = event.get("headers")
    return headers.get(TRACEPARENT) if isinstance(headers, dict) else None


def _trigger_name(trigger: str, function: str, event: dict[str, Any]) -> str:
    """``http /orders``, ``queue jobs``, ``event order.placed``, … (``call F`` for a
    direct invoke)."""
    for key in ("path", "queue", "topic", "bucket", "schedule", "workflow"):
        value = event.get(key)
        if isinstance(value, str):
            return f"{trigger} {value}"
    return f"call {function}"


def _endpoint() -> str | None:
    for name in ENDPOINT_ENVS:
        value = os.environ.get(name)
        if value:
            return value if name == ENDPOINT_ENVS[0] else value.rstrip("/") + "/v1/traces"
    return None
