"""What a services backend is: the operations the effects and the triggers rely on.

Today every service is implemented on LMDB (``storage.py``, ``kv.py``, ``blobs.py``,
``queues.py``, ``outbox.py``, ``consumer.py``, ``dispatch.py``, ``schedule_leases.py``,
``runs.py``, ``deployments.py``). Callers need only these shapes, so a distributed
backend can be added beside the LMDB one without touching them.

Two levels. The *transactional* protocols (``Store``, ``TableStore``, ``QueueStore``,
…) take a ``txn``, the backend's own transaction: only code inside ``services/`` (the
effects) uses them. Everything outside ``services/`` uses the *typed operations*
(``QueueConsumer``, ``OutboxDispatch``, ``ScheduleStore``, ``RunStore``,
``DeploymentStore``), each one transaction, or a ``UnitOfWork`` handed to a
``CommitWork`` inside an invocation's commit; no transaction handle leaves
``services/`` (a test greps for it).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from host.services.activity import Activity
    from host.services.apikeys import ApiKey
    from host.services.blobs import BlobInfo
    from host.services.console_sessions import ConsoleSessions
    from host.services.counters import Allowance, Bucket, Charge
    from host.services.effects import Effects
    from host.services.queues import Message, QueueStats
    from host.services.runs import Timer
    from host.services.schedule_leases import Firing
    from host.services.secrets import Secrets
    from host.services.usage import UsageEntry, UsageRow

T = TypeVar("T")
Txn = Any


class ReadView(Protocol):
    """A view kept for many short reads: ``with view as txn: ...`` around each.

    Hot paths may spell the ``with`` out: hold ``lock``, use ``txn or open()``.
    """

    lock: threading.Lock
    txn: Txn

    def open(self) -> Txn: ...

    def __enter__(self) -> Txn: ...

    def __exit__(self, *exc: object) -> None: ...

    def close(self) -> None: ...


class Store(Protocol):
    """Transactions: consistent reads, and atomic writes that may be retried."""

    def read(self) -> AbstractContextManager[Txn]: ...

    def snapshot(self) -> ReadView: ...

    def write(self, fn: Callable[[Txn], T]) -> T:
        """Run ``fn`` in one write transaction and commit it; ``fn`` may run more than
        once (only its transactional work must count)."""
        ...

    def backup(self, dest: Path) -> None: ...

    def close(self) -> None: ...


class TableStore(Protocol):
    """Key-value tables: raw msgpack values with a version per key."""

    def get(self, txn: Txn, table: str, key: bytes) -> tuple[bytes, int] | None: ...

    def version(self, txn: Txn, table: str, key: bytes) -> int | None: ...

    def next_version(self, txn: Txn, table: str, key: bytes) -> int: ...

    def items(
        self, txn: Txn, table: str, start: bytes, end: bytes | None
    ) -> Iterator[tuple[bytes, bytes, int]]: ...

    def put(self, txn: Txn, table: str, key: bytes, value: bytes, version: int) -> None:
        """Store the value and move the key's index entries in ``txn``, reading the
        table's index definitions in ``txn`` (``InvalidArgument`` when the value is not
        a msgpack map holding every indexed field with its type; see indexes.py)."""
        ...

    def delete(self, txn: Txn, table: str, key: bytes) -> bool:
        """Remove the key and its index entries; whether it existed."""
        ...

    def indexes(self, txn: Txn, table: str) -> dict[str, str]:
        """The table's indexes as ``txn`` sees them: field → "int" | "string" | "bytes"."""
        ...

    def index_positions(
        self,
        txn: Txn,
        table: str,
        index: str,
        start: bytes | None,
        end: bytes | None,
        after: tuple[bytes, bytes] | None,
        reverse: bool,
    ) -> Iterator[tuple[bytes, bytes]]:
        """``(encoded value, key)`` of the index's entries with ``start <= value < end``
        (``indexes.encode``; None: open), ordered by value then key, bytewise (or the
        reverse), strictly after the position ``after``."""
        ...


class BlobStore(Protocol):
    """Buckets of objects with content type, metadata and byte-range reads."""

    max_object_bytes: int

    def head(self, txn: Txn, bucket: str, key: bytes) -> BlobInfo | None: ...

    def get(
        self, txn: Txn, bucket: str, key: bytes, start: int = 0, end: int | None = None
    ) -> tuple[bytes, BlobInfo] | None: ...

    def put(self, txn: Txn, bucket: str, info: BlobInfo, data: bytes) -> None: ...

    def delete(self, txn: Txn, bucket: str, key: bytes) -> bool: ...

    def infos(self, txn: Txn, bucket: str, start: bytes) -> Iterator[BlobInfo]: ...


class QueueStore(Protocol):
    """Messages, and the primitives a consumer needs: lease, ack, retry, dead-letter."""

    def send(self, txn: Txn, m: Message) -> None: ...

    def get(self, txn: Txn, queue: str, id: str) -> Message | None: ...

    def has_due(self, txn: Txn, queue: str, now_ms: int) -> bool:
        """Whether ``lease`` at ``now_ms`` would find a visible message (a read)."""
        ...

    def lease(
        self, txn: Txn, queue: str, limit: int, visibility_ms: int, now_ms: int, holder: str = ""
    ) -> list[Message]: ...

    def release(self, txn: Txn, holder: str, now_ms: int) -> int: ...

    def holders(self, txn: Txn) -> list[str]: ...

    def ack(self, txn: Txn, queue: str, id: str) -> bool: ...

    def retry_at(
        self, txn: Txn, queue: str, id: str, visible_ms: int, error: str, count: bool = True
    ) -> None: ...

    def move(
        self, txn: Txn, queue: str, id: str, to_queue: str, now_ms: int, error: str
    ) -> None: ...

    def peek(self, txn: Txn, queue: str, limit: int) -> list[Message]: ...

    def stats(
        self, txn: Txn, queue: str, now_ms: int, dead_letter: str | None = None
    ) -> QueueStats: ...

    def names(self, txn: Txn) -> list[str]: ...


class EventLog(Protocol):
    """The transactional outbox: records in commit order, read by sequence number."""

    def append(self, txn: Txn, record: dict[str, Any]) -> int: ...

    def after(self, txn: Txn, seq: int, limit: int) -> list[tuple[int, dict[str, Any]]]: ...

    def trim(self, txn: Txn, upto: int) -> int: ...


class IdempotencyLog(Protocol):
    """The ids of events whose effects were committed."""

    def seen(self, txn: Txn, idempotency_id: str) -> bool: ...

    def remember(self, txn: Txn, idempotency_id: str) -> None: ...


class Backend(Protocol):
    """Everything ``Effects`` stages against and commits to."""

    @property
    def storage(self) -> Store: ...

    @property
    def tables(self) -> TableStore: ...

    @property
    def blobs(self) -> BlobStore: ...

    @property
    def queues(self) -> QueueStore: ...

    @property
    def outbox(self) -> EventLog: ...

    @property
    def idempotency(self) -> IdempotencyLog: ...

    def notify_committed(self) -> None:
        """Called after a commit that sent messages or appended records."""
        ...

    def work(self, txn: Txn) -> UnitOfWork:
        """The typed operations of the write transaction ``txn`` (for ``CommitWork``)."""
        ...


# --- typed operations: what callers outside services/ use ----------------------------


class QueueWork(Protocol):
    """Queue operations inside a unit of work: they commit with it."""

    def ack(self, queue: str, ids: Sequence[str]) -> None: ...

    def send(self, queue: str, body: bytes, now_ms: int, delay_ms: int = 0) -> str: ...


class RunWork(Protocol):
    """Workflow runs, their timers and idempotency keys, inside a unit of work."""

    def get(self, run_id: str) -> dict[str, Any] | None: ...

    def put(self, run: dict[str, Any]) -> None: ...

    def delete(self, run_id: str) -> None: ...

    def all(self) -> list[dict[str, Any]]: ...

    def add_timer(self, t: Timer) -> None: ...

    def remove_timer(self, due_ms: int, run_id: str) -> None: ...

    def due(self, now_ms: int, limit: int) -> list[Timer]: ...

    def count_timers(self) -> int: ...

    def leases(self) -> list[Timer]:
        """The timers that are leases of running attempts."""
        ...

    def key_run(self, workflow: str, key: str) -> str | None: ...

    def set_key(self, workflow: str, key: str, run_id: str) -> None: ...

    def delete_key(self, workflow: str, key: str) -> None: ...


class UnitOfWork(Protocol):
    """The typed operations of one write transaction."""

    @property
    def queues(self) -> QueueWork: ...

    @property
    def runs(self) -> RunWork: ...


class CommitWork(Protocol):
    """A caller's own changes, committed in the same transaction as the effects of
    the invocation (acks, a workflow step's transition). Raising aborts the commit."""

    def apply(self, work: UnitOfWork) -> None: ...


class QueueConsumer(Protocol):
    """Consuming queues: each operation is one transaction."""

    def lease(
        self, queue: str, limit: int, visibility_ms: int, now_ms: int, holder: str = ""
    ) -> list[Message]: ...

    def ack(self, queue: str, ids: Sequence[str]) -> None: ...

    def retry(
        self, queue: str, visible_at: Mapping[str, int], error: str, count: bool = True
    ) -> None: ...

    def dead_letter(
        self, queue: str, ids: Sequence[str], to_queue: str, now_ms: int, error: str
    ) -> None: ...

    def get(self, queue: str, id: str) -> Message | None: ...

    def peek(self, queue: str, limit: int) -> list[Message]: ...

    def stats(self, queue: str, now_ms: int, dead_letter: str | None = None) -> QueueStats: ...

    def all_stats(self, now_ms: int) -> dict[str, QueueStats]: ...

    def replay(
        self, from_queue: str, to_queue: str, now_ms: int, message_id: str | None = None
    ) -> int: ...


class OutboxDispatch(Protocol):
    """The outbox dispatcher's cursor: each record fanned out exactly once."""

    def dispatch(
        self, route: Callable[[dict[str, Any]], list[str]], limit: int, now_ms: int
    ) -> int: ...

    def position(self) -> int: ...


class ScheduleStore(Protocol):
    """Schedules' last fired times, claimed by compare-and-set."""

    def last_fired(self, names: Iterable[str]) -> dict[str, int | None]: ...

    def claim(
        self, name: str, expected: int | None, fired_ms: int, firing: Firing | None, now_ms: int
    ) -> bool: ...


class RunStore(Protocol):
    """Workflow runs: reads, and read-modify-write transactions over ``RunWork``."""

    def transact(self, fn: Callable[[RunWork], T]) -> T: ...

    def table(self, txn: Txn) -> RunWork:
        """The runs inside the backend's transaction ``txn`` (services/ only)."""
        ...

    def get(self, run_id: str) -> dict[str, Any] | None: ...

    def all(self) -> list[dict[str, Any]]: ...

    def count_timers(self) -> int: ...


class DeploymentStore(Protocol):
    """Deployment records, routes and app config, with a generation counter."""

    def generation(self) -> int:
        """Changes whenever anything here changes, by any host; read on every request,
        so an implementation answers it without a round trip while nothing changed."""
        ...

    def function(self, name: str) -> tuple[int, dict[str, Any] | None]: ...

    def functions(self) -> list[dict[str, Any]]: ...

    def put_function(
        self, name: str, sha256: str, config: dict[str, Any], now_ms: int
    ) -> dict[str, Any]: ...

    def delete_function(self, name: str) -> bool: ...

    def set_routes(self, routes: list[dict[str, Any]]) -> None: ...

    def routes(self) -> list[dict[str, Any]]: ...

    def set_app_config(self, name: str, config: dict[str, Any]) -> None: ...

    def app_config(self, name: str) -> dict[str, Any]: ...

    def put_module(self, sha256: str, wasm: bytes) -> None:
        """Keep a module's bytes where every host can fetch them (a shared store;
        a no-op where the data dir's module folder is shared already)."""
        ...

    def module(self, sha256: str) -> bytes | None:
        """A module's bytes kept by ``put_module`` (None: not kept there)."""
        ...


class TableIndexes(Protocol):
    """Index definitions: what a manifest apply sets (one transaction)."""

    def defined(self) -> dict[str, dict[str, str]]:
        """Every table's indexes, table → field → type."""
        ...

    def define(self, wanted: Mapping[str, Mapping[str, str]]) -> dict[str, int]:
        """Make the definitions exactly ``wanted``: drop the indexes not wanted, build
        the new ones over the rows already there, in one transaction (concurrent writers
        in other processes see no index or a complete one). Per changed table, the
        entries built. ``InvalidArgument`` naming the rows that lack or mistype a field:
        nothing changes."""
        ...


class UsageStore(Protocol):
    """Metering: one entry per invocation in, usage per function per period out."""

    def record(self, entry: UsageEntry) -> None:
        """Count one invocation (cheap: durable at the next ``flush``)."""
        ...

    def flush(self) -> int:
        """Make what was recorded durable; the number of aggregate rows written."""
        ...

    def query(
        self, function: str | None = None, since_ms: int = 0, by: str = "hour"
    ) -> list[UsageRow]: ...

    def close(self) -> None: ...


class ApiKeyStore(Protocol):
    """The gateway's API keys (``apikeys.py`` on LMDB, ``pg/apikeys.py``): only a hash
    of a key's secret is stored; ``generation()`` is read on every request, so it is
    cheap, and changes within a second of a create or revoke through any host."""

    def create(
        self,
        name: str,
        expires_in_s: float | None = None,
        policies: tuple[str, ...] = (),
        routes: tuple[str, ...] = (),
    ) -> tuple[ApiKey, str]: ...

    def list(self) -> list[ApiKey]: ...

    def revoke(self, key_id: str) -> ApiKey: ...

    def lookup(self, token: str) -> ApiKey | None: ...

    def generation(self) -> int: ...

    def close(self) -> None: ...


class RateCounters(Protocol):
    """Rate-limit buckets and quota counts (``counters.py``, ``pg/counters.py``): one
    ``charge`` is atomic against every process and host sharing the store."""

    def charge(
        self, bucket: Bucket | None, allowances: Sequence[Allowance], now: float
    ) -> Charge: ...

    def usage(self, key: bytes) -> int: ...

    def space(self) -> tuple[int, int]: ...

    def close(self) -> None: ...


class HostRegistry(Protocol):
    """Which host incarnations are alive (their leases are theirs to keep)."""

    def register(self) -> str: ...

    def unregister(self, incarnation: str) -> None: ...

    def live(self, txn: Txn) -> set[str]: ...


class ServiceSet(Protocol):
    """Everything a platform gets from one backend (``Services`` on LMDB,
    ``pg.services.PgServices`` on PostgreSQL); ``factory.open_services`` picks one."""

    @property
    def storage(self) -> Store: ...

    @property
    def tables(self) -> TableStore: ...

    @property
    def blobs(self) -> BlobStore: ...

    @property
    def queues(self) -> QueueStore: ...

    @property
    def consumer(self) -> QueueConsumer: ...

    @property
    def dispatch(self) -> OutboxDispatch: ...

    @property
    def schedules(self) -> ScheduleStore: ...

    @property
    def runs(self) -> RunStore: ...

    @property
    def deployments(self) -> DeploymentStore: ...

    @property
    def hosts(self) -> HostRegistry: ...

    @property
    def usage(self) -> UsageStore: ...

    @property
    def indexes(self) -> TableIndexes: ...

    @property
    def activity(self) -> Activity:
        """Per-minute figures of this host's invocations (a local LMDB environment)."""
        ...

    @property
    def api_keys(self) -> ApiKeyStore: ...

    @property
    def counters(self) -> RateCounters: ...

    @property
    def console_sessions(self) -> ConsoleSessions: ...

    def open_secrets(self, key_path: Path) -> Secrets:
        """The secrets, sealed under the key in ``key_path`` (never stored with them)."""
        ...

    def notify_committed(self) -> None: ...

    def wait_for_commit(self, timeout: float) -> bool: ...

    def begin(self, source: str = "") -> Effects: ...

    def backup(self, dest: Path) -> None: ...

    def close(self) -> None: ...
