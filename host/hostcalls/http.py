"""The ``http_fetch`` import: outbound HTTP from a guest, bounded and accounted.

``http_fetch(req_ptr, req_len) -> i64`` takes a msgpack map ``{method, url, headers,
body, timeout_ms, follow_redirects}`` and answers ``[status, value]`` like every
service import (guest_sdk/ABI.md, "Outbound HTTP"). The platform gives each
invocation of a function that has an allowlist one ``OutboundAccess``: the
allowlist, the invocation's deadline (no request outlives it), a count of requests
(at most ``MAX_REQUESTS``), the time spent waiting (kept in the invocation record),
and the base of the ``Idempotency-Key`` each request carries: the same event
redelivered, or the same workflow step retried, presents the same keys in the same
order, so a payment service applies a charge once.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

import msgpack

from host.common.tracecontext import TRACEPARENT, current_traceparent
from host.errors import (
    AbiError,
    InvalidArgument,
    LimitExceeded,
    NimbusError,
    OutboundTimeout,
    PermissionDenied,
    ServiceError,
    ServiceUnavailable,
    TooLarge,
)
from host.hostcalls.fetcher import Fetcher, FetchRequest, FetchResponse
from host.hostcalls.wire import decode_request
from host.manifest.outbound import OutboundPolicy
from host.runtime.imports import HostFunction
from host.runtime.invocation import Invocation

log = logging.getLogger("nimbus.outbound")

#: outbound requests one invocation may make (Fastly's limit too)
MAX_REQUESTS = 32
#: the largest request (body and headers) a guest may send
MAX_REQUEST_BYTES = 16 * 1024 * 1024
IDEMPOTENCY_HEADER = "idempotency-key"
#: request headers the host sets itself (the URL's host, the body's framing)
_HOST_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
#: reply statuses (guest_sdk/ABI.md); 6 and 7 are outbound HTTP's own
STATUS: list[tuple[type[NimbusError], int]] = [
    (PermissionDenied, 1),
    (InvalidArgument, 2),
    (TooLarge, 4),
    (ServiceUnavailable, 5),
    (OutboundTimeout, 6),
    (LimitExceeded, 7),
]


def idempotency_key(function: str, event_id: str, ordinal: int) -> str:
    """The ``Idempotency-Key`` of request number ``ordinal`` (from 1) of an invocation of
    ``function`` on the event ``event_id``: hex sha256 of ``function``, ``event_id`` and
    ``ordinal`` joined by newlines (documented in guest_sdk/ABI.md)."""
    return hashlib.sha256(f"{function}\n{event_id}\n{ordinal}".encode()).hexdigest()


def stable_event_id(envelope: dict[str, Any]) -> str:
    """The id that stays the same when an event is delivered again: the envelope's
    ``id``, except for a workflow step, whose id counts attempts: there the run and step."""
    if envelope.get("kind") == "workflow" and envelope.get("run_id") and envelope.get("step"):
        return f"{envelope['run_id']}/{envelope['step']}"
    return str(envelope.get("id", ""))


class OutboundAccess:
    """One invocation's outbound HTTP: its allowlist, deadline, count and waiting time."""

    __slots__ = (
        "deadline",
        "event_id",
        "fetcher",
        "function",
        "max_bytes",
        "policy",
        "requests",
        "spans",
        "waited_s",
    )

    def __init__(
        self,
        fetcher: Fetcher,
        policy: OutboundPolicy,
        function: str,
        event_id: str,
        deadline: float,
        max_bytes: int,
        spans: Any = None,
    ) -> None:
        self.fetcher, self.policy, self.function = fetcher, policy, function
        self.event_id, self.deadline, self.max_bytes = event_id, deadline, max_bytes
        #: the invocation's span maker when tracing is on (``Invocation.spans``)
        self.spans = spans
        self.requests = 0
        self.waited_s = 0.0

    def fetch(self, req: FetchRequest, timeout_s: float | None) -> FetchResponse:
        if self.requests >= MAX_REQUESTS:
            raise LimitExceeded(
                f"an invocation may make at most {MAX_REQUESTS} outbound requests; "
                f"this was number {self.requests + 1}"
            )
        self.requests += 1
        if not any(name.lower() == IDEMPOTENCY_HEADER for name, _ in req.headers):
            key = idempotency_key(self.function, self.event_id, self.requests)
            req.headers.append((IDEMPOTENCY_HEADER, key))
        own = self.deadline if timeout_s is None else time.monotonic() + timeout_s
        if self.spans is None:
            return self._fetch(req, own)
        attrs = {"http.request.method": req.method, "url.full": req.url}
        with self.spans(f"HTTP {req.method}", "client", attrs) as span:
            traceparent = current_traceparent()
            if traceparent is not None:  # the callee continues this trace
                req.headers[:] = [(n, v) for n, v in req.headers if n.lower() != TRACEPARENT]
                req.headers.append((TRACEPARENT, traceparent))
            response = self._fetch(req, own)
            span.set_attribute("http.response.status_code", response.status)
            return response

    def _fetch(self, req: FetchRequest, own: float) -> FetchResponse:
        t0 = time.monotonic()
        try:
            return self.fetcher.fetch(
                req, self.policy, self.function, self.max_bytes, own, self.deadline
            )
        finally:
            self.waited_s += time.monotonic() - t0


def parse_request(req: Any) -> tuple[FetchRequest, float | None]:
    """The ``FetchRequest`` and timeout (s) of a decoded request map."""
    if not isinstance(req, dict):
        raise InvalidArgument("the request must be a msgpack map {method, url, …}")
    url = req.get("url")
    if not isinstance(url, str) or not url:
        raise InvalidArgument("the request needs 'url', a string like 'https://host/path'")
    method = req.get("method") or "GET"
    if not isinstance(method, str) or not method.isalpha():
        raise InvalidArgument("'method' must be a string like 'GET' or 'POST'")
    body = req.get("body") or b""
    if isinstance(body, str):
        body = body.encode()
    if not isinstance(body, bytes):
        raise InvalidArgument("'body' must be bytes or a string")
    timeout_ms = req.get("timeout_ms")
    if timeout_ms is not None and (
        isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int) or timeout_ms <= 0
    ):
        raise InvalidArgument("'timeout_ms' must be a positive integer")
    fetch = FetchRequest(
        method=method.upper(),
        url=url,
        headers=_headers(req.get("headers")),
        body=body,
        follow_redirects=bool(req.get("follow_redirects", False)),
    )
    return fetch, None if timeout_ms is None else timeout_ms / 1000


def _headers(raw: Any) -> list[tuple[str, str]]:
    if raw is None:
        return []
    pairs = raw.items() if isinstance(raw, dict) else raw
    out: list[tuple[str, str]] = []
    try:
        for name, value in pairs:
            if not isinstance(name, str) or not isinstance(value, str | bytes):
                raise TypeError
            if name.lower() not in _HOST_HEADERS:
                out.append((name, value.decode() if isinstance(value, bytes) else value))
    except (TypeError, ValueError):
        raise InvalidArgument(
            "'headers' must be a map of strings or a list of [name, value] pairs"
        ) from None
    return out


def serve(inv: Invocation, request: bytes) -> bytes:
    """The msgpack ``[status, value]`` answer to one ``http_fetch`` request."""
    try:
        req = decode_request(request)  # bounded: a hostile map cannot blow up the host
        fetch, timeout_s = parse_request(req)
        access = inv.outbound
        if not isinstance(access, OutboundAccess):
            raise PermissionDenied(
                f"function {inv.function} may not make outbound requests: it has no "
                f"allowed_outbound_hosts; add the hosts it calls under [functions."
                f"{inv.function}] in nimbus.toml"
            )
        response = access.fetch(fetch, timeout_s)
    except (ValueError, msgpack.UnpackException) as e:
        return _reply(2, f"the request is not msgpack: {e}")
    except (ServiceError, PermissionDenied) as e:
        status = next((code for cls, code in STATUS if isinstance(e, cls)), 5)
        if status == 1:
            log.warning("[%s] outbound request denied: %s", inv.request_id, e)
            inv.log(2, f"outbound request denied: {e}")
        return _reply(status, str(e))
    headers: dict[str, str] = {}
    for name, value in response.headers:
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    ok = {"status": response.status, "headers": headers, "body": response.body}
    return _reply(0, ok)


def _reply(status: int, value: Any) -> bytes:
    packed: bytes = msgpack.packb([status, value], use_bin_type=True)
    return packed


def http_fetch(inv: Invocation, ptr: int, length: int) -> int:
    if length > MAX_REQUEST_BYTES:
        raise inv.fail(AbiError(f"an http_fetch request of {length} bytes is over the cap"))
    return inv.give(serve(inv, inv.read(ptr, length)))


FUNCTIONS = (HostFunction("http_fetch", ("i32", "i32"), ("i64",), http_fetch),)
