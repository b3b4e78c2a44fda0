"""Metering on PostgreSQL: the aggregation of ``usage.py``, its rows in ``usage``.

Entries are aggregated in memory exactly as on LMDB; a flush adds the pending
counters to the stored rows with ``INSERT … ON CONFLICT DO UPDATE SET x = x + …``,
so hosts flushing into the same hour and function never lose each other's counts.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from host.services.pg.store import PgStore, Tx
from host.services.usage import _COUNTERS, Usage

_KEY = ("hour_ms", "function", "version", "trigger", "outcome")
#: the counters kept as double precision (milliseconds)
_FLOATS = frozenset(i for i, c in enumerate(_COUNTERS) if c in ("wall_ms", "cpu_ms"))


class PgUsage(Usage):
    """Usage aggregates in PostgreSQL, with the pending part kept in memory."""

    def __init__(self, store: PgStore) -> None:  # no LMDB database to open
        self._pg = store
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._pending = {}

    def _merge(self, pending: dict[tuple[int, str, int, str, str], list[float]]) -> None:
        names = ", ".join(_KEY + _COUNTERS)
        marks = ", ".join(["%s"] * (len(_KEY) + len(_COUNTERS)))
        adds = ", ".join(
            f"{c} = GREATEST(usage.{c}, excluded.{c})"
            if c == "peak_memory"
            else f"{c} = usage.{c} + excluded.{c}"
            for c in _COUNTERS
        )
        sql = (
            f"INSERT INTO usage ({names}) VALUES ({marks})"
            f" ON CONFLICT ({', '.join(_KEY)}) DO UPDATE SET {adds}"
        )

        def write(txn: Tx) -> None:
            for key, counters in sorted(pending.items()):
                txn.execute(sql, (*key, *counters))

        self._pg.write(write)

    def _stored(self, start: int) -> Iterator[tuple[int, str, int, str, str, list[Any]]]:
        with self._pg.read() as txn:
            rows = txn.execute(
                f"SELECT {', '.join(_KEY + _COUNTERS)} FROM usage WHERE hour_ms >= %s"
                " ORDER BY hour_ms, function, version, trigger, outcome",
                (max(start, 0),),
            ).fetchall()
        for r in rows:
            counters = [float(v) if i in _FLOATS else int(v) for i, v in enumerate(r[5:])]
            yield int(r[0]), str(r[1]), int(r[2]), str(r[3]), str(r[4]), counters

    def backup(self, dest: Path) -> None:
        self._pg.backup(dest)  # pg_dump's: the rows are in the database

    def close(self) -> None:
        self.flush()  # the pool is the services' to close
