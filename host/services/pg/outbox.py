"""The outbox and the idempotency records on PostgreSQL (``EventLog``, ``IdempotencyLog``).

A record's sequence number comes from the ``outbox_last`` counter row, updated in the
committing transaction: its row lock is held to the commit, so numbers become
visible in order and a dispatcher never passes a number that commits later (a
sequence would hand them out of commit order). An idempotency id is claimed by
the check itself, an insert ``ON CONFLICT DO NOTHING`` (see ``PgIdempotency``).
"""

from __future__ import annotations

import time
from typing import Any

import msgpack

from host.services.pg.store import Contended, Tx


class PgOutbox:
    """Records in ``outbox``, numbered by the ``outbox_last`` counter."""

    def append(self, txn: Tx, record: dict[str, Any]) -> int:
        row = txn.execute(
            "UPDATE counters SET value = value + 1 WHERE name = 'outbox_last' RETURNING value"
        ).fetchone()
        seq = int(row[0])
        txn.execute(
            "INSERT INTO outbox (seq, record) VALUES (%s, %s)", (seq, msgpack.packb(record))
        )
        return seq

    def after(self, txn: Tx, seq: int, limit: int) -> list[tuple[int, dict[str, Any]]]:
        rows = txn.execute(
            "SELECT seq, record FROM outbox WHERE seq > %s ORDER BY seq LIMIT %s", (seq, limit)
        ).fetchall()
        return [(int(s), msgpack.unpackb(r)) for s, r in rows]

    def trim(self, txn: Tx, upto: int) -> int:
        count: int = txn.execute("DELETE FROM outbox WHERE seq <= %s", (upto,)).rowcount
        return count


class PgIdempotency:
    """Committed event ids in ``idempotency``.

    In a write transaction ``seen`` claims the id at once (an insert that commits with
    the transaction: one round trip for the check and the record). An id committed
    before, or by a commit racing this one (the insert waits for that commit), is
    seen. Seeing one id of a batch gives back the ids this transaction claimed before
    it: then nothing of the batch is applied.
    """

    def seen(self, txn: Tx, idempotency_id: str) -> bool:
        if not txn.writing:
            row = txn.execute("SELECT 1 FROM idempotency WHERE id = %s", (idempotency_id,))
            return row.fetchone() is not None
        if idempotency_id in txn.remembered:
            return False
        inserted = txn.execute(
            "INSERT INTO idempotency (id, committed_ms) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (idempotency_id, int(time.time() * 1000)),
        ).rowcount
        if inserted:
            txn.remembered.add(idempotency_id)
            return False
        if txn.remembered:
            txn.execute("DELETE FROM idempotency WHERE id = ANY(%s)", (list(txn.remembered),))
            txn.remembered.clear()
        return True

    def remember(self, txn: Tx, idempotency_id: str) -> None:
        if idempotency_id in txn.remembered:
            return
        inserted = txn.execute(
            "INSERT INTO idempotency (id, committed_ms) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (idempotency_id, int(time.time() * 1000)),
        ).rowcount
        if not inserted:
            raise Contended(f"event {idempotency_id} was committed by a concurrent invocation")
        txn.remembered.add(idempotency_id)
