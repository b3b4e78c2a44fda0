"""One invocation's bookkeeping: its ids, clocks, outcome, and the record and usage
entry made from them when it ends (``Platform._run`` owns its life)."""

from __future__ import annotations

import time
from typing import Any

import msgpack

from host.common.ids import new_id
from host.hostcalls.http import OutboundAccess
from host.hostcalls.secrets import SecretAccess
from host.platform.registry import Deployment
from host.platform.request import InvocationRequest
from host.runtime.invocation import Invocation
from host.services.usage import UsageEntry
from host.telemetry.preview import MAX_PREVIEW, mask, preview
from host.telemetry.records import RECORD_BYTES, RECORD_LINE_BYTES, InvocationRecord, Pending

#: the keys the ABI envelope adds to an event (``Platform._call``); an event that has
#: one of its own has its record built at once
ENVELOPE_KEYS = frozenset({"request_id", "function", "deadline_ms", "env"})
#: an event and a response at most this big (msgpack bytes, body bytes) have their
#: record built when it is read; a bigger one's preview is made at once
DEFER_BYTES = MAX_PREVIEW // 2


class Call:
    """The bookkeeping of one invocation: ids, clocks, outcome, its record."""

    __slots__ = (
        "budgeted",
        "bytes_out",
        "cold",
        "cpu_ms",
        "dep",
        "duration_ms",
        "effects",
        "effects_described",
        "envelope",
        "error",
        "event",
        "event_id",
        "inv",
        "outcome",
        "recorded",
        "request_id",
        "response",
        "run_s",
        "started",
        "status",
        "t0",
        "trigger",
    )

    def __init__(self, dep: Deployment, request: InvocationRequest) -> None:
        limit_s = request.timeout_s or dep.spec.timeout_s
        budget_s = request.budget_s
        self.budgeted = budget_s is not None and budget_s < limit_s
        self.run_s = budget_s if self.budgeted else request.timeout_s
        self.dep = dep
        self.request_id = request.request_id or new_id("req")
        self.trigger = str(request.event.get("kind", "direct"))
        self.event_id = str(request.event.get("id") or self.request_id)
        self.event = request.event
        #: the response, once the runtime validated it (None when it failed first)
        self.response: dict[str, Any] | None = None
        self.started = time.time()
        self.t0 = time.perf_counter()
        self.cold = False
        #: the ABI envelope the guest was given (msgpack), once made
        self.envelope = b""
        self.bytes_out = 0
        self.cpu_ms = 0.0
        self.recorded = True
        self.outcome: str = "ok"
        self.error: str | None = None
        self.duration_ms = 0.0
        self.effects: dict[str, int] = {}
        self.effects_described: list[dict[str, Any]] | None = None
        self.status: int | None = None
        self.inv = Invocation(
            request_id=self.request_id,
            function=dep.name,
            max_log_bytes=dep.spec.max_log_bytes,
            max_log_lines=dep.spec.max_log_lines,
        )

    @property
    def bytes_in(self) -> int:
        """The size of the envelope the guest was given (0 before it was made)."""
        return len(self.envelope)

    def pending(self) -> tuple[Pending, int] | None:
        """This invocation's record to be built when first read, with its size (for a
        small event and response, no secret read and no outbound call); None when it
        must be built now (``record``)."""
        inv = self.inv
        response = self.response
        out = _small_response_bytes(response)
        if (
            self.bytes_in > DEFER_BYTES
            or out > DEFER_BYTES
            or not self.envelope
            or inv.outbound is not None
            or not ENVELOPE_KEYS.isdisjoint(self.event)
            or (isinstance(inv.secrets, SecretAccess) and any(inv.secrets.seen))
        ):
            return None
        logs = tuple(text for line in inv.logs for text in (line.level, line.message))
        size = (
            RECORD_BYTES
            + inv.log_bytes
            + len(inv.logs) * (RECORD_LINE_BYTES + 5)
            + len(self.error or "")
            + 2 * (self.bytes_in + out)
        )
        dep = self.dep
        pending: Pending = (
            self.request_id,
            dep.name,
            dep.version,
            self.trigger,
            self.cold,
            int(self.started * 1000),
            self.duration_ms,
            self.outcome,
            self.error,
            self.event_id,
            logs,
            self.status,
            inv.memory_bytes,
            tuple(x for kind_count in self.effects.items() for x in kind_count),
            self.envelope,
            tuple(self.event),
            None if response is None else msgpack.packb(response),
        )
        return pending, size

    def record(self) -> InvocationRecord:
        access = self.inv.secrets
        seen = [s for s in access.seen if s] if isinstance(access, SecretAccess) else []
        if seen:  # what the record keeps never holds a secret this invocation read
            self.event = mask(self.event, seen)
            self.response = None if self.response is None else mask(self.response, seen)
            logs = [(line.level, mask(line.message, seen)) for line in self.inv.logs]
            self.error = None if self.error is None else mask(self.error, seen)
        else:
            logs = [(line.level, line.message) for line in self.inv.logs]
        return InvocationRecord(
            request_id=self.request_id,
            function=self.dep.name,
            version=self.dep.version,
            trigger=self.trigger,
            cold=self.cold,
            started_ms=int(self.started * 1000),
            duration_ms=self.duration_ms,
            outcome=self.outcome,
            error=self.error,
            logs=logs,
            event_id=self.event_id,
            **outbound_figures(self.inv),
            effects=self.effects,
            status=self.status,
            memory_bytes=self.inv.memory_bytes,
            event=preview(self.event, size_hint=self.bytes_in),
            response="" if self.response is None else self._response_preview(),
        )

    def _response_preview(self) -> str:
        # an HTTP response's size is known without packing it; any other shape is walked
        return preview(self.response, size_hint=_small_response_bytes(self.response))

    def usage(self) -> UsageEntry:
        """What this invocation used, for metering (positional: on every call's path)."""
        inv, dep = self.inv, self.dep
        out = inv.outbound
        return UsageEntry(
            dep.name,
            dep.version,
            self.trigger,
            self.outcome,
            self.cold,
            int(self.started * 1000),
            self.duration_ms,
            dep.spec.memory_bytes,
            self.bytes_in,
            self.bytes_out,
            self.cpu_ms,
            inv.host_calls,
            out.requests if isinstance(out, OutboundAccess) else 0,
            inv.memory_bytes,
        )


def _small_response_bytes(response: dict[str, Any] | None) -> int:
    """About the bytes of an HTTP response (status, at most 16 headers, body), or
    ``DEFER_BYTES + 1`` for any other shape (an ``output``, many headers): a size
    worth knowing only when small (to defer a record, or take a preview's fast path,
    which both stop at ``DEFER_BYTES``)."""
    if response is None:
        return 0
    body, headers = response.get("body"), response.get("headers")
    if len(response) > 3 or not isinstance(body, bytes) or not isinstance(headers, dict):
        return DEFER_BYTES + 1
    if len(headers) > 16:
        return DEFER_BYTES + 1
    return len(body) + sum(len(k) + len(v) + 4 for k, v in headers.items())


def outbound_figures(inv: Invocation) -> dict[str, Any]:
    out = inv.outbound
    if not isinstance(out, OutboundAccess):
        return {}
    return {"outbound_requests": out.requests, "outbound_wait_ms": out.waited_s * 1000}
