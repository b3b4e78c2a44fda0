"""What a services backend is: the operations the effects and the triggers rely on.

Today every service is implemented on LMDB (``storage.py``, ``kv.py``, ``blobs.py``,
``queues.py``, ``outbox.py``). Callers (``Effects``, the triggers, the admin API) need
only these shapes, so a distributed backend can be added beside the LMDB one without
touching them. A ``txn`` is the backend's own transaction, opaque to callers: they get
one from ``Store.read()``/``Store.snapshot()`` or inside ``Store.write(fn)``, and every
write made with one ``txn`` commits or vanishes together.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from host.services.blobs import BlobInfo
    from host.services.queues import Message, QueueStats

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

    def put(self, txn: Txn, table: str, key: bytes, value: bytes, version: int) -> None: ...

    def delete(self, txn: Txn, table: str, key: bytes) -> bool: ...


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

    def lease(
        self, txn: Txn, queue: str, limit: int, visibility_ms: int, now_ms: int
    ) -> list[Message]: ...

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
