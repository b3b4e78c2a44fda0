"""The web console's login sessions on PostgreSQL, so a session made through one host
is valid on every host behind the load balancer, and a logout ends it everywhere."""

from __future__ import annotations

import msgpack

from host.services.console_sessions import ConsoleSessions, SessionRecord
from host.services.pg.store import PgStore, Tx


class PgConsoleSessions(ConsoleSessions):
    """Put, get and delete sessions in ``console_sessions``; expired ones are purged
    on every put."""

    def __init__(self, store: PgStore) -> None:  # no LMDB database to open
        self._pg = store

    def put(self, session_id: str, record: SessionRecord, now_ms: int) -> None:
        packed = msgpack.packb([record.csrf, record.expires_ms, record.fingerprint])

        def write(txn: Tx) -> None:
            txn.execute("DELETE FROM console_sessions WHERE expires_ms <= %s", (now_ms,))
            txn.execute(
                "INSERT INTO console_sessions (id, record, expires_ms) VALUES (%s, %s, %s)"
                " ON CONFLICT (id) DO UPDATE SET record = excluded.record,"
                " expires_ms = excluded.expires_ms",
                (session_id, packed, record.expires_ms),
            )

        self._pg.write(write)

    def get(self, session_id: str) -> SessionRecord | None:
        with self._pg.connection() as conn:
            row = conn.execute(
                "SELECT record FROM console_sessions WHERE id = %s", (session_id,)
            ).fetchone()
        if row is None:
            return None
        csrf, expires, fingerprint = msgpack.unpackb(bytes(row[0]))
        return SessionRecord(csrf, expires, fingerprint)

    def delete(self, session_id: str) -> None:
        with self._pg.connection() as conn:
            conn.execute("DELETE FROM console_sessions WHERE id = %s", (session_id,))
