"""Rate-limit buckets and quota counts on PostgreSQL, shared by every host.

The same ``charge`` as ``counters.py``, so a quota of N is N across all hosts, not
N per host. A charge of a bucket alone (a rate limit) is one statement, ``INSERT … ON
CONFLICT DO UPDATE … RETURNING``, which refills and takes a token under the row's
lock. A charge with quotas is one transaction: each count's row is created if
absent and locked the same way (in key order, so two charges never wait on each
other in a cycle), then the bucket is charged, and the counts are raised only if
every allowance and the bucket said yes; a concurrent charge of the same keys
waits for the locks and then sees this one's counts. Quota periods and bucket
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
#: a bucket charged in one statement: refilled to ``level`` at ``now``, a token taken
#: if there is one (``last_ok``); a refused charge stores the refill, which changes
#: nothing (the level at ``now`` is what the old row said it would be)
_LEVEL = "LEAST(%s, rl_buckets.tokens + (%s - rl_buckets.updated) * %s)"
_BUCKET = (
    "INSERT INTO rl_buckets (key, tokens, updated, full_at, last_ok)"
    " VALUES (%s, %s, %s, %s, true)"
    " ON CONFLICT (key) DO UPDATE SET"
    f" last_ok = {_LEVEL} >= 1,"
    f" tokens = CASE WHEN {_LEVEL} >= 1 THEN {_LEVEL} - 1 ELSE {_LEVEL} END,"
    " updated = %s,"
    f" full_at = %s + (%s - CASE WHEN {_LEVEL} >= 1 THEN {_LEVEL} - 1 ELSE {_LEVEL} END) / %s"
    " RETURNING tokens, last_ok"
)


def _bucket_params(bucket: Bucket, now: float) -> tuple[object, ...]:
    cap, rate = float(bucket.capacity), bucket.rate_per_s
    level = (cap, now, rate)
    return (
        *(bucket.key, cap - 1.0, now, now + 1.0 / rate),
        *level,
        *(level * 3),
        now,
        *(now, cap),
        *(level * 3),
        rate,
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
        if not allowances and bucket is not None:  # one statement, no transaction
            with self._pg.connection() as conn:
                row = conn.execute(_BUCKET, _bucket_params(bucket, now)).fetchone()
            assert row is not None  # an upsert's RETURNING always has its row
            return _bucket_charge(bucket, float(row[0]), bool(row[1]))
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
    bucket_charge = Charge(True)
    if bucket is not None:
        row = txn.execute(_BUCKET, _bucket_params(bucket, now)).fetchone()
        bucket_charge = _bucket_charge(bucket, float(row[0]), bool(row[1]))
        if not bucket_charge.allowed:
            return bucket_charge
    for a in ordered:
        txn.execute("UPDATE rl_counts SET count = count + 1 WHERE key = %s", (a.key,))
    left = tuple(a.limit - counts[a.key] - 1 for a in allowances)
    return bucket_charge._replace(left=left)


def _bucket_charge(bucket: Bucket, tokens: float, ok: bool) -> Charge:
    """The answer for a bucket left with ``tokens`` by a charge that took one (``ok``)
    or found none."""
    if not ok:
        wait = (1.0 - tokens) / bucket.rate_per_s
        full = (bucket.capacity - tokens) / bucket.rate_per_s
        return Charge(False, remaining=tokens, retry_after_s=wait, full_in_s=full)
    return Charge(True, remaining=tokens, full_in_s=(bucket.capacity - tokens) / bucket.rate_per_s)


def _sweep(txn: Tx, now: float) -> int:
    """Delete full buckets and counts of past periods; how many went."""
    buckets = txn.execute("DELETE FROM rl_buckets WHERE full_at <= %s", (now,)).rowcount
    counts = txn.execute("DELETE FROM rl_counts WHERE resets_at <= %s", (now,)).rowcount
    return int(buckets) + int(counts)
