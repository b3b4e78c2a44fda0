"""Figures the console draws, computed from the per-minute activity rows.

The rows (``services/activity.py``) hold every worker's invocations, so the figures
are the host's whatever worker draws the page; everything here is a pure function
of a list of them, so a page and its live refresh compute the same numbers.
Percentiles come from the rows' histograms (within a bucket, about 25 %).
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from msgspec import Struct

from host.services import activity
from host.services.activity import ActivityRow, merge

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


class Summary(Struct, frozen=True):
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


def summarise(rows: Iterable[ActivityRow]) -> Summary:
    """The counts of ``rows`` added up, percentiles from their merged histograms."""
    items = list(rows)
    hist = merge(r.histogram for r in items)
    return Summary(
        count=sum(r.count for r in items),
        errors=sum(r.errors for r in items),
        cold=sum(r.cold for r in items),
        p50=activity.percentile(hist, 50),
        p99=activity.percentile(hist, 99),
    )


def window(rows: Iterable[ActivityRow], now_ms: int) -> list[ActivityRow]:
    """The rows of the hour up to ``now_ms`` (whole minutes: the current one counts)."""
    end = now_ms - now_ms % BUCKET_MS + BUCKET_MS
    return [r for r in rows if end - WINDOW_MS <= r.minute_ms < end]


def series(rows: Sequence[ActivityRow], now_ms: int) -> dict[str, list[Any]]:
    """Per-minute columns over the last hour, for the overview's charts: time (s),
    requests/s, error rate (%), p50 and p99 (ms), cold-start share (%)."""
    end = now_ms - now_ms % BUCKET_MS + BUCKET_MS
    start = end - WINDOW_MS
    buckets: dict[int, list[ActivityRow]] = defaultdict(list)
    for r in rows:
        if start <= r.minute_ms < end:
            buckets[(r.minute_ms - start) // BUCKET_MS].append(r)
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


def by_function(rows: Iterable[ActivityRow]) -> dict[str, Summary]:
    groups: dict[str, list[ActivityRow]] = defaultdict(list)
    for r in rows:
        groups[r.function].append(r)
    return {name: summarise(items) for name, items in groups.items()}


def top_functions(rows: Iterable[ActivityRow], n: int = 10) -> list[tuple[str, Summary]]:
    """The ``n`` functions invoked most, with their summaries."""
    ranked = sorted(by_function(rows).items(), key=lambda kv: (-kv[1].count, kv[0]))
    return ranked[:n]


def histogram(rows: Iterable[ActivityRow]) -> list[tuple[str, int]]:
    """Invocations per duration bucket: ``[("≤ 1 ms", 12), …, ("> 10000 ms", 0)]``
    (exact: every bound here is one of the activity histogram's)."""
    counts = [0] * (len(HISTOGRAM_MS) + 1)
    for i, n in merge(r.histogram for r in rows).items():
        upper = activity.BOUNDS_MS[i] if i < len(activity.BOUNDS_MS) else float("inf")
        counts[bisect.bisect_left(HISTOGRAM_MS, upper)] += n
    labels = [f"≤ {b:g} ms" for b in HISTOGRAM_MS] + [f"> {HISTOGRAM_MS[-1]:g} ms"]
    return list(zip(labels, counts, strict=True))


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
