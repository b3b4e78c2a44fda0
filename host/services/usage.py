"""Metering: one usage entry per invocation, aggregated per function per hour in LMDB.

Every invocation the platform runs (whatever started it) gives ``Usage.record`` one
``UsageEntry``. Entries are added to an in-memory aggregate (a dict update under a
lock, cheap on the hot path) and ``flush`` merges that aggregate into LMDB in one
write transaction; the platform calls ``flush`` every ``FLUSH_INTERVAL_S`` and on
close. So a crash (SIGKILL) loses at most the entries of the last flush interval,
never more than the last second, and no invocation pays for an LMDB commit of its
own (a failed invocation commits nothing else, and would need one).

The rows live in an LMDB environment of their own (``db/usage``, synced on every
flush), so a flush neither waits for nor delays an invocation's commit. Stored rows
are keyed by hour, function, version, trigger and outcome; each holds
counters (requests, cold starts, wall and billed ms, byte-milliseconds of configured
memory, bytes in and out, guest CPU ms, host calls, outbound calls) and the peak
linear memory any one invocation reached (a maximum, not a sum). A row written
before a counter existed reads as zero for it. Several processes on one data dir merge into the same
rows (read-modify-write inside the transaction). GB-seconds are kept exact as an
integer ``byte_ms`` (configured memory in bytes × billed ms).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import msgpack
from msgspec import Struct

from host.services.storage import Storage

_DB = b"usage"
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
#: how often the platform merges pending entries into LMDB (the most a crash loses)
FLUSH_INTERVAL_S = 0.5
#: one GB-second, in byte-milliseconds (GiB, as Lambda bills memory in MB / 1024)
BYTE_MS_PER_GB_S = (1 << 30) * 1000

_COUNTERS = (
    "requests", "cold", "wall_ms", "billed_ms", "byte_ms", "bytes_in", "bytes_out",
    "cpu_ms", "host_calls", "outbound_calls", "peak_memory",
)  # fmt: skip
#: the counters merged by taking the larger value instead of adding
_PEAK = _COUNTERS.index("peak_memory")


class UsageEntry(NamedTuple):
    """What one invocation used (a tuple: built once per invocation, on the hot path)."""

    function: str
    version: int
    trigger: str
    outcome: str
    cold: bool
    started_ms: int
    wall_ms: float
    memory_bytes: int
    bytes_in: int = 0
    bytes_out: int = 0
    #: CPU time of the invoking thread while the guest ran (host calls included)
    cpu_ms: float = 0.0
    #: imports the guest called
    host_calls: int = 0
    #: outbound HTTP requests it made
    outbound_calls: int = 0
    #: its linear memory when it ended (memory only grows: its peak); 0 unmeasured
    peak_memory: int = 0

    @property
    def billed_ms(self) -> int:
        """Wall time rounded up to the next millisecond (at least 1)."""
        return max(1, math.ceil(self.wall_ms))

    @property
    def byte_ms(self) -> int:
        return self.memory_bytes * self.billed_ms


class UsageRow(Struct, frozen=True):
    """The usage of one function over one period (an hour or a day)."""

    period_ms: int
    function: str
    requests: int
    errors: int
    cold: int
    wall_ms: float
    billed_ms: int
    byte_ms: int
    bytes_in: int
    bytes_out: int
    cpu_ms: float
    host_calls: int
    outbound_calls: int
    #: the most linear memory one invocation of the period used, bytes
    peak_memory: int
    #: requests by trigger kind (http, queue, schedule, …)
    triggers: dict[str, int]

    @property
    def gb_s(self) -> float:
        return self.byte_ms / BYTE_MS_PER_GB_S


class Usage:
    """Usage aggregates on the LMDB backend, with the pending part kept in memory."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._db = storage.db(_DB)
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._pending: dict[tuple[int, str, int, str, str], list[float]] = {}

    def record(self, e: UsageEntry) -> None:
        """Add one invocation's usage to the pending aggregate (flushed soon)."""
        (function, version, trigger, outcome, cold, started, wall, memory, b_in, b_out,
         cpu, calls, outbound, peak) = e  # fmt: skip
        key = (started - started % HOUR_MS, function, version, trigger, outcome)
        billed = math.ceil(wall) or 1
        with self._lock:
            c = self._pending.get(key)
            if c is None:
                c = self._pending[key] = _zero()
            c[0] += 1
            c[1] += cold
            c[2] += wall
            c[3] += billed
            c[4] += memory * billed
            c[5] += b_in
            c[6] += b_out
            c[7] += cpu
            c[8] += calls
            c[9] += outbound
            if peak > c[10]:
                c[10] = peak

    def flush(self) -> int:
        """Merge the pending aggregate into the store in one transaction; the rows written."""
        with self._flush_lock:
            with self._lock:
                pending, self._pending = self._pending, {}
            if not pending:
                return 0
            try:
                self._merge(pending)
            except BaseException:
                with self._lock:  # keep them for the next flush
                    for key, counters in pending.items():
                        self._pending[key] = _merged(self._pending.get(key, _zero()), counters)
                raise
            return len(pending)

    def backup(self, dest: Path) -> None:
        """A consistent copy of the usage rows (what this process has pending is
        flushed first) into the new directory ``dest``."""
        self.flush()
        self._storage.backup(dest)

    def _merge(self, pending: dict[tuple[int, str, int, str, str], list[float]]) -> None:
        """Add ``pending`` to the stored rows, in one transaction."""
        db = self._db

        def write(txn: Any) -> None:
            for key, counters in pending.items():
                k = _key(*key)
                raw = txn.get(k, db=db)
                row = _padded(msgpack.unpackb(raw)) if raw is not None else _zero()
                txn.put(k, msgpack.packb(_merged(row, counters)), db=db)

        self._storage.write(write)

    def _stored(self, start: int) -> Iterator[tuple[int, str, int, str, str, list[Any]]]:
        """Every stored row from hour ``start`` on: its key fields and counters."""
        with self._storage.read() as txn:
            cur = txn.cursor(db=self._db)
            if not cur.set_range(b"%016d/" % max(start, 0)):
                return
            for k, v in cur:
                yield (*_unkey(bytes(k)), _padded(msgpack.unpackb(v)))

    def space(self) -> tuple[int, int]:
        """``(map size, bytes in use)`` of the usage environment."""
        return self._storage.space()

    def close(self) -> None:
        """Flush what is pending, then close the store."""
        self.flush()
        self._storage.close()

    def query(
        self, function: str | None = None, since_ms: int = 0, by: str = "hour"
    ) -> list[UsageRow]:
        """Usage per function per ``by`` period ("hour" or "day") from ``since_ms``,
        oldest first (what is pending in this process is flushed first)."""
        if by not in ("hour", "day"):
            raise ValueError(f"by must be 'hour' or 'day', not {by!r}")
        self.flush()
        period = HOUR_MS if by == "hour" else DAY_MS
        start = since_ms - since_ms % HOUR_MS
        rows: dict[tuple[int, str], dict[str, Any]] = {}
        for hour, fn, _version, trigger, outcome, counters in self._stored(start):
            if function is not None and fn != function:
                continue
            p = hour - hour % period
            row = rows.setdefault((p, fn), _empty())
            for name, value in zip(_COUNTERS, counters, strict=True):
                row[name] = max(row[name], value) if name == "peak_memory" else row[name] + value
            if outcome != "ok":
                row["errors"] += counters[0]
            row["triggers"][trigger] = row["triggers"].get(trigger, 0) + counters[0]
        return [UsageRow(period_ms=p, function=fn, **row) for (p, fn), row in sorted(rows.items())]


def _zero() -> list[float]:
    return [0, 0, 0.0, 0, 0, 0, 0, 0.0, 0, 0, 0]


def _padded(stored: list[float]) -> list[float]:
    """A stored row with the counters added since it was written, as zeros."""
    return list(stored) + _zero()[len(stored) :]


def _merged(a: list[float], b: list[float]) -> list[float]:
    out = [x + y for x, y in zip(a, b, strict=True)]
    out[_PEAK] = max(a[_PEAK], b[_PEAK])
    return out


def _empty() -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(_COUNTERS, 0)
    row["wall_ms"] = 0.0
    row["cpu_ms"] = 0.0
    row["errors"] = 0
    row["triggers"] = {}
    return row


def _key(hour: int, function: str, version: int, trigger: str, outcome: str) -> bytes:
    packed: bytes = msgpack.packb([function, version, trigger, outcome])
    return b"%016d/" % hour + packed


def _unkey(k: bytes) -> tuple[int, str, int, str, str]:
    fn, version, trigger, outcome = msgpack.unpackb(k[17:])
    return int(k[:16]), str(fn), int(version), str(trigger), str(outcome)
