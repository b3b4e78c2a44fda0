"""Transactions on PostgreSQL: one connection pool per host process.

Isolation is READ COMMITTED with explicit locks, chosen over SERIALIZABLE on purpose.
Every read-modify-write locks what it decides on before reading it: a table key by a
transaction-scoped advisory lock on its (table, key) (so an absent key is locked
too), a run, a schedule or a cursor row ``FOR UPDATE``, due messages and timers
``FOR UPDATE SKIP LOCKED`` (so consumers on many hosts take disjoint work). A locked
read in READ COMMITTED sees the latest committed row, and nobody else can change it
until this transaction ends: a compare-and-set checked under the lock cannot lose an
update. An idempotency id is claimed by an insert ``ON CONFLICT DO NOTHING`` before
anything is applied: a concurrent commit of the same id makes that insert wait, then
find the row, and this transaction applies nothing. SERIALIZABLE would be as correct,
but its predicate locks are per index page, and ids sorted by time all land on the
last page: concurrent commits would abort each other constantly.

``write(fn)`` runs ``fn`` in one transaction and retries it (a fresh transaction, the
same ``fn``) on a serialization failure, a deadlock or a lost idempotency race, with
a short jittered back-off; a caller (and a guest) never sees one. A database that
cannot be reached is ``StorageUnavailable`` (503, retry later).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pgerr
from psycopg_pool import ConnectionPool, PoolTimeout

from host.errors import StorageUnavailable
from host.services.pg.schema import check_schema

T = TypeVar("T")

#: how often one ``write`` is tried before the conflict is reported
WRITE_ATTEMPTS = 64
#: transient conflicts that a fresh attempt of the same transaction resolves
_RETRYABLE = (pgerr.SerializationFailure, pgerr.DeadlockDetected, pgerr.UniqueViolation)


class Contended(Exception):
    """A row this transaction needed was taken by a concurrent commit: try again."""


def redact(url: str) -> str:
    """``url`` without its password (for messages and logs)."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    if "password" in info:
        info["password"] = "***"
    return psycopg.conninfo.make_conninfo("", **info)


class Tx:
    """A transaction's statements. ``writing``: inside ``write`` (reads lock)."""

    __slots__ = ("_conn", "locked", "remembered", "specs", "versions", "writing")

    def __init__(self, conn: psycopg.Connection[Any], writing: bool) -> None:
        self._conn = conn
        self.writing = writing
        #: advisory locks taken, idempotency ids inserted, by this transaction
        self.locked: set[int] = set()
        self.remembered: set[str] = set()
        #: (table, key) → (version, the table's deleted mark) of the keys this
        #: transaction locked: nobody else can change them before it ends
        self.versions: dict[tuple[str, bytes], tuple[int | None, int]] = {}
        #: table → its index definitions, as read with its first key lock
        self.specs: dict[str, dict[str, str]] = {}

    def execute(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> Any:
        return self._conn.execute(sql, params)

    def lock(self, key: int) -> None:
        """Hold the advisory lock ``key`` until this transaction ends."""
        if key not in self.locked:
            self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
            self.locked.add(key)


class _Rows:
    """What a pooled read returns: the rows, already fetched."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def fetchone(self) -> Any:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[Any]:
        return self._rows


class PooledReads:
    """Reads outside a transaction, each on a connection borrowed for one statement:
    what an invocation holds while its guest runs (no connection pinned meanwhile)."""

    __slots__ = ("_store",)
    writing = False

    def __init__(self, store: PgStore) -> None:
        self._store = store

    def execute(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> _Rows:
        with self._store.connection() as conn:
            cur = conn.execute(sql, params)
            rows = cur.fetchall() if cur.description is not None else []
            return _Rows(rows, cur.rowcount)


class View:
    """An invocation's read view (``ReadView``): each read sees the latest commits
    (READ COMMITTED); a conditional write is checked again, under lock, at commit."""

    __slots__ = ("lock", "txn")

    def __init__(self, store: PgStore) -> None:
        self.lock = threading.Lock()
        self.txn: Any = PooledReads(store)

    def open(self) -> Any:
        return self.txn

    def __enter__(self) -> Any:
        self.lock.acquire()
        return self.txn

    def __exit__(self, *exc: object) -> None:
        self.lock.release()

    def close(self) -> None:
        pass


class PgStore:
    """A pool of connections to one database (and schema), and its transactions."""

    def __init__(self, url: str, schema: str = "", max_size: int = 16) -> None:
        self.url = url
        self.schema = schema
        kwargs: dict[str, Any] = {"autocommit": True}
        if schema:
            kwargs["options"] = f"-c search_path={check_schema(schema)}"
        self.conninfo_kwargs = kwargs
        try:  # once alone first: the server's own words when it cannot be used
            psycopg.connect(url, connect_timeout=5, **kwargs).close()
        except psycopg.Error as e:
            raise StorageUnavailable(
                f"cannot connect to PostgreSQL at {redact(url)}: {str(e).strip()}; is it "
                "running, and does the URL name a database this user may use?"
            ) from None
        self.pool = ConnectionPool(
            url, min_size=1, max_size=max_size, kwargs=kwargs, open=False, timeout=10.0
        )
        try:
            self.pool.open(wait=True, timeout=10.0)
        except PoolTimeout as e:
            self.pool.close()
            raise StorageUnavailable(
                f"cannot connect to PostgreSQL at {redact(url)}: is it running, and does "
                "the URL name a database this user may use?"
            ) from e
        self.retries = 0

    def connect(self) -> psycopg.Connection[Any]:
        """A connection of its own (not pooled): a listener, a migration."""
        return psycopg.connect(self.url, **self.conninfo_kwargs)

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        try:
            with self.pool.connection() as conn:
                yield conn
        except (psycopg.OperationalError, PoolTimeout) as e:
            if isinstance(e, _RETRYABLE):  # a deadlock is an OperationalError too
                raise
            raise StorageUnavailable(
                f"PostgreSQL at {redact(self.url)} is unreachable ({e}); retry later"
            ) from e

    @contextmanager
    def read(self) -> Iterator[Tx]:
        """A consistent read-only snapshot (REPEATABLE READ) for the ``with`` block."""
        with self.connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield Tx(conn, writing=False)

    def snapshot(self) -> View:
        return View(self)

    def write(self, fn: Callable[[Tx], T]) -> T:
        """Run ``fn`` in one READ COMMITTED transaction and commit; ``fn`` runs again,
        in a new transaction, after a transient conflict (see the module docstring)."""
        for attempt in range(WRITE_ATTEMPTS):
            try:
                with self.connection() as conn, conn.transaction():
                    return fn(Tx(conn, writing=True))
            except (*_RETRYABLE, Contended):
                self.retries += 1
                time.sleep(random.uniform(0, min(0.05, 0.001 * 2**attempt)))
        raise StorageUnavailable(
            f"a write kept conflicting with others {WRITE_ATTEMPTS} times; retry later"
        )

    def notify(self, channel: str, payload: str = "") -> None:
        """Wake every host listening on ``channel`` (best effort)."""
        try:
            with self.connection() as conn:
                conn.execute("SELECT pg_notify(%s, %s)", (channel, payload))
        except StorageUnavailable:
            pass

    def backup(self, dest: Path) -> None:
        raise StorageUnavailable(
            "nimbus backup copies an LMDB data dir; a PostgreSQL store is backed up with "
            f"pg_dump (e.g. pg_dump -Fc -n {self.schema or 'public'} -f nimbus.dump "
            f"'{redact(self.url)}'), see README 'Running several hosts'"
        )

    def close(self) -> None:
        self.pool.close()
