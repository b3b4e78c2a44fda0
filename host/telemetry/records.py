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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.multiprocess import MultiProcessCollector

log = logging.getLogger("nimbus.invocations")

#: the fixed cost counted for a record and for each of its log lines
RECORD_BYTES = 512
RECORD_LINE_BYTES = 64
#: what the recent records may hold in memory together
MAX_RECENT_BYTES = 64 * 1024 * 1024
#: prometheus-client's multi-process mode: the folder where every worker process
#: keeps its metric values (set by ``host/server.py`` before it starts several)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


@dataclass(frozen=True)
class InvocationRecord:
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


class PendingRecord:
    """A record as the invoke path leaves it: the figures the metrics need at once,
    and a maker that builds the ``InvocationRecord`` (its previews' JSON and all) the
    first time someone reads it. Most records are never read, and for a small
    invocation the previews cost a tenth of the whole call. The invoke path defers
    only small events and responses (what the maker keeps is about their size,
    counted in ``size_bytes``); a large one gets its bounded preview at once."""

    __slots__ = (
        "_built",
        "_make",
        "cold",
        "duration_ms",
        "function",
        "outcome",
        "request_id",
        "size_bytes",
        "trigger",
        "version",
    )

    def __init__(
        self,
        function: str,
        version: int,
        trigger: str,
        outcome: str,
        cold: bool,
        duration_ms: float,
        request_id: str,
        size_bytes: int,
        make: Callable[[], InvocationRecord],
    ) -> None:
        self.function, self.version, self.trigger = function, version, trigger
        self.outcome, self.cold, self.duration_ms = outcome, cold, duration_ms
        self.request_id, self.size_bytes = request_id, size_bytes
        self._make: Callable[[], InvocationRecord] | None = make
        self._built: InvocationRecord | None = None

    def size(self) -> int:
        return self.size_bytes

    def build(self) -> InvocationRecord:
        """The record (built once; what it was made from is let go)."""
        built = self._built
        if built is None:
            make = self._make
            if make is None:  # another thread built it meanwhile
                assert self._built is not None
                return self._built
            built = self._built = make()  # (two readers at once may both build it)
            self._make = None
        return built


def _read(rec: InvocationRecord | PendingRecord) -> InvocationRecord:
    return rec if isinstance(rec, InvocationRecord) else rec.build()


class Telemetry:
    """Keeps recent records and the metrics derived from them."""

    def __init__(self, keep: int = 10000, max_bytes: int = MAX_RECENT_BYTES) -> None:
        self._recent: deque[tuple[InvocationRecord | PendingRecord, int]] = deque()
        #: how many records were ever kept: the position of the newest, for tailing
        self._seq = 0
        self._keep = keep
        self._max_bytes = max_bytes
        self.recent_bytes = 0
        self._lock = threading.Lock()
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

    def exposed(self) -> CollectorRegistry:
        """What ``/_admin/metrics`` shows of these metrics: this process's, or, when
        the server runs several workers (``MULTIPROC_ENV`` set before they started),
        every worker's summed from their shared files, whichever worker is asked."""
        path = os.environ.get(MULTIPROC_ENV)
        if not path:
            return self.registry
        merged = CollectorRegistry()
        MultiProcessCollector(merged, path)  # type: ignore[no-untyped-call]
        return merged

    def record(self, rec: InvocationRecord | PendingRecord) -> None:
        size = rec.size()
        with self._lock:
            self._recent.append((rec, size))
            self._seq += 1
            self.recent_bytes += size
            while len(self._recent) > self._keep or (
                self.recent_bytes > self._max_bytes and len(self._recent) > 1
            ):
                self.recent_bytes -= self._recent.popleft()[1]
        labels = (rec.function, rec.trigger, rec.outcome)
        children = self._children.get(labels)
        if children is None:
            children = self._children[labels] = (
                self._count.labels(*labels),
                self._duration.labels(rec.function),
            )
        children[0].inc()
        children[1].observe(rec.duration_ms / 1000)
        if rec.cold:
            self._cold.labels(rec.function).inc()
        if log.isEnabledFor(logging.INFO):
            self._log(rec)

    def _log(self, rec: InvocationRecord | PendingRecord) -> None:
        log.info(
            "%s %s@%d %s %s %.2fms%s",
            rec.request_id,
            rec.function,
            rec.version,
            rec.trigger,
            rec.outcome,
            rec.duration_ms,
            " cold" if rec.cold else "",
            extra={"request_id": rec.request_id},
        )

    def recent(self, function: str | None = None, limit: int = 100) -> list[InvocationRecord]:
        with self._lock:
            kept = [rec for rec, _ in self._recent]
        if function is not None:
            kept = [r for r in kept if r.function == function]
        return [_read(r) for r in kept[-limit:]]

    def since(self, seq: int) -> tuple[int, list[InvocationRecord]]:
        """The records kept after position ``seq`` (oldest first) and the position of
        the newest: a tail passes the position back to get only what is new."""
        with self._lock:
            new = min(max(self._seq - seq, 0), len(self._recent))
            kept = [rec for rec, _ in list(self._recent)[len(self._recent) - new :]] if new else []
            seq = self._seq
        return seq, [_read(r) for r in kept]
