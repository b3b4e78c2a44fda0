"""What is deployed, as stored records: functions, routes, app config, a generation.

The registry (``host/platform/registry.py``) decides what a deployment means; this
module only keeps the records, shared by every process on one data dir. Every change
bumps a generation counter that readers compare cheaply to notice a deployment made
by another process. A function's record is a plain dict (name, version, sha256,
deployed_ms, config); putting one whose module and config are unchanged keeps the
version, anything else makes a new one.

``generation()`` is read on every request, so it opens no transaction while nothing
changed: each change publishes its generation through a ``GenerationSignal``
(``signal.py``) after its commit, and the stored counter is read again only when the
published value moved, or ``RECHECK_S`` after the last read (a writer that died
between its commit and its publish, a data dir restored under a running server).
"""

from __future__ import annotations

import time
from typing import Any

import msgpack

from host.services.signal import GenerationSignal
from host.services.storage import Storage

_DB = b"registry"
_FN = b"fn/"
_ROUTES = b"routes"
_GENERATION = b"generation"
_APP = b"app/"
_SIGNAL_FILE = "deployments.generation"
#: the longest a change can go unseen when its writer never published it
RECHECK_S = 1.0


class Deployments:
    """Deployment records on the LMDB backend."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._db = storage.db(_DB)
        self._signal = GenerationSignal(storage.path / _SIGNAL_FILE)
        #: (published value seen, stored generation read after it, monotonic deadline)
        self._seen: tuple[int, int, float] = (-1, -1, 0.0)

    def close(self) -> None:
        self._signal.close()

    def generation(self) -> int:
        """A number that changes whenever anything here changes (by any process)."""
        published = self._signal.read()
        seen, generation, until = self._seen
        now = time.monotonic()
        if published == seen and now < until:
            return generation
        with self._storage.read() as txn:  # after the signal was read: see signal.py
            generation = _generation(txn, self._db)
        self._seen = (published, generation, now + RECHECK_S)
        return generation

    def function(self, name: str) -> tuple[int, dict[str, Any] | None]:
        """The generation and ``name``'s record (None: not deployed), from one snapshot."""
        with self._storage.read() as txn:
            generation = _generation(txn, self._db)
            raw = txn.get(_FN + name.encode(), db=self._db)
        return generation, None if raw is None else dict(msgpack.unpackb(raw))

    def functions(self) -> list[dict[str, Any]]:
        out = []
        with self._storage.read() as txn:
            cur = txn.cursor(db=self._db)
            if cur.set_range(_FN):
                for k, v in cur:
                    if not bytes(k).startswith(_FN):
                        break
                    out.append(dict(msgpack.unpackb(v)))
        return out

    def put_function(
        self, name: str, sha256: str, config: dict[str, Any], now_ms: int
    ) -> dict[str, Any]:
        """Make ``sha256`` with ``config`` the serving version of ``name``; its record
        (the same version when module and config are unchanged, else a new one)."""
        key, db = _FN + name.encode(), self._db

        def write(txn: Any) -> dict[str, Any]:
            raw = txn.get(key, db=db)
            version = 1
            if raw is not None:
                old = dict(msgpack.unpackb(raw))
                if old["sha256"] == sha256 and old["config"] == config:
                    return old
                version = int(old["version"]) + 1
            record = {
                "name": name,
                "version": version,
                "sha256": sha256,
                "deployed_ms": now_ms,
                "config": config,
            }
            txn.put(key, msgpack.packb(record), db=db)
            bumped.append(_bump(txn, db))
            return record

        bumped: list[int] = []
        record = self._storage.write(write)
        self._publish(bumped)
        return record

    def delete_function(self, name: str) -> bool:
        """Remove ``name``; False when it was not deployed."""
        key, db = _FN + name.encode(), self._db

        def write(txn: Any) -> bool:
            if not txn.delete(key, db=db):
                return False
            bumped.append(_bump(txn, db))
            return True

        bumped: list[int] = []
        deleted = self._storage.write(write)
        self._publish(bumped)
        return deleted

    def set_routes(self, routes: list[dict[str, Any]]) -> None:
        self._set(_ROUTES, routes)

    def routes(self) -> list[dict[str, Any]]:
        found = self._get(_ROUTES)
        return [] if found is None else list(found)

    def set_app_config(self, name: str, config: dict[str, Any]) -> None:
        """Store a manifest section (``triggers``, ``workflows``) as written."""
        self._set(_APP + name.encode(), config)

    def app_config(self, name: str) -> dict[str, Any]:
        found = self._get(_APP + name.encode())
        return {} if found is None else dict(found)

    def put_module(self, sha256: str, wasm: bytes) -> None:
        """Nothing to do: the data dir's ``modules/`` folder is every process's."""

    def module(self, sha256: str) -> bytes | None:
        return None

    def _set(self, key: bytes, value: Any) -> None:
        packed, db = msgpack.packb(value), self._db

        def write(txn: Any) -> None:
            if txn.get(key, db=db) != packed:
                txn.put(key, packed, db=db)
                bumped.append(_bump(txn, db))

        bumped: list[int] = []
        self._storage.write(write)
        self._publish(bumped)

    def _publish(self, bumped: list[int]) -> None:
        """Publish the generation a committed write counted (the last, if retried)."""
        if bumped:
            self._signal.publish(bumped[-1])

    def _get(self, key: bytes) -> Any:
        with self._storage.read() as txn:
            raw = txn.get(key, db=self._db)
        return None if raw is None else msgpack.unpackb(raw)


def _generation(txn: Any, db: Any) -> int:
    raw = txn.get(_GENERATION, db=db)
    return int(raw) if raw is not None else 0


def _bump(txn: Any, db: Any) -> int:
    generation = _generation(txn, db) + 1
    txn.put(_GENERATION, str(generation).encode(), db=db)
    return generation
