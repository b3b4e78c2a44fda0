"""Queues on PostgreSQL: the ``QueueStore`` of ``queues.py``, one row per message.

Leasing is one statement: the first visible messages of a queue, locked ``FOR
UPDATE SKIP LOCKED`` (a message another host is leasing right now is skipped, not
waited for), moved forward by the visibility timeout, their attempt counted and
their holder set. Ack, retry and dead-letter change one row each, in whatever
transaction the caller runs them (an ack commits with a function's effects).
"""

from __future__ import annotations

from typing import Any

from host.services.pg.store import Tx
from host.services.queues import Message, QueueStats

_COLUMNS = "queue, id, body, enqueued_ms, visible_ms, attempt, last_error, holder"


def _message(row: Any) -> Message:
    queue, id, body, enqueued, visible, attempt, error, holder = row[:8]
    return Message(id, queue, bytes(body), enqueued, visible, attempt, error, holder)


class PgQueues:
    """Messages in ``q_msgs``, indexed by (queue, visible time) and by holder."""

    def send(self, txn: Tx, m: Message) -> None:
        txn.execute(
            f"INSERT INTO q_msgs ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (m.queue, m.id, m.body, m.enqueued_ms, m.visible_ms, m.attempt, m.last_error, m.holder),
        )

    def get(self, txn: Tx, queue: str, id: str) -> Message | None:
        row = txn.execute(
            f"SELECT {_COLUMNS} FROM q_msgs WHERE queue = %s AND id = %s", (queue, id)
        ).fetchone()
        return None if row is None else _message(row)

    def has_due(self, txn: Tx, queue: str, now_ms: int) -> bool:
        row = txn.execute(
            "SELECT 1 FROM q_msgs WHERE queue = %s AND visible_ms <= %s LIMIT 1", (queue, now_ms)
        ).fetchone()
        return row is not None

    def lease(
        self, txn: Tx, queue: str, limit: int, visibility_ms: int, now_ms: int, holder: str = ""
    ) -> list[Message]:
        """Up to ``limit`` visible messages, hidden for ``visibility_ms``, attempt + 1,
        leased by ``holder``; in visibility order."""
        rows = txn.execute(
            "WITH due AS (SELECT queue, id, visible_ms AS was FROM q_msgs"
            " WHERE queue = %s AND visible_ms <= %s ORDER BY visible_ms, id LIMIT %s"
            " FOR UPDATE SKIP LOCKED)"
            " UPDATE q_msgs m SET visible_ms = %s, attempt = m.attempt + 1, holder = %s"
            " FROM due WHERE m.queue = due.queue AND m.id = due.id"
            f" RETURNING {', '.join('m.' + c for c in _COLUMNS.split(', '))}, due.was",
            (queue, now_ms, limit, now_ms + visibility_ms, holder),
        ).fetchall()
        rows.sort(key=lambda r: (r[8], r[1]))
        return [_message(r) for r in rows]

    def release(self, txn: Tx, holder: str, now_ms: int) -> int:
        """Make every message ``holder`` leased visible at ``now_ms`` (its host died)."""
        count: int = txn.execute(
            "UPDATE q_msgs SET visible_ms = least(visible_ms, %s), holder = '' WHERE holder = %s",
            (now_ms, holder),
        ).rowcount
        return count

    def holders(self, txn: Tx) -> list[str]:
        rows = txn.execute("SELECT DISTINCT holder FROM q_msgs WHERE holder <> ''").fetchall()
        return [r[0] for r in rows]

    def ack(self, txn: Tx, queue: str, id: str) -> bool:
        gone = txn.execute("DELETE FROM q_msgs WHERE queue = %s AND id = %s", (queue, id))
        return bool(gone.rowcount)

    def retry_at(
        self, txn: Tx, queue: str, id: str, visible_ms: int, error: str, count: bool = True
    ) -> None:
        txn.execute(
            "UPDATE q_msgs SET visible_ms = %s, last_error = %s, holder = '',"
            " attempt = CASE WHEN %s THEN attempt ELSE greatest(attempt - 1, 0) END"
            " WHERE queue = %s AND id = %s",
            (visible_ms, error, count, queue, id),
        )

    def move(self, txn: Tx, queue: str, id: str, to_queue: str, now_ms: int, error: str) -> None:
        """Move a message to ``to_queue`` (a dead-letter queue), visible now."""
        txn.execute(
            "UPDATE q_msgs SET queue = %s, visible_ms = %s, last_error = %s, holder = ''"
            " WHERE queue = %s AND id = %s",
            (to_queue, now_ms, error, queue, id),
        )

    def peek(self, txn: Tx, queue: str, limit: int) -> list[Message]:
        rows = txn.execute(
            f"SELECT {_COLUMNS} FROM q_msgs WHERE queue = %s ORDER BY id LIMIT %s",
            (queue, min(limit, 1 << 62)),
        ).fetchall()
        return [_message(r) for r in rows]

    def stats(self, txn: Tx, queue: str, now_ms: int, dead_letter: str | None = None) -> QueueStats:
        row = txn.execute(
            "SELECT count(*), count(*) FILTER (WHERE visible_ms > %s AND attempt > 0),"
            " count(*) FILTER (WHERE visible_ms > %s AND attempt = 0)"
            " FROM q_msgs WHERE queue = %s",
            (now_ms, now_ms, queue),
        ).fetchone()
        dead = 0 if dead_letter is None else self.stats(txn, dead_letter, now_ms).depth
        return QueueStats(int(row[0]), int(row[1]), int(row[2]), dead)

    def names(self, txn: Tx) -> list[str]:
        rows = txn.execute("SELECT DISTINCT queue FROM q_msgs ORDER BY queue").fetchall()
        return [r[0] for r in rows]
