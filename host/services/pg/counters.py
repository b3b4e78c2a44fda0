"""Rate-limit buckets and quota counts on PostgreSQL, shared by every host.

The same ``charge`` as ``counters.py``, so a quota of N is N across all hosts, not
N per host. One ``charge`` is one transaction: each count's row, then the bucket's,
is created if absent and locked by ``INSERT … ON CONFLICT DO UPDATE … RETURNING``
(in key order, so two charges never wait on each other in a cycle), decided on
with the latest committed values, and written; a concurrent charge of the same
keys waits for the lock and then sees this one's counts. Quota periods and bucket
refills use the caller's clock (each host's), as on LMDB.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from host.services.counters import SWEEP_EVERY, Allowance, Bucket, Charge
from host.services.pg.store import PgStore, Tx

_COUNT = (
    "INSERT INTO rl_counts (key, count, resets_at) VALUES (%s, 0, %s)"
    " ON CONFLICT (key) DO UPDATE SET"
    " count = CASE WHEN rl_counts.resets_at <= %s THEN 0 ELSE rl_counts.count END,"
    " resets_at = CASE WHEN rl_counts.resets_at <= %s THEN excluded.resets_at"
    " ELSE rl_counts.resets_at END"
    " RETURNING count"
)
_BUCKET = (
    "INSERT INTO rl_buckets (key, tokens, updated, full_at) VALUES (%s, %s, %s, %s)"
    " ON CONFLICT (key) DO UPDATE SET tokens = rl_buckets.tokens"
    " RETURNING tokens, updated, xmax = 0"
)


class PgCounters:
    """The counters of one database (thread-safe; shared with every host)."""

    def __init__(self, store: PgStore) -> None:
        self._pg = store
        self._lock = threading.Lock()
        self._since_sweep = 0

    def space(self) -> tuple[int, int]:
        return (0, 0)  # in the database, not a map of this host's

    def close(self) -> None:
        pass  # the pool is the services' to close

    def charge(self, bucket: Bucket | None, allowances: Sequence[Allowance], now: float) -> Charge:
        with self._lock:
            self._since_sweep += 1
            sweep = self._since_sweep >= SWEEP_EVERY
            if sweep:
                self._since_sweep = 0
        if sweep:
            self._pg.write(lambda txn: _sweep(txn, now))
        ordered = sorted(allowances, key=lambda a: a.key)
        charge: Charge = self._pg.write(lambda txn: _charge(txn, bucket, ordered, allowances, now))
        return charge

    def usage(self, key: bytes) -> int:
        with self._pg.connection() as conn:
            row = conn.execute(
                "SELECT count, resets_at FROM rl_counts WHERE key = %s", (key,)
            ).fetchone()
        return int(row[0]) if row else 0


def _charge(
    txn: Tx,
    bucket: Bucket | None,
    ordered: Sequence[Allowance],
    allowances: Sequence[Allowance],
    now: float,
) -> Charge:
    counts: dict[bytes, int] = {}
    for a in ordered:
        counts[a.key] = int(txn.execute(_COUNT, (a.key, a.resets_at, now, now)).fetchone()[0])
    for a in allowances:  # the caller's order decides which allowance is reported
        if counts[a.key] >= a.limit:
            return Charge(False, retry_after_s=max(0.0, a.resets_at - now), exhausted=a)
    remaining, full_in = 0.0, 0.0
    if bucket is not None:
        capacity = float(bucket.capacity)
        stored, updated, fresh = txn.execute(_BUCKET, (bucket.key, capacity, now, now)).fetchone()
        tokens = capacity if fresh else min(capacity, stored + (now - updated) * bucket.rate_per_s)
        if tokens < 1.0:
            wait = (1.0 - tokens) / bucket.rate_per_s
            full = (bucket.capacity - tokens) / bucket.rate_per_s
            return Charge(False, remaining=tokens, retry_after_s=wait, full_in_s=full)
        remaining = tokens - 1.0
        full_in = (bucket.capacity - remaining) / bucket.rate_per_s
        txn.execute(
            "UPDATE rl_buckets SET tokens = %s, updated = %s, full_at = %s WHERE key = %s",
            (remaining, now, now + full_in, bucket.key),
        )
    for a in ordered:
        txn.execute("UPDATE rl_counts SET count = count + 1 WHERE key = %s", (a.key,))
    left = tuple(a.limit - counts[a.key] - 1 for a in allowances)
    return Charge(True, remaining=remaining, full_in_s=full_in, left=left)


def _sweep(txn: Tx, now: float) -> int:
    """Delete full buckets and counts of past periods; how many went."""
    buckets = txn.execute("DELETE FROM rl_buckets WHERE full_at <= %s", (now,)).rowcount
    counts = txn.execute("DELETE FROM rl_counts WHERE resets_at <= %s", (now,)).rowcount
    return int(buckets) + int(counts)
