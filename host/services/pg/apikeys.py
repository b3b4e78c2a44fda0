"""API keys on PostgreSQL: what ``apikeys.py`` is on LMDB, shared by every host.

Records are the same msgpack maps, in ``api_keys``. Every create or revoke bumps the
``apikeys_generation`` counter in its transaction and announces itself on
``nimbus_apikeys`` after the commit. The gateway reads ``generation()`` on every
request, so it must not cost a query: each host keeps the last value it saw, which
its listener thread re-reads on a notification and at least every ``POLL_S`` (a
notification lost while its connection was down costs at most that long). A key
revoked through one host is therefore refused by every host within a second.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import msgpack

from host.errors import NotFound
from host.services.apikeys import (
    PREFIX,
    ApiKey,
    check_token,
    new_key,
    record_key,
    split_key,
)
from host.services.pg.store import PgStore, Tx

CHANNEL = "nimbus_apikeys"

_BUMP = "UPDATE counters SET value = value + 1 WHERE name = 'apikeys_generation' RETURNING value"


class PgApiKeys:
    """The API keys of one database (thread-safe; shared with every host)."""

    def __init__(self, store: PgStore, now_ms: Callable[[], int] | None = None) -> None:
        self._pg = store
        self._now_ms = now_ms or (lambda: int(time.time() * 1000))
        self._lock = threading.Lock()
        self._generation = 0
        self.refresh()

    def close(self) -> None:
        pass  # the pool is the services' to close

    def create(
        self,
        name: str,
        expires_in_s: float | None = None,
        policies: tuple[str, ...] = (),
        routes: tuple[str, ...] = (),
    ) -> tuple[ApiKey, str]:
        key, secret, record = new_key(name, expires_in_s, policies, routes, self._now_ms())

        def write(txn: Tx) -> int:
            txn.execute(
                "INSERT INTO api_keys (id, record) VALUES (%s, %s)",
                (key.id, msgpack.packb(record)),
            )
            return int(txn.execute(_BUMP).fetchone()[0])

        self._publish(self._pg.write(write))
        return key, f"{PREFIX}_{key.id}_{secret}"

    def list(self) -> list[ApiKey]:
        with self._pg.read() as txn:
            rows = txn.execute("SELECT record FROM api_keys").fetchall()
        return sorted((record_key(msgpack.unpackb(r[0])) for r in rows), key=lambda k: k.created_ms)

    def revoke(self, key_id: str) -> ApiKey:
        now = self._now_ms()

        def write(txn: Tx) -> tuple[dict[str, object] | None, int]:
            row = txn.execute(
                "SELECT record FROM api_keys WHERE id = %s FOR UPDATE", (key_id,)
            ).fetchone()
            if row is None:
                return None, 0
            record = dict(msgpack.unpackb(row[0]))
            if record.get("revoked_ms"):
                return record, 0
            record["revoked_ms"] = now
            txn.execute(
                "UPDATE api_keys SET record = %s WHERE id = %s", (msgpack.packb(record), key_id)
            )
            return record, int(txn.execute(_BUMP).fetchone()[0])

        record, generation = self._pg.write(write)
        if record is None:
            raise NotFound(f"no API key with id {key_id!r} (see `nimbus keys ls`)")
        if generation:
            self._publish(generation)
        return record_key(record)

    def lookup(self, token: str) -> ApiKey | None:
        parts = split_key(token)
        if parts is None:
            return None
        with self._pg.connection() as conn:
            row = conn.execute("SELECT record FROM api_keys WHERE id = %s", (parts[0],)).fetchone()
        return check_token(token, bytes(row[0]) if row else None)

    def generation(self) -> int:
        """The last generation this host saw (no query: see the module docstring)."""
        return self._generation

    def refresh(self) -> int:
        """Read the generation from the database (the listener calls this)."""
        with self._pg.connection() as conn:
            row = conn.execute(
                "SELECT value FROM counters WHERE name = 'apikeys_generation'"
            ).fetchone()
        self._seen(int(row[0]) if row else 0)
        return self._generation

    def _seen(self, generation: int) -> None:
        with self._lock:
            self._generation = max(self._generation, generation)

    def _publish(self, generation: int) -> None:
        self._seen(generation)
        self._pg.notify(CHANNEL, str(generation))
