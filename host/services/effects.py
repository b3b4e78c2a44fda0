"""One invocation's writes, staged while it runs and committed in one transaction.

Every write a guest makes (table puts and deletes, blob puts and deletes, queue
sends, published events) lands here first, in memory. The invocation's own later
reads see its staged writes over the committed data, scans and listings included.
When the invocation succeeds, ``commit`` applies everything in one short LMDB write
transaction, together with the caller's extra work (a trigger acks the message it
delivered) and the event's idempotency record; when it fails, ``discard`` drops it
all, and nothing is left. No write transaction is open while the guest runs:
staging only reads, through one read snapshot that a map resize may refresh.

Conditional writes (``if_absent``, ``if_version``) are checked when staged, against
what the invocation sees, and again at commit against what is committed then
(optimistic concurrency): if another writer got there first, the commit fails whole
with ``ConditionFailed``. The version a staged put reports is the one the key gets,
unless an unconditional writer of the same key commits in between.

``commit`` returns False, applying nothing but the extra work, when an idempotency id
it is given was committed before (a redelivered event).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

import msgpack

from host.errors import ConditionFailed
from host.services.blobs import BlobInfo, check_size, make_info
from host.services.events import Record, event_record, storage_delete, storage_put
from host.services.indexes import entries
from host.services.interface import Backend, CommitWork
from host.services.keys import successor
from host.services.query import IndexQuery, Item, Position
from host.services.queues import Message, new_message

_ABSENT = object()


def _now_ms() -> int:
    return int(time.time() * 1000)


class Effects:
    """The staging area of one invocation; see the module docstring."""

    def __init__(self, backend: Backend, source: str = "") -> None:
        self._b = backend
        self._tables = backend.tables
        self.source = source
        self._view = backend.storage.snapshot()  # no transaction until the first read
        #: (table, key) -> (value, version) staged, or None for a staged delete
        self._kv: dict[tuple[str, bytes], tuple[bytes, int] | None] = {}
        #: (table, key) -> the committed version a condition was checked against
        self._expect: dict[tuple[str, bytes], int | None] = {}
        #: table -> its indexes as the snapshot sees them (read on the first write)
        self._specs: dict[str, dict[str, str]] = {}
        self._blobs: dict[tuple[str, bytes], tuple[BlobInfo, bytes] | None] = {}
        self._sends: list[Message] = []
        self._storage_records: dict[tuple[str, bytes], Record] = {}
        self._events: list[Record] = []

    def close(self) -> None:
        """Release the read snapshot (commit and discard do it too)."""
        self._view.close()

    def __del__(self) -> None:
        self.close()  # a caller that forgot close() must not pin old pages forever

    def __enter__(self) -> Effects:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def empty(self) -> bool:
        return not (self._kv or self._blobs or self._sends or self._events)

    def counts(self) -> dict[str, int]:
        """How many writes of each kind are staged (what a commit would apply)."""
        return {
            "table_writes": len(self._kv),
            "blob_writes": len(self._blobs),
            "messages_sent": len(self._sends),
            "events_published": len(self._events),
        }

    # --- tables ------------------------------------------------------------------------

    def kv_get(self, table: str, key: bytes) -> tuple[bytes, int] | None:
        """The value (msgpack bytes) and version the invocation sees, or None."""
        if self._kv:
            staged = self._kv.get((table, key), _ABSENT)
            if staged is not _ABSENT:
                return staged  # type: ignore[return-value]
        # ``with self._view`` spelled out: this is the hot path of a guest's reads
        view = self._view
        view.lock.acquire()
        try:
            return self._tables.get(view.txn or view.open(), table, key)
        finally:
            view.lock.release()

    def _check(self, table: str, key: bytes, if_absent: bool, if_version: int | None) -> bool:
        """Raise ``ConditionFailed`` unless the condition holds; whether the key exists."""
        current = self.kv_get(table, key)
        version = None if current is None else current[1]
        if if_absent and current is not None:
            raise ConditionFailed(f"table {table}: key {key!r} exists (if_absent)")
        if if_version is not None and version != if_version:
            raise ConditionFailed(
                f"table {table}: key {key!r} is at version {version}, not {if_version}"
            )
        if (if_absent or if_version is not None) and (table, key) not in self._expect:
            if (table, key) in self._kv:  # ``version`` is the staged one: the committed
                with self._view as txn:
                    self._expect[(table, key)] = self._tables.version(txn, table, key)
            else:  # the version the condition held against, not a second read of it
                # (on PostgreSQL, or after a map growth, a second read may be newer)
                self._expect[(table, key)] = version
        return current is not None

    def kv_put(
        self,
        table: str,
        key: bytes,
        value: bytes,
        if_absent: bool = False,
        if_version: int | None = None,
    ) -> int:
        """Stage ``value`` (msgpack bytes); the version it will have. ``InvalidArgument``
        when the table has indexes and ``value`` lacks or mistypes an indexed field."""
        specs = self.kv_indexes(table)
        if specs:
            entries(specs, table, key, value)
        if if_absent or if_version is not None:
            self._check(table, key, if_absent, if_version)
        with self._view as txn:
            version = self._tables.next_version(txn, table, key)
        self._kv[(table, key)] = (value, version)
        return version

    def kv_delete(self, table: str, key: bytes, if_version: int | None = None) -> bool:
        """Stage a delete; whether the key existed (as the invocation sees it)."""
        existed = self._check(table, key, False, if_version)
        self._kv[(table, key)] = None
        return existed

    def kv_scan(
        self, table: str, start: bytes, end: bytes | None, limit: int, max_bytes: int = 0
    ) -> tuple[list[tuple[bytes, bytes, int]], bytes | None]:
        """Up to ``limit`` ``(key, value, version)`` in ``[start, end)`` in key order,
        and the start key of the next page (None at the end). With ``max_bytes``, the
        page also stops before the item that would take its values past it (it holds
        one item at least), so a page never loads more than that into memory."""
        size = 0
        staged = sorted(
            k for (t, k) in self._kv if t == table and k >= start and (end is None or k < end)
        )
        out: list[tuple[bytes, bytes, int]] = []
        with self._view as txn:
            committed = self._tables.items(txn, table, start, end)
            for key, value, version in _merge(committed, staged):
                if (table, key) in self._kv:
                    staged_item = self._kv[(table, key)]
                    if staged_item is None:
                        continue
                    value, version = staged_item
                size += len(value)
                if len(out) == limit or (max_bytes and out and size > max_bytes):
                    return out, key
                out.append((key, value, version))
        return out, None

    def kv_indexes(self, table: str) -> dict[str, str]:
        """``table``'s indexes (field → type) as the invocation sees them."""
        found = self._specs.get(table)
        if found is None:
            with self._view as txn:
                found = self._specs[table] = self._tables.indexes(txn, table)
        return found

    def kv_query(
        self, query: IndexQuery, after: Position | None, limit: int, max_bytes: int = 0
    ) -> tuple[list[Item], bool]:
        """Up to ``limit`` items of ``query`` beyond ``after``, staged writes included,
        and whether more follow; ``max_bytes`` as for ``kv_scan`` (see ``query.py``)."""
        with self._view as txn:
            return query.page(txn, self._tables, self._kv, after, limit, max_bytes)

    # --- blobs -------------------------------------------------------------------------

    def blob_head(self, bucket: str, key: bytes) -> BlobInfo | None:
        if (bucket, key) in self._blobs:
            staged = self._blobs[(bucket, key)]
            return staged[0] if staged else None
        with self._view as txn:
            return self._b.blobs.head(txn, bucket, key)

    def blob_get(
        self, bucket: str, key: bytes, start: int = 0, end: int | None = None
    ) -> tuple[bytes, BlobInfo] | None:
        """The bytes ``start:end`` of an object (end exclusive, clamped) and its info."""
        if (bucket, key) in self._blobs:
            staged = self._blobs[(bucket, key)]
            if staged is None:
                return None
            info, data = staged
            return data[max(start, 0) : end], info
        with self._view as txn:
            return self._b.blobs.get(txn, bucket, key, start, end)

    def blob_put(
        self,
        bucket: str,
        key: bytes,
        data: bytes,
        content_type: str,
        metadata: dict[str, str],
        traceparent: str | None = None,
    ) -> BlobInfo:
        """Stage an object (``TooLarge`` over the buckets' cap, before anything is kept);
        ``traceparent`` goes with its storage event to the functions it starts."""
        check_size(len(data), self._b.blobs.max_object_bytes)
        info = make_info(key, data, content_type, metadata, _now_ms())
        self._blobs[(bucket, key)] = (info, data)
        self._storage_records.pop((bucket, key), None)  # one record per object: the last
        self._storage_records[(bucket, key)] = storage_put(bucket, info, traceparent)
        return info

    def blob_delete(self, bucket: str, key: bytes, traceparent: str | None = None) -> bool:
        """Stage a delete; whether the object existed (as the invocation sees it)."""
        existed = self.blob_head(bucket, key) is not None
        self._blobs[(bucket, key)] = None
        self._storage_records.pop((bucket, key), None)
        with self._view as txn:
            committed = self._b.blobs.head(txn, bucket, key) is not None
        if committed:  # an object only this invocation had staged leaves no record
            self._storage_records[(bucket, key)] = storage_delete(
                bucket, key, _now_ms(), traceparent
            )
        return existed

    def blob_list(
        self, bucket: str, prefix: bytes, start: bytes, limit: int
    ) -> tuple[list[BlobInfo], bytes | None]:
        """Objects whose key starts with ``prefix``, from ``start`` on; next page's start."""
        end = successor(prefix) if prefix else None
        start = max(start, prefix)
        staged = sorted(
            k for (b, k) in self._blobs if b == bucket and k >= start and (end is None or k < end)
        )
        out: list[BlobInfo] = []
        with self._view as txn:
            committed = ((i.key, i, 0) for i in self._b.blobs.infos(txn, bucket, start))
            for key, found, _ in _merge(committed, staged):
                if end is not None and key >= end:
                    break
                if (bucket, key) in self._blobs:
                    staged_blob = self._blobs[(bucket, key)]
                    if staged_blob is None:
                        continue
                    found = staged_blob[0]
                if len(out) == limit:
                    return out, key
                out.append(found)
        return out, None

    # --- queues and events -------------------------------------------------------------

    def queue_send(
        self, queue: str, body: bytes, delay_ms: int = 0, traceparent: str | None = None
    ) -> str:
        """Stage a message (``body`` is msgpack bytes); its id."""
        message = new_message(queue, body, _now_ms(), delay_ms, traceparent)
        self._sends.append(message)
        return message.id

    def event_publish(self, topic: str, payload: bytes, traceparent: str | None = None) -> str:
        """Stage an event for the bus's outbox (``payload`` is msgpack bytes); its id."""
        record = event_record(topic, payload, self.source, _now_ms(), traceparent)
        self._events.append(record)
        return str(record["id"])

    # --- the end -------------------------------------------------------------------------

    def describe(self) -> list[dict[str, Any]]:
        """What ``commit`` would apply, one entry per write, decoded for a person to
        read (``nimbus invoke`` shows it, and commits only when asked)."""
        out: list[dict[str, Any]] = []
        for (table, key), item in self._kv.items():
            entry: dict[str, Any] = {
                "op": "table.put" if item else "table.delete",
                "table": table,
                "key": key,
            }
            if item is not None:
                entry.update(value=msgpack.unpackb(item[0]), version=item[1])
            out.append(entry)
        for (bucket, key), blob in self._blobs.items():
            entry = {
                "op": "blob.put" if blob else "blob.delete",
                "bucket": bucket,
                "key": key,
            }
            if blob is not None:
                entry.update(size=blob[0].size, content_type=blob[0].content_type)
            out.append(entry)
        for m in self._sends:
            body = msgpack.unpackb(m.body)
            out.append({"op": "queue.send", "queue": m.queue, "id": m.id, "body": body})
        for r in self._events:
            payload = msgpack.unpackb(r["payload"])
            out.append(
                {"op": "event.publish", "topic": r["topic"], "id": r["id"], "payload": payload}
            )
        return out

    def discard(self) -> None:
        """Drop every staged write and release the snapshot."""
        self.close()
        self._kv.clear()
        self._expect.clear()
        self._specs.clear()
        self._blobs.clear()
        self._sends.clear()
        self._storage_records.clear()
        self._events.clear()

    def commit(
        self, extra: CommitWork | None = None, idempotency_id: str | Sequence[str] | None = None
    ) -> bool:
        """Apply everything, with ``extra``'s own work, in one write transaction.

        False when an ``idempotency_id`` (one, or one per message of a batch) had
        already been committed: then only ``extra`` runs, and nothing is applied twice.
        ``ConditionFailed`` when a conditional write no longer holds: nothing applied.
        """
        self.close()
        ids = [idempotency_id] if isinstance(idempotency_id, str) else list(idempotency_id or ())
        if self.empty and extra is None and not ids:
            return True  # a read-only invocation takes no write lock
        b = self._b
        tables = self._tables
        records = [*self._storage_records.values(), *self._events]

        def apply(txn: Any) -> bool:
            if any(b.idempotency.seen(txn, i) for i in ids):
                if extra is not None:
                    extra.apply(b.work(txn))
                return False
            for (table, key), expected in self._expect.items():
                if tables.version(txn, table, key) != expected:
                    raise ConditionFailed(
                        f"table {table}: key {key!r} changed while the invocation ran"
                    )
            for (table, key), item in self._kv.items():
                if item is None:
                    tables.delete(txn, table, key)
                else:
                    tables.put(txn, table, key, item[0], tables.next_version(txn, table, key))
            for (bucket, key), blob in self._blobs.items():
                if blob is None:
                    b.blobs.delete(txn, bucket, key)
                else:
                    b.blobs.put(txn, bucket, blob[0], blob[1])
            for message in self._sends:
                b.queues.send(txn, message)
            for record in records:
                b.outbox.append(txn, record)
            for i in ids:
                b.idempotency.remember(txn, i)
            if extra is not None:
                extra.apply(b.work(txn))
            return True

        wakes = bool(self._sends or records)
        try:
            applied: bool = b.storage.write(apply)
        finally:
            self.discard()
        if wakes and applied:
            b.notify_committed()
        return applied


def _merge(
    committed: Iterator[tuple[bytes, Any, int]], staged: list[bytes]
) -> Iterator[tuple[bytes, Any, int]]:
    """Committed items and staged keys in one key order (a staged-only key comes with
    ``(None, 0)``; the caller substitutes its staged value)."""
    i = 0
    for key, value, version in committed:
        while i < len(staged) and staged[i] < key:
            yield staged[i], None, 0
            i += 1
        if i < len(staged) and staged[i] == key:
            i += 1
        yield key, value, version
    for k in staged[i:]:
        yield k, None, 0
