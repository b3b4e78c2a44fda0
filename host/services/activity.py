"""Recent activity per function per minute, shared by every worker process of a data dir.

The console's overview (requests per second, error rate, p50/p99, cold starts over
the last hour) must show the host, not the one worker that happens to answer the
page: with ``--workers 2`` each process's in-memory records hold about half. So
every invocation also adds to a per-minute aggregate of its function (count, errors,
cold starts, total time and a duration histogram), kept like the usage rows: a dict
update under a lock on the hot path, merged into LMDB by the platform's flusher
every ``FLUSH_INTERVAL_S`` (``usage.py``), read-modify-write so that workers add up.

The histogram has fixed log-spaced buckets (``BOUNDS_MS``: 1, 1.25, 1.5, 2, 2.5, 3,
4, 5, 6, 7.5 per decade, from 0.01 ms to 100 s), so percentiles read from it are
within a bucket (about 25 %) of the exact ones, and coarser histograms whose bounds
are among these (the console's) are exact. Rows older than ``KEEP_MS`` are dropped.
The environment (``db/activity``) is opened without fsync: losing the last seconds
of these figures to a machine crash is harmless.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import lmdb
import msgpack
from msgspec import Struct

from host.services.storage import _reserve, env_space

MINUTE_MS = 60_000
#: how long rows are kept (the console shows the last hour)
KEEP_MS = 2 * 3_600_000
_STEPS = (1, 1.25, 1.5, 2, 2.5, 3, 4, 5, 6, 7.5)
#: upper bounds of the duration buckets, ms; a last bucket holds what is above
BOUNDS_MS: tuple[float, ...] = (
    *(round(step * 10.0**exp, 6) for exp in range(-2, 5) for step in _STEPS),
    100_000.0,
)
#: flushes between two sweeps of rows past ``KEEP_MS``
SWEEP_EVERY = 120
_READERS = 256


class ActivityRow(Struct, frozen=True):
    """One function's invocations in one minute (every worker's, added up)."""

    minute_ms: int
    function: str
    count: int
    errors: int
    cold: int
    total_ms: float
    #: bucket index (into ``BOUNDS_MS``; ``len(BOUNDS_MS)`` is the open one) → count
    histogram: dict[int, int]


def bucket_of(duration_ms: float) -> int:
    return bisect.bisect_left(BOUNDS_MS, duration_ms)


def percentile(histogram: dict[int, int], p: float) -> float | None:
    """The ``p``th percentile (ms) of a histogram: the geometric middle of the bucket
    that holds it (None when empty)."""
    total = sum(histogram.values())
    if not total:
        return None
    rank = max(1.0, p / 100 * total)
    seen = 0
    for i in sorted(histogram):
        seen += histogram[i]
        if seen >= rank:
            upper = BOUNDS_MS[i] if i < len(BOUNDS_MS) else BOUNDS_MS[-1] * 1.25
            lower = BOUNDS_MS[i - 1] if i > 0 else upper / 1.25
            return float((lower * upper) ** 0.5)
    return BOUNDS_MS[-1]


def merge(histograms: Iterable[dict[int, int]]) -> dict[int, int]:
    out: dict[int, int] = {}
    for h in histograms:
        for i, n in h.items():
            out[i] = out.get(i, 0) + n
    return out


class Activity:
    """Per-minute activity on LMDB, with this process's pending part in memory."""

    def __init__(self, path: Path, map_size: int = 1 << 28) -> None:
        path.mkdir(parents=True, exist_ok=True)
        _reserve(path / "lock.mdb", _READERS)  # no SIGBUS on a full disk (storage.py)
        self._env = lmdb.open(
            str(path),
            map_size=map_size,
            max_dbs=1,
            sync=False,
            metasync=False,
            max_readers=_READERS,
        )
        self._db = self._env.open_db(b"activity")
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        #: (minute, function) → [count, errors, cold, total_ms, {bucket: n}]
        self._pending: dict[tuple[int, str], list[Any]] = {}
        self._flushes = 0

    def record(
        self, function: str, started_ms: int, duration_ms: float, ok: bool, cold: bool
    ) -> None:
        """Add one invocation (cheap: on every invocation's path)."""
        key = (started_ms - started_ms % MINUTE_MS, function)
        b = bisect.bisect_left(BOUNDS_MS, duration_ms)
        with self._lock:
            row = self._pending.get(key)
            if row is None:
                row = self._pending[key] = [0, 0, 0, 0.0, {}]
            row[0] += 1
            row[1] += not ok
            row[2] += cold
            row[3] += duration_ms
            hist = row[4]
            hist[b] = hist.get(b, 0) + 1

    def flush(self, now_ms: int | None = None) -> int:
        """Merge what is pending into LMDB in one transaction; the rows written."""
        with self._flush_lock:
            with self._lock:
                pending, self._pending = self._pending, {}
            self._flushes += 1
            sweep = now_ms is not None and self._flushes % SWEEP_EVERY == 0
            if not pending and not sweep:
                return 0
            try:
                with self._env.begin(write=True, db=self._db) as txn:
                    for (minute, function), add in pending.items():
                        k = _key(minute, function)
                        raw = txn.get(k)
                        row = msgpack.unpackb(raw, strict_map_key=False) if raw else None
                        txn.put(k, msgpack.packb(_add(row, add)))
                    if sweep and now_ms is not None:
                        _sweep(txn, now_ms - KEEP_MS)
            except lmdb.Error:
                with self._lock:  # kept for the next flush
                    for key, add in pending.items():
                        self._pending[key] = _add(self._pending.get(key), add)
                raise
            return len(pending)

    def rows(self, since_ms: int, function: str | None = None) -> list[ActivityRow]:
        """Every worker's rows from ``since_ms`` (this process's pending part first
        merged), oldest first."""
        self.flush()
        start = since_ms - since_ms % MINUTE_MS
        out: list[ActivityRow] = []
        with self._env.begin(db=self._db) as txn:
            cur = txn.cursor()
            if not cur.set_range(_key(max(start, 0), "")):
                return out
            for k, v in cur:
                minute, fn = _unkey(bytes(k))
                if function is not None and fn != function:
                    continue
                count, errors, cold, total, hist = msgpack.unpackb(v, strict_map_key=False)
                out.append(ActivityRow(minute, fn, count, errors, cold, total, hist))
        return out

    def space(self) -> tuple[int, int]:
        """``(map size, bytes in use)`` of the activity environment."""
        return env_space(self._env)

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._env.close()


def _add(row: list[Any] | None, add: list[Any]) -> list[Any]:
    if row is None:
        return [add[0], add[1], add[2], add[3], dict(add[4])]
    hist = dict(row[4])
    for i, n in add[4].items():
        hist[i] = hist.get(i, 0) + n
    return [row[0] + add[0], row[1] + add[1], row[2] + add[2], row[3] + add[3], hist]


def _sweep(txn: Any, before_ms: int) -> None:
    cur = txn.cursor()
    if not cur.first():
        return
    while cur.key() and _unkey(bytes(cur.key()))[0] < before_ms:
        if not cur.delete():
            break


def _key(minute_ms: int, function: str) -> bytes:
    return b"%016d/" % minute_ms + function.encode()


def _unkey(k: bytes) -> tuple[int, str]:
    minute, _, function = k.partition(b"/")
    return int(minute), function.decode()
