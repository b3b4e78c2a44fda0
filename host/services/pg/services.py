"""The managed services on one PostgreSQL database: what ``Services`` is on LMDB.

Every host pointed at the same database (and schema) shares tables, blobs, queues,
the outbox, idempotency records, schedules, workflow runs, deployments (module bytes
included), usage, the gateway's API keys and rate-limit and quota counters, sealed
secrets (not their key: a file every host holds, ``pg/secrets.py``) and console
sessions. The schema is migrated here at start (``schema.py``). What stays per host
is the console's per-minute activity figures (a small LMDB environment under the
host's data dir); see the README's "Running several hosts".
"""

from __future__ import annotations

import threading
from pathlib import Path

from host.services.activity import Activity
from host.services.blobs import MAX_OBJECT_BYTES
from host.services.effects import Effects
from host.services.indexes import IndexCatalog
from host.services.pg.apikeys import PgApiKeys
from host.services.pg.blobs import PgBlobs
from host.services.pg.console_sessions import PgConsoleSessions
from host.services.pg.consumer import PgConsumer
from host.services.pg.counters import PgCounters
from host.services.pg.cursors import PgOutboxCursor, PgScheduleLeases
from host.services.pg.deployments import PgDeployments
from host.services.pg.hosts import PgHosts
from host.services.pg.listener import COMMIT_CHANNEL, Listener
from host.services.pg.outbox import PgIdempotency, PgOutbox
from host.services.pg.queues import PgQueues
from host.services.pg.runs import PgRuns
from host.services.pg.schema import check_schema, migrate
from host.services.pg.secrets import PgSecrets
from host.services.pg.store import PgStore, Tx
from host.services.pg.tables import PgTables
from host.services.pg.usage import PgUsage
from host.services.pg.work import PgWork
from host.services.secrets import Secrets


class PgServices:
    """The managed services of one PostgreSQL database, for one host process."""

    def __init__(
        self,
        url: str,
        path: Path,
        schema: str = "",
        max_object_bytes: int = MAX_OBJECT_BYTES,
        pool_size: int = 16,
        map_size: int = 1 << 20,
    ) -> None:
        self.storage = PgStore(url, schema, pool_size)
        try:
            with self.storage.connect() as conn:
                migrate(conn, schema)
        except BaseException:
            self.storage.close()
            raise
        self.tables = PgTables()
        #: index definitions (a manifest apply sets them, back-filling new ones)
        self.indexes = IndexCatalog(self.storage, self.tables, self.tables.index)
        self.blobs = PgBlobs(max_object_bytes)
        self.queues = PgQueues()
        self.outbox = PgOutbox()
        self.idempotency = PgIdempotency()
        self.consumer = PgConsumer(self.storage, self.queues)
        self.dispatch = PgOutboxCursor(self.storage, self.outbox, self.queues)
        self.schedules = PgScheduleLeases(self.storage, self.queues)
        self.runs = PgRuns(self.storage)
        self.deployments = PgDeployments(self.storage)
        self.hosts = PgHosts(self.storage)
        self.usage = PgUsage(self.storage)
        self.api_keys = PgApiKeys(self.storage)
        self.counters = PgCounters(self.storage)
        self.console_sessions = PgConsoleSessions(self.storage)
        #: per-minute activity of this host's invocations (the console's overview)
        self.activity = Activity(path / "activity")
        self.committed = threading.Condition()
        self._listener = Listener(self.storage, self._wake, self._refresh)

    def _refresh(self) -> None:
        """Re-read what other hosts change and readers cache: deployments, API keys."""
        self.deployments.refresh()
        self.api_keys.refresh()

    def open_secrets(self, key_path: Path) -> Secrets:
        """The secrets, sealed under the key in ``key_path`` (the same file on every host)."""
        return PgSecrets(self.storage, key_path)

    def _wake(self) -> None:
        with self.committed:
            self.committed.notify_all()

    def notify_committed(self) -> None:
        """Wake this host's consumers now, and every other host's by ``NOTIFY``."""
        self._wake()
        self.storage.notify(COMMIT_CHANNEL)

    def work(self, txn: Tx) -> PgWork:
        return PgWork(self.queues, txn)

    def wait_for_commit(self, timeout: float) -> bool:
        """Block until a commit on any host (announced by ``NOTIFY``: True), or
        ``timeout`` (False)."""
        with self.committed:
            return self.committed.wait(timeout)

    def begin(self, source: str = "") -> Effects:
        return Effects(self, source)

    def backup(self, dest: Path) -> None:
        self.storage.backup(dest)

    def close(self) -> None:
        self._listener.close()
        self.usage.close()
        self.activity.close()
        self.counters.close()
        self.api_keys.close()
        self.storage.close()

    def drop_schema(self) -> None:
        """Drop this store's schema and everything in it (tests' clean-up)."""
        schema = self.storage.schema
        if not schema:
            raise ValueError("refusing to drop the default schema")
        with self.storage.connect() as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{check_schema(schema)}" CASCADE'.encode())
