"""The web console's login sessions, stored beside the data (the LMDB backend).

A session is a random id mapped to its CSRF token, expiry and the fingerprint of the
admin token it was made under. Kept in the data dir so every worker process sees
the same sessions and a logout ends one everywhere. The console decides what a
session means; this module only stores them.
"""

from __future__ import annotations

from typing import Any

import msgpack
from msgspec import Struct

from host.services.storage import Storage

_DB = b"console_sessions"


class SessionRecord(Struct, frozen=True):
    """What is stored for one session id."""

    csrf: str
    expires_ms: int
    fingerprint: str


class ConsoleSessions:
    """Put, get and delete sessions; expired ones are purged on every put."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._db = storage.db(_DB)

    def put(self, session_id: str, record: SessionRecord, now_ms: int) -> None:
        packed = msgpack.packb([record.csrf, record.expires_ms, record.fingerprint])

        def write(txn: Any) -> None:
            cur = txn.cursor(db=self._db)
            expired = [k for k, v in cur if msgpack.unpackb(v)[1] <= now_ms]
            for k in expired:
                txn.delete(k, db=self._db)
            txn.put(session_id.encode(), packed, db=self._db)

        self._storage.write(write)

    def get(self, session_id: str) -> SessionRecord | None:
        with self._storage.read() as txn:
            raw = txn.get(session_id.encode(), db=self._db)
        if raw is None:
            return None
        csrf, expires, fingerprint = msgpack.unpackb(raw)
        return SessionRecord(csrf, expires, fingerprint)

    def delete(self, session_id: str) -> None:
        self._storage.write(lambda txn: txn.delete(session_id.encode(), db=self._db))
