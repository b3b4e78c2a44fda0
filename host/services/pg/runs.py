"""Workflow runs and their timers on PostgreSQL (``RunStore``, ``RunWork``).

The shapes are those of ``runs.py``. Inside a write transaction a run is read
``FOR UPDATE`` (its transitions, from any host, take turns), due timers are taken
``FOR UPDATE SKIP LOCKED`` (two hosts lease different steps) and an idempotency key
is looked up under an advisory lock (two starts with one key make one run).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import msgpack

from host.services.pg.store import PgStore, Tx
from host.services.pg.tables import key_lock
from host.services.runs import Timer

T = TypeVar("T")
_TIMER = "due_ms, run_id, step, attempt, leased, holder"


def _timer(row: Any) -> Timer:
    due, run_id, step, attempt, leased, holder = row
    return Timer(int(due), run_id, step, int(attempt), bool(leased), holder)


class PgRunTable:
    """Runs, timers and idempotency keys inside one transaction."""

    __slots__ = ("_txn",)

    def __init__(self, txn: Tx) -> None:
        self._txn = txn

    def get(self, run_id: str) -> dict[str, Any] | None:
        lock = " FOR UPDATE" if self._txn.writing else ""
        row = self._txn.execute(f"SELECT run FROM wf_runs WHERE id = %s{lock}", (run_id,))
        found = row.fetchone()
        return None if found is None else dict(msgpack.unpackb(found[0]))

    def put(self, run: dict[str, Any]) -> None:
        self._txn.execute(
            "INSERT INTO wf_runs (id, run) VALUES (%s, %s)"
            " ON CONFLICT (id) DO UPDATE SET run = excluded.run",
            (run["id"], msgpack.packb(run)),
        )

    def delete(self, run_id: str) -> None:
        self._txn.execute("DELETE FROM wf_runs WHERE id = %s", (run_id,))

    def all(self) -> list[dict[str, Any]]:
        rows = self._txn.execute("SELECT run FROM wf_runs ORDER BY id").fetchall()
        return [dict(msgpack.unpackb(r[0])) for r in rows]

    def add_timer(self, t: Timer) -> None:
        self._txn.execute(
            f"INSERT INTO wf_timers ({_TIMER}) VALUES (%s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (due_ms, run_id) DO UPDATE SET step = excluded.step,"
            " attempt = excluded.attempt, leased = excluded.leased, holder = excluded.holder",
            (t.due_ms, t.run_id, t.step, t.attempt, t.leased, t.holder),
        )

    def remove_timer(self, due_ms: int, run_id: str) -> None:
        self._txn.execute(
            "DELETE FROM wf_timers WHERE due_ms = %s AND run_id = %s", (due_ms, run_id)
        )

    def due(self, now_ms: int, limit: int) -> list[Timer]:
        """Up to ``limit`` timers due at ``now_ms``, earliest first (in a write
        transaction, only timers no other transaction holds)."""
        lock = " FOR UPDATE SKIP LOCKED" if self._txn.writing else ""
        rows = self._txn.execute(
            f"SELECT {_TIMER} FROM wf_timers WHERE due_ms <= %s ORDER BY due_ms, run_id"
            f" LIMIT %s{lock}",
            (now_ms, limit),
        ).fetchall()
        return [_timer(r) for r in rows]

    def leases(self) -> list[Timer]:
        rows = self._txn.execute(
            f"SELECT {_TIMER} FROM wf_timers WHERE leased ORDER BY due_ms, run_id"
        ).fetchall()
        return [_timer(r) for r in rows]

    def count_timers(self) -> int:
        return int(self._txn.execute("SELECT count(*) FROM wf_timers").fetchone()[0])

    def key_run(self, workflow: str, key: str) -> str | None:
        if self._txn.writing:
            self._txn.lock(key_lock("wf_key", workflow, key.encode()))
        row = self._txn.execute(
            "SELECT run_id FROM wf_keys WHERE workflow = %s AND key = %s", (workflow, key)
        ).fetchone()
        return None if row is None else str(row[0])

    def set_key(self, workflow: str, key: str, run_id: str) -> None:
        if self._txn.writing:
            self._txn.lock(key_lock("wf_key", workflow, key.encode()))
        self._txn.execute(
            "INSERT INTO wf_keys (workflow, key, run_id) VALUES (%s, %s, %s)"
            " ON CONFLICT (workflow, key) DO UPDATE SET run_id = excluded.run_id",
            (workflow, key, run_id),
        )

    def delete_key(self, workflow: str, key: str) -> None:
        self._txn.execute("DELETE FROM wf_keys WHERE workflow = %s AND key = %s", (workflow, key))


class PgRuns:
    """The workflow runs of one database."""

    def __init__(self, store: PgStore) -> None:
        self._store = store

    def table(self, txn: Tx) -> PgRunTable:
        """The runs inside transaction ``txn`` (for ``reclaim.py``)."""
        return PgRunTable(txn)

    def transact(self, fn: Callable[[PgRunTable], T]) -> T:
        return self._store.write(lambda txn: fn(PgRunTable(txn)))

    def get(self, run_id: str) -> dict[str, Any] | None:
        with self._store.read() as txn:
            return PgRunTable(txn).get(run_id)

    def all(self) -> list[dict[str, Any]]:
        with self._store.read() as txn:
            return PgRunTable(txn).all()

    def count_timers(self) -> int:
        with self._store.read() as txn:
            return PgRunTable(txn).count_timers()
