"""Queue consumption on PostgreSQL: ``consumer.py``'s operations, a lease in one
statement (no transaction around it: the statement is atomic on its own)."""

from __future__ import annotations

from host.services.consumer import Consumer
from host.services.pg.queues import PgQueues
from host.services.pg.store import PgStore, Tx
from host.services.queues import Message


class PgConsumer(Consumer):
    """``Consumer`` over a ``PgStore``, leasing without BEGIN and COMMIT."""

    def __init__(self, store: PgStore, queues: PgQueues) -> None:
        super().__init__(store, queues)
        self._pg = store
        self._pg_queues = queues

    def lease(
        self, queue: str, limit: int, visibility_ms: int, now_ms: int, holder: str = ""
    ) -> list[Message]:
        with self._pg.connection() as conn:
            return self._pg_queues.lease(
                Tx(conn, writing=True), queue, limit, visibility_ms, now_ms, holder
            )
