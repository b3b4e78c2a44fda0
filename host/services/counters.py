"""Rate-limit buckets and usage counts that every worker process on a data dir shares.

A limit held per process would let ``--workers 2`` double every allowance, so the
counters live in LMDB, where one write transaction at a time (across processes)
reads and updates them. They are in their own environment (``<data>/db/counters``),
opened without fsync: a counter is worth a few microseconds per request, not a disk
flush, and after a machine crash losing the last seconds of counts is harmless (a
process crash loses nothing: the pages are in the OS cache).

One ``charge`` is one transaction: the usage counts (quotas) are checked first, then
the token bucket; only when all of them allow the call is anything written. Stale
entries (full buckets, past periods) are swept now and then, and when the map fills.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import lmdb

from host.errors import ServiceUnavailable
from host.services.storage import env_space

_BUCKET = struct.Struct("<ddd")  # tokens, updated (s), full at (s)
_COUNT = struct.Struct("<qd")  # count, resets at (s)
#: charges between two sweeps of stale entries (per process)
SWEEP_EVERY = 10_000
MAX_MAP_SIZE = 1 << 34


class Bucket(NamedTuple):
    """A token bucket: ``capacity`` tokens, refilled at ``rate_per_s``."""

    key: bytes
    rate_per_s: float
    capacity: int


class Allowance(NamedTuple):
    """At most ``limit`` calls under ``key`` until ``resets_at`` (epoch seconds)."""

    key: bytes
    limit: int
    resets_at: float


class Charge(NamedTuple):
    """The answer to one call: allowed or not, and what is left (a tuple: this is on
    every rate-limited request's path)."""

    allowed: bool
    #: tokens left in the bucket after this call (capacity when there is no bucket)
    remaining: float = 0.0
    #: seconds until a token is back (denied by the bucket), or until the quota resets
    retry_after_s: float = 0.0
    #: seconds until the bucket is full again
    full_in_s: float = 0.0
    #: the allowance that said no (None: the bucket did, or nothing did)
    exhausted: Allowance | None = None
    #: calls left under each allowance after this one
    left: tuple[int, ...] = ()


class Counters:
    """The counters of one data dir (thread-safe; shared with other processes)."""

    def __init__(self, path: Path, map_size: int = 64 * 1024 * 1024) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.env = lmdb.open(
            str(path),
            map_size=map_size,
            max_dbs=1,
            lock=True,
            sync=False,
            metasync=False,
            writemap=True,
        )
        self.env.reader_check()
        self._lock = threading.Lock()
        self._since_sweep = 0

    def space(self) -> tuple[int, int]:
        """``(map size, bytes in use)`` of the counters' environment."""
        return env_space(self.env)

    def close(self) -> None:
        with self._lock:
            self.env.close()

    def charge(self, bucket: Bucket | None, allowances: Sequence[Allowance], now: float) -> Charge:
        """Count one call against ``allowances`` and take a token from ``bucket``."""
        with self._lock:  # LMDB allows one write transaction per process at a time
            self._since_sweep += 1
            if self._since_sweep >= SWEEP_EVERY:
                self._since_sweep = 0
                self._write(lambda txn: _sweep(txn, now))
            try:  # the common case, without the retry loop's closure
                with self.env.begin(write=True) as txn:
                    return _charge(txn, bucket, allowances, now)
            except (lmdb.MapFullError, lmdb.MapResizedError):
                pass
            charge: Charge = self._write(lambda txn: _charge(txn, bucket, allowances, now))
            return charge

    def usage(self, key: bytes) -> int:
        """The count under an allowance's key (0 when none)."""
        with self.env.begin() as txn:
            raw = txn.get(key)
        return _COUNT.unpack(raw)[0] if raw else 0

    def _write(self, fn: Any) -> Any:
        for _ in range(8):
            try:
                with self.env.begin(write=True) as txn:
                    return fn(txn)
            except lmdb.MapFullError:
                self._make_room()
            except lmdb.MapResizedError:
                self.env.set_mapsize(0)  # another process grew it: adopt its size
        raise ServiceUnavailable("the rate-limit counters could not make room; retry")

    def _make_room(self) -> None:
        import time

        try:
            with self.env.begin(write=True) as txn:
                removed = _sweep(txn, time.time())
        except lmdb.MapFullError:
            removed = 0
        if removed == 0:
            size = self.env.info()["map_size"]
            if size >= MAX_MAP_SIZE:
                raise ServiceUnavailable("the rate-limit counters are full") from None
            self.env.set_mapsize(size * 2)


def _charge(txn: Any, bucket: Bucket | None, allowances: Sequence[Allowance], now: float) -> Charge:
    counts: list[tuple[Allowance, int]] = []
    for a in allowances:
        raw = txn.get(a.key)
        count = 0
        if raw:
            count, resets_at = _COUNT.unpack(raw)
            if resets_at <= now:
                count = 0
        if count >= a.limit:
            return Charge(False, retry_after_s=max(0.0, a.resets_at - now), exhausted=a)
        counts.append((a, count))
    remaining, full_in = 0.0, 0.0
    if bucket is not None:
        raw = txn.get(bucket.key)
        tokens = float(bucket.capacity)
        if raw:
            stored, updated, _ = _BUCKET.unpack(raw)
            tokens = min(float(bucket.capacity), stored + (now - updated) * bucket.rate_per_s)
        if tokens < 1.0:
            wait = (1.0 - tokens) / bucket.rate_per_s
            full = (bucket.capacity - tokens) / bucket.rate_per_s
            return Charge(False, remaining=tokens, retry_after_s=wait, full_in_s=full)
        remaining = tokens - 1.0
        full_in = (bucket.capacity - remaining) / bucket.rate_per_s
        txn.put(bucket.key, _BUCKET.pack(remaining, now, now + full_in))
    for a, count in counts:
        txn.put(a.key, _COUNT.pack(count + 1, a.resets_at))
    left = tuple(a.limit - count - 1 for a, count in counts)
    return Charge(True, remaining=remaining, full_in_s=full_in, left=left)


def _sweep(txn: Any, now: float) -> int:
    """Delete full buckets and counts of past periods; how many went."""
    stale = []
    for k, v in txn.cursor():
        if len(v) == _BUCKET.size:
            if _BUCKET.unpack(v)[2] <= now:
                stale.append(bytes(k))
        elif len(v) == _COUNT.size and _COUNT.unpack(v)[1] <= now:
            stale.append(bytes(k))
    for k in stale:
        txn.delete(k)
    return len(stale)
