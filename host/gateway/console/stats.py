"""Figures the console draws, computed from the invocation records.

The records are the ones ``Telemetry`` keeps in this process's memory (the most
recent 10 000 invocations); everything here is a pure function of a list of them,
so a page and its live refresh compute the same numbers.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from host.telemetry.records import InvocationRecord

WINDOW_MS = 3600 * 1000
BUCKET_MS = 60 * 1000
#: duration histogram bucket upper bounds, ms (the last one is open)
HISTOGRAM_MS = (0.5, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


def percentile(sorted_values: Sequence[float], p: float) -> float | None:
    """The nearest-rank ``p``th percentile of already sorted values (None if empty)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass(frozen=True)
class Summary:
    """Counts and latency of a set of invocations."""

    count: int
    errors: int
    cold: int
    p50: float | None
    p99: float | None

    @property
    def error_rate(self) -> float:
        return self.errors / self.count if self.count else 0.0

    @property
    def cold_share(self) -> float:
        return self.cold / self.count if self.count else 0.0


def summarise(records: Iterable[InvocationRecord]) -> Summary:
    items = list(records)
    durations = sorted(r.duration_ms for r in items)
    return Summary(
        count=len(items),
        errors=sum(1 for r in items if r.outcome != "ok"),
        cold=sum(1 for r in items if r.cold),
        p50=percentile(durations, 50),
        p99=percentile(durations, 99),
    )


def window(records: Iterable[InvocationRecord], now_ms: int) -> list[InvocationRecord]:
    return [r for r in records if now_ms - WINDOW_MS < r.started_ms <= now_ms]


def series(records: Sequence[InvocationRecord], now_ms: int) -> dict[str, list[Any]]:
    """Per-minute columns over the last hour, for the overview's charts: time (s),
    requests/s, error rate (%), p50 and p99 (ms), cold-start share (%)."""
    end = now_ms - now_ms % BUCKET_MS + BUCKET_MS
    start = end - WINDOW_MS
    buckets: dict[int, list[InvocationRecord]] = defaultdict(list)
    for r in records:
        if start <= r.started_ms < end:
            buckets[(r.started_ms - start) // BUCKET_MS].append(r)
    cols: dict[str, list[Any]] = {k: [] for k in ("t", "rps", "errors", "p50", "p99", "cold")}
    for i in range(WINDOW_MS // BUCKET_MS):
        s = summarise(buckets.get(i, []))
        cols["t"].append((start + i * BUCKET_MS) // 1000)
        cols["rps"].append(round(s.count / (BUCKET_MS / 1000), 3))
        cols["errors"].append(round(100 * s.error_rate, 2) if s.count else None)
        cols["p50"].append(_ms(s.p50))
        cols["p99"].append(_ms(s.p99))
        cols["cold"].append(round(100 * s.cold_share, 2) if s.count else None)
    return cols


def by_function(records: Iterable[InvocationRecord]) -> dict[str, Summary]:
    groups: dict[str, list[InvocationRecord]] = defaultdict(list)
    for r in records:
        groups[r.function].append(r)
    return {name: summarise(items) for name, items in groups.items()}


def top_functions(records: Iterable[InvocationRecord], n: int = 10) -> list[tuple[str, Summary]]:
    """The ``n`` functions invoked most, with their summaries."""
    ranked = sorted(by_function(records).items(), key=lambda kv: (-kv[1].count, kv[0]))
    return ranked[:n]


def histogram(records: Iterable[InvocationRecord]) -> list[tuple[str, int]]:
    """Invocations per duration bucket: ``[("≤ 1 ms", 12), …, ("> 10000 ms", 0)]``."""
    counts = [0] * (len(HISTOGRAM_MS) + 1)
    for r in records:
        i = next((i for i, b in enumerate(HISTOGRAM_MS) if r.duration_ms <= b), len(HISTOGRAM_MS))
        counts[i] += 1
    labels = [f"≤ {b:g} ms" for b in HISTOGRAM_MS] + [f"> {HISTOGRAM_MS[-1]:g} ms"]
    return list(zip(labels, counts, strict=True))


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
