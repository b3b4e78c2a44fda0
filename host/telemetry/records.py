"""Invocation records: one per call, whatever started it, kept for logs and metrics.

Every invocation that goes through ``Platform.execute`` produces one record (request
id, function, version, trigger, cold or warm, duration, outcome). The most recent
ones stay in memory for the admin API; each is also logged as one structured line
and counted in Prometheus metrics.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

log = logging.getLogger("nimbus.invocations")


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Telemetry:
    """Keeps recent records and the metrics derived from them."""

    def __init__(self, keep: int = 10000) -> None:
        self._recent: deque[InvocationRecord] = deque(maxlen=keep)
        self._lock = threading.Lock()
        self.registry = CollectorRegistry()
        self._count = Counter(
            "nimbus_invocations",
            "Invocations by function, trigger and outcome",
            ["function", "trigger", "outcome"],
            registry=self.registry,
        )
        self._duration = Histogram(
            "nimbus_invocation_seconds",
            "Invocation wall time",
            ["function"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5, 10),
        )

    def record(self, rec: InvocationRecord) -> None:
        with self._lock:
            self._recent.append(rec)
        self._count.labels(rec.function, rec.trigger, rec.outcome).inc()
        self._duration.labels(rec.function).observe(rec.duration_ms / 1000)
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
            items = list(self._recent)
        if function is not None:
            items = [r for r in items if r.function == function]
        return items[-limit:]
