"""Deployment records and module bytes on PostgreSQL (``DeploymentStore``).

The records are those of ``deployments.py``; the module bytes live in the database
too (``modules``, by sha256), so a host that never saw a deploy fetches the module
once and keeps it in its own cache. The generation is asked on every request, so it
is kept in memory: a change made here sets it at once, a change made by another
host arrives by ``NOTIFY nimbus_deploy`` (``listener.py``) or, should a notification
be lost, by the listener's poll, well within a second.
"""

from __future__ import annotations

import threading
from typing import Any

import msgpack

from host.services.pg.store import PgStore, Tx

#: the channel a deploy is announced on
DEPLOY_CHANNEL = "nimbus_deploy"


def _bump(txn: Tx) -> int:
    row = txn.execute(
        "UPDATE counters SET value = value + 1 WHERE name = 'generation' RETURNING value"
    ).fetchone()
    txn.execute("SELECT pg_notify(%s, %s)", (DEPLOY_CHANNEL, str(row[0])))
    return int(row[0])


class PgDeployments:
    """Deployment records in ``deployments``, ``app_config`` and ``modules``."""

    def __init__(self, store: PgStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._generation = -1
        self.refresh()

    def refresh(self) -> int:
        """Read the generation from the database (the listener calls this)."""
        with self._store.connection() as conn:
            row = conn.execute("SELECT value FROM counters WHERE name = 'generation'").fetchone()
        self._seen(int(row[0]) if row else 0)
        return self._generation

    def _seen(self, generation: int) -> None:
        with self._lock:
            self._generation = max(self._generation, generation)

    def generation(self) -> int:
        return self._generation

    def function(self, name: str) -> tuple[int, dict[str, Any] | None]:
        with self._store.read() as txn:
            row = txn.execute(
                "SELECT (SELECT value FROM counters WHERE name = 'generation'),"
                " (SELECT record FROM deployments WHERE name = %s)",
                (name,),
            ).fetchone()
        generation, raw = int(row[0]), row[1]
        self._seen(generation)
        return generation, None if raw is None else dict(msgpack.unpackb(raw))

    def functions(self) -> list[dict[str, Any]]:
        with self._store.read() as txn:
            rows = txn.execute("SELECT record FROM deployments ORDER BY name").fetchall()
        return [dict(msgpack.unpackb(r[0])) for r in rows]

    def put_function(
        self, name: str, sha256: str, config: dict[str, Any], now_ms: int
    ) -> dict[str, Any]:
        def write(txn: Tx) -> tuple[dict[str, Any], int]:
            txn.execute("SELECT value FROM counters WHERE name = 'generation' FOR UPDATE")
            row = txn.execute("SELECT record FROM deployments WHERE name = %s", (name,)).fetchone()
            version = 1
            if row is not None:
                old = dict(msgpack.unpackb(row[0]))
                if old["sha256"] == sha256 and old["config"] == config:
                    return old, -1
                version = int(old["version"]) + 1
            record = {
                "name": name,
                "version": version,
                "sha256": sha256,
                "deployed_ms": now_ms,
                "config": config,
            }
            txn.execute(
                "INSERT INTO deployments (name, record) VALUES (%s, %s)"
                " ON CONFLICT (name) DO UPDATE SET record = excluded.record",
                (name, msgpack.packb(record)),
            )
            return record, _bump(txn)

        record, generation = self._store.write(write)
        self._seen(generation)
        return record

    def delete_function(self, name: str) -> bool:
        def write(txn: Tx) -> int:
            gone = txn.execute("DELETE FROM deployments WHERE name = %s", (name,)).rowcount
            return _bump(txn) if gone else -1

        generation = self._store.write(write)
        self._seen(generation)
        return generation >= 0

    def set_routes(self, routes: list[dict[str, Any]]) -> None:
        self._set("routes", routes)

    def routes(self) -> list[dict[str, Any]]:
        found = self._get("routes")
        return [] if found is None else list(found)

    def set_app_config(self, name: str, config: dict[str, Any]) -> None:
        self._set("app/" + name, config)

    def app_config(self, name: str) -> dict[str, Any]:
        found = self._get("app/" + name)
        return {} if found is None else dict(found)

    def put_module(self, sha256: str, wasm: bytes) -> None:
        """Keep a module's bytes in the database (once per sha256)."""
        self._store.write(
            lambda txn: txn.execute(
                "INSERT INTO modules (sha256, wasm) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (sha256, wasm),
            )
        )

    def module(self, sha256: str) -> bytes | None:
        with self._store.connection() as conn:
            row = conn.execute("SELECT wasm FROM modules WHERE sha256 = %s", (sha256,)).fetchone()
        return None if row is None else bytes(row[0])

    def _set(self, name: str, value: Any) -> None:
        packed = msgpack.packb(value)

        def write(txn: Tx) -> int:
            txn.execute("SELECT value FROM counters WHERE name = 'generation' FOR UPDATE")
            row = txn.execute("SELECT value FROM app_config WHERE name = %s", (name,)).fetchone()
            if row is not None and bytes(row[0]) == packed:
                return -1
            txn.execute(
                "INSERT INTO app_config (name, value) VALUES (%s, %s)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (name, packed),
            )
            return _bump(txn)

        self._seen(self._store.write(write))

    def _get(self, name: str) -> Any:
        with self._store.connection() as conn:
            row = conn.execute("SELECT value FROM app_config WHERE name = %s", (name,)).fetchone()
        return None if row is None else msgpack.unpackb(row[0])
