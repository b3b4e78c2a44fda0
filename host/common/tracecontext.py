"""W3C trace context (``traceparent``) in and out, for every part that carries one.

The gateway reads it from a request, the platform from an event that stored it, and
the host calls write it on outbound requests and published events. OpenTelemetry's
own propagator does the parsing and formatting; this module keeps its use explicit
(no global propagator is configured) and tolerant: a malformed header is ignored,
as the W3C recommendation says, and starts a new trace.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported when first used: only a process that traces pays for it
    from opentelemetry.context import Context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACEPARENT = "traceparent"


@functools.cache
def _propagator() -> TraceContextTextMapPropagator:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator()


def context_from(traceparent: object) -> Context | None:
    """The remote parent ``traceparent`` names (None when absent or malformed)."""
    if not isinstance(traceparent, str) or len(traceparent) > 128:
        return None
    ctx = _propagator().extract({TRACEPARENT: traceparent})
    return ctx if ctx else None


def current_traceparent() -> str | None:
    """The ``traceparent`` of the span current in this thread (None when none is)."""
    carrier: dict[str, Any] = {}
    _propagator().inject(carrier)
    value = carrier.get(TRACEPARENT)
    return value if isinstance(value, str) else None
