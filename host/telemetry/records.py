"""Invocation records: one per call, whatever started it, kept for logs and metrics.

Every invocation that goes through ``Platform.execute`` produces one record (request
id, function, version, trigger, cold or warm, duration, outcome). The most recent
ones stay in memory for the admin API, within a count and a byte budget (a record's
size is its log lines', error's and previews' bytes plus a fixed overhead), so a flood of large
records cannot grow the host; each is also logged as one structured line and counted
in Prometheus metrics (summed over the workers of a server that runs several).
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from typing import TYPE_CHECKING, Any

import msgpack
from msgspec import Struct, field
from msgspec.structs import asdict

from host.telemetry.preview import preview

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

log = logging.getLogger("nimbus.invocations")

#: the fixed cost counted for a record and for each of its log lines
RECORD_BYTES = 512
RECORD_LINE_BYTES = 64
#: what the recent records may hold in memory together
MAX_RECENT_BYTES = 64 * 1024 * 1024
#: prometheus-client's multi-process mode: the folder where every worker process
#: keeps its metric values (set by ``host/server.py`` before it starts several)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: counts kept while the metrics are not made yet (a server makes them once it
#: listens); past this many the metrics are made at once
MAX_HELD_COUNTS = 10000


class InvocationRecord(Struct, frozen=True):
    """The outcome of one invocation."""

    request_id: str
    function: str
    version: int
    trigger: str
    cold: bool
    started_ms: int
    duration_ms: float
    outcome: str  # "ok" or the error kind
    error: str | None = None
    logs: list[tuple[str, str]] = field(default_factory=list)
    #: the event's stable id (the same on every redelivery of one event)
    event_id: str = ""
    #: outbound HTTP requests made, and the time spent waiting for them
    outbound_requests: int = 0
    outbound_wait_ms: float = 0.0
    #: the guest's linear memory at the end, bytes (0: not measured)
    memory_bytes: int = 0
    #: writes committed by a successful invocation, by kind (empty: none, or it failed)
    effects: dict[str, int] = field(default_factory=dict)
    #: the HTTP status of the response, when it had one
    status: int | None = None
    #: the event and the response as bounded, redacted JSON previews (``preview.py``)
    event: str = ""
    response: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def size(self) -> int:
        """Roughly the bytes this record holds in memory."""
        logs = sum(len(level) + len(message) + RECORD_LINE_BYTES for level, message in self.logs)
        previews = len(self.event) + len(self.response)
        return RECORD_BYTES + logs + len(self.error or "") + previews


#: A record as the invoke path leaves it, made into an ``InvocationRecord`` (its
#: previews' JSON and all) only when someone reads it: most records are never read,
#: and for a small invocation the previews cost a tenth of the whole call. It is a
#: plain tuple of scalars, strings, bytes and tuples of them, which the garbage
#: collector stops tracking after its first pass: ten thousand kept records of
#: objects and nested dicts made every full collection walk them (pauses of 10-30 ms
#: under load). Fields, in order: request id, function, version, trigger, cold,
#: started (ms), duration (ms), outcome, error, event id, logs (level, message, level,
#: message, …), HTTP status, memory bytes, effects (kind, count, …), the ABI envelope the guest
#: got (msgpack), the keys of it that were the event's, the response (msgpack) or
#: None. The invoke path makes one only for a small event and response
#: (``platform/call.py``); a large one gets its bounded preview at once.
Pending = tuple[
    str,
    str,
    int,
    str,
    bool,
    int,
    float,
    str,
    str | None,
    str,
    tuple[str, ...],
    int | None,
    int,
    tuple[str | int, ...],
    bytes,
    tuple[str, ...],
    bytes | None,
]


def build_pending(p: Pending) -> InvocationRecord:
    """The record a ``Pending`` stands for."""
    (rid, function, version, trigger, cold, started, duration, outcome, error, event_id) = p[:10]
    logs, status, memory, effects, envelope, event_keys, packed = p[10:]
    whole = msgpack.unpackb(envelope, raw=False, strict_map_key=False)
    event = {k: v for k, v in whole.items() if k in event_keys}
    response = (
        "" if packed is None else preview(msgpack.unpackb(packed, raw=False), size_hint=len(packed))
    )
    return InvocationRecord(
        request_id=rid,
        function=function,
        version=version,
        trigger=trigger,
        cold=cold,
        started_ms=started,
        duration_ms=duration,
        outcome=outcome,
        error=error,
        logs=list(zip(logs[::2], logs[1::2], strict=True)),
        event_id=event_id,
        status=status,
        memory_bytes=memory,
        effects={str(k): int(n) for k, n in zip(effects[::2], effects[1::2], strict=True)},
        event=preview(event, size_hint=len(envelope)),
        response=response,
    )


def _function(rec: InvocationRecord | Pending) -> str:
    return rec.function if isinstance(rec, InvocationRecord) else rec[1]


def _read(rec: InvocationRecord | Pending) -> InvocationRecord:
    return rec if isinstance(rec, InvocationRecord) else build_pending(rec)


class Telemetry:
    """Keeps recent records and the metrics derived from them."""

    def __init__(self, keep: int = 10000, max_bytes: int = MAX_RECENT_BYTES) -> None:
        self._recent: deque[tuple[InvocationRecord | Pending, int]] = deque()
        #: how many records were ever kept: the position of the newest, for tailing
        self._seq = 0
        self._keep = keep
        self._max_bytes = max_bytes
        self.recent_bytes = 0
        self._lock = threading.Lock()
        self._metrics: _Metrics | None = None
        self._metrics_lock = threading.Lock()
        #: (function, trigger, outcome, duration_ms, cold) counted before the metrics
        #: were made, added to them when they are
        self._held: list[tuple[str, str, str, float, bool]] = []

    def metrics(self) -> _Metrics:
        """The metrics, made on first use (a server makes them once it listens: the
        import of prometheus-client is left out of its start)."""
        m = self._metrics
        if m is None:
            with self._metrics_lock:
                if self._metrics is None:
                    made = _Metrics()
                    for held in self._held:
                        made.count(*held)
                    self._held.clear()
                    self._metrics = made
                m = self._metrics
        return m

    def _hold(self, count: tuple[str, str, str, float, bool]) -> _Metrics | None:
        """Keep ``count`` for the metrics not made yet (None), or the metrics, made
        now if ``MAX_HELD_COUNTS`` are already held, for the caller to count in."""
        with self._metrics_lock:
            if self._metrics is None and len(self._held) < MAX_HELD_COUNTS:
                self._held.append(count)
                return None
        return self.metrics()

    @property
    def registry(self) -> CollectorRegistry:
        """This process's metrics."""
        return self.metrics().registry

    def exposed(self) -> CollectorRegistry:
        """What ``/_admin/metrics`` shows of these metrics: this process's, or, when
        the server runs several workers (``MULTIPROC_ENV`` set before they started),
        every worker's summed from their shared files, whichever worker is asked."""
        registry = self.registry
        path = os.environ.get(MULTIPROC_ENV)
        if not path:
            return registry
        from prometheus_client import CollectorRegistry
        from prometheus_client.multiprocess import MultiProcessCollector

        merged = CollectorRegistry()
        MultiProcessCollector(merged, path)  # type: ignore[no-untyped-call]
        return merged

    def record(self, rec: InvocationRecord) -> None:
        """Keep ``rec`` and count it."""
        self._keep_one(rec, rec.size())
        self._count_one(
            rec.function,
            rec.trigger,
            rec.outcome,
            rec.duration_ms,
            rec.cold,
            rec.request_id,
            rec.version,
        )

    def record_pending(self, p: Pending, size: int) -> None:
        """Keep ``p`` (about ``size`` bytes once built) and count it."""
        self._keep_one(p, size)
        self._count_one(p[1], p[3], p[7], p[6], p[4], p[0], p[2])

    def _keep_one(self, item: InvocationRecord | Pending, size: int) -> None:
        with self._lock:
            self._recent.append((item, size))
            self._seq += 1
            self.recent_bytes += size
            while len(self._recent) > self._keep or (
                self.recent_bytes > self._max_bytes and len(self._recent) > 1
            ):
                self.recent_bytes -= self._recent.popleft()[1]

    def _count_one(
        self,
        function: str,
        trigger: str,
        outcome: str,
        duration_ms: float,
        cold: bool,
        request_id: str,
        version: int,
    ) -> None:
        m = self._metrics or self._hold((function, trigger, outcome, duration_ms, cold))
        if m is not None:
            m.count(function, trigger, outcome, duration_ms, cold)
        if log.isEnabledFor(logging.INFO):
            log.info(
                "%s %s@%d %s %s %.2fms%s",
                request_id,
                function,
                version,
                trigger,
                outcome,
                duration_ms,
                " cold" if cold else "",
                extra={"request_id": request_id},
            )

    def recent(self, function: str | None = None, limit: int = 100) -> list[InvocationRecord]:
        with self._lock:
            kept = [rec for rec, _ in self._recent]
        if function is not None:
            kept = [r for r in kept if _function(r) == function]
        return [_read(r) for r in kept[-limit:]]

    def since(self, seq: int) -> tuple[int, list[InvocationRecord]]:
        """The records kept after position ``seq`` (oldest first) and the position of
        the newest: a tail passes the position back to get only what is new."""
        with self._lock:
            new = min(max(self._seq - seq, 0), len(self._recent))
            kept = [rec for rec, _ in list(self._recent)[len(self._recent) - new :]] if new else []
            seq = self._seq
        return seq, [_read(r) for r in kept]


class _Metrics:
    """The Prometheus metrics of invocations (in prometheus-client's multi-process
    mode when ``MULTIPROC_ENV`` is set before they are made)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self._count = Counter(
            "nimbus_invocations",
            "Invocations by function, trigger and outcome",
            ["function", "trigger", "outcome"],
            registry=self.registry,
        )
        self._cold = Counter(
            "nimbus_cold_starts",
            "Invocations that had to load their function (not in the warm pool)",
            ["function"],
            registry=self.registry,
        )
        self._duration = Histogram(
            "nimbus_invocation_seconds",
            "Invocation wall time",
            ["function"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5, 10),
        )
        #: the labelled metric children, looked up once per label set, not per record
        self._children: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    def count(
        self, function: str, trigger: str, outcome: str, duration_ms: float, cold: bool
    ) -> None:
        labels = (function, trigger, outcome)
        children = self._children.get(labels)
        if children is None:
            children = self._children[labels] = (
                self._count.labels(*labels),
                self._duration.labels(function),
            )
        children[0].inc()
        children[1].observe(duration_ms / 1000)
        if cold:
            self._cold.labels(function).inc()
