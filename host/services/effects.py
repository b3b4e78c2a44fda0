"""One invocation's writes, staged while it runs and committed in one transaction.

Every write a guest makes (table puts and deletes, blob puts and deletes, queue
sends, published events) lands here first. The invocation's own later reads see its
staged writes over the committed data, scans included. When the invocation succeeds,
``commit`` applies everything in one short LMDB write transaction, together with the
caller's extra work (a trigger acks the message it delivered) and the event's
idempotency record; when it fails, ``discard`` drops it all, and nothing is left.
No write transaction is open while the guest runs: staging only reads.

Conditional writes (``if_absent``, ``if_version``) are checked when staged, against
what the invocation sees, and again at commit against what is committed then
(optimistic concurrency): if another writer got there first, the commit fails whole
with ``ConditionFailed``. A version reported at staging is the one the key will have
unless an unconditional writer commits in between.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from host.errors import ConditionFailed
from host.ids import sortable_id
from host.services.blobs import BlobInfo, check_size, make_info
from host.services.keys import successor
from host.services.queues import Message, new_message
from host.services.storage import Snapshot

if TYPE_CHECKING:
    from host.services import Services

Extra = Callable[[Any], None]


def _now_ms() -> int:
    return int(time.time() * 1000)


class Effects:
    """The staging area of one invocation; see the module docstring."""

    def __init__(self, services: Services, source: str = "") -> None:
        self._s = services
        self.source = source
        self._kv: dict[tuple[str, bytes], bytes | None] = {}
        self._expect: dict[tuple[str, bytes], int | None] = {}
        self._blobs: dict[tuple[str, bytes], tuple[BlobInfo, bytes] | None] = {}
        self._sends: list[Message] = []
        self._outbox: list[dict[str, Any]] = []
        self._snapshot: Snapshot | None = None

    def _txn(self) -> Any:
        """The invocation's read snapshot, opened on first use."""
        if self._snapshot is None:
            self._snapshot = self._s.storage.snapshot()
        return self._snapshot.txn

    def close(self) -> None:
        """Release the read snapshot (commit and discard do it too)."""
        if self._snapshot is not None:
            self._snapshot.close()
            self._snapshot = None

    def __del__(self) -> None:
        self.close()  # a caller that forgot close() must not block map growth forever

    def __enter__(self) -> Effects:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def empty(self) -> bool:
        return not (self._kv or self._blobs or self._sends or self._outbox)

    # --- tables ------------------------------------------------------------------------

    def _committed(self, table: str, key: bytes) -> tuple[bytes, int] | None:
        return self._s.tables.get(self._txn(), table, key)

    def kv_get(self, table: str, key: bytes) -> tuple[bytes, int] | None:
        """The value and version the invocation sees under ``key``, or None."""
        if (table, key) in self._kv:
            value = self._kv[(table, key)]
            if value is None:
                return None
            committed = self._committed(table, key)
            return value, (committed[1] if committed else 0) + 1
        return self._committed(table, key)

    def _check(
        self, table: str, key: bytes, if_absent: bool, if_version: int | None
    ) -> tuple[bytes, int] | None:
        current = self.kv_get(table, key)
        version = current[1] if current else None
        if if_absent and current is not None:
            raise ConditionFailed(f"table {table}: key {key!r} exists (if_absent)")
        if if_version is not None and version != if_version:
            raise ConditionFailed(
                f"table {table}: key {key!r} is at version {version}, not {if_version}"
            )
        if (if_absent or if_version is not None) and (table, key) not in self._expect:
            committed = self._committed(table, key)
            self._expect[(table, key)] = committed[1] if committed else None
        return current

    def kv_put(
        self,
        table: str,
        key: bytes,
        value: bytes,
        if_absent: bool = False,
        if_version: int | None = None,
    ) -> int:
        """Stage ``value`` (msgpack bytes); the version it will have."""
        self._check(table, key, if_absent, if_version)
        self._kv[(table, key)] = value
        committed = self._committed(table, key)
        return (committed[1] if committed else 0) + 1

    def kv_delete(self, table: str, key: bytes, if_version: int | None = None) -> bool:
        """Stage a delete; whether the key existed (as the invocation sees it)."""
        existed = self._check(table, key, False, if_version) is not None
        self._kv[(table, key)] = None
        return existed

    def kv_scan(
        self, table: str, start: bytes, end: bytes | None, limit: int
    ) -> tuple[list[tuple[bytes, bytes, int]], bytes | None]:
        """Up to ``limit`` ``(key, value, version)`` in ``[start, end)`` and the start
        key of the next page (None at the end)."""
        staged = sorted(
            k for (t, k) in self._kv if t == table and k >= start and (end is None or k < end)
        )
        out: list[tuple[bytes, Any, int]] = []
        committed = self._s.tables.items(self._txn(), table, start, end)
        for key, value, version in _merge(committed, staged):
            if len(out) == limit:
                return out, key
            if (table, key) in self._kv:
                staged_value = self._kv[(table, key)]
                if staged_value is None:
                    continue
                value, version = staged_value, (version or 0) + 1
            out.append((key, value, version or 0))
        return out, None

    # --- blobs -------------------------------------------------------------------------

    def blob_head(self, bucket: str, key: bytes) -> BlobInfo | None:
        if (bucket, key) in self._blobs:
            staged = self._blobs[(bucket, key)]
            return staged[0] if staged else None
        return self._s.blobs.head(self._txn(), bucket, key)

    def blob_get(
        self, bucket: str, key: bytes, start: int = 0, end: int | None = None
    ) -> tuple[bytes, BlobInfo] | None:
        if (bucket, key) in self._blobs:
            staged = self._blobs[(bucket, key)]
            if staged is None:
                return None
            info, data = staged
            return data[start:end], info
        return self._s.blobs.get(self._txn(), bucket, key, start, end)

    def blob_put(
        self, bucket: str, key: bytes, data: bytes, content_type: str, metadata: dict[str, str]
    ) -> BlobInfo:
        check_size(len(data), self._s.blobs.max_object_bytes)
        info = make_info(key, data, content_type, metadata, _now_ms())
        self._blobs[(bucket, key)] = (info, data)
        self._outbox.append(
            {
                "kind": "storage",
                "id": sortable_id("evt", info.modified_ms),
                "bucket": bucket,
                "key": key,
                "op": "put",
                "size": info.size,
                "content_type": info.content_type,
                "etag": info.etag,
                "time_ms": info.modified_ms,
            }
        )
        return info

    def blob_delete(self, bucket: str, key: bytes) -> bool:
        existed = self.blob_head(bucket, key) is not None
        self._blobs[(bucket, key)] = None
        if existed:
            now = _now_ms()
            self._outbox.append(
                {
                    "kind": "storage",
                    "id": sortable_id("evt", now),
                    "bucket": bucket,
                    "key": key,
                    "op": "delete",
                    "time_ms": now,
                }
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
        committed = (
            (i.key, i, 0)
            for i in self._s.blobs.infos(self._txn(), bucket, start)
            if end is None or i.key < end
        )
        for key, found, _ in _merge(committed, staged):
            if end is not None and key >= end:
                break
            if len(out) == limit:
                return out, key
            if (bucket, key) in self._blobs:
                staged_blob = self._blobs[(bucket, key)]
                if staged_blob is None:
                    continue
                found = staged_blob[0]
            out.append(found)
        return out, None

    # --- queues and events -------------------------------------------------------------

    def queue_send(self, queue: str, body: bytes, delay_ms: int = 0) -> str:
        message = new_message(queue, body, _now_ms(), delay_ms)
        self._sends.append(message)
        return message.id

    def event_publish(self, topic: str, payload: bytes) -> str:
        now = _now_ms()
        event_id = sortable_id("evt", now)
        self._outbox.append(
            {
                "kind": "event",
                "id": event_id,
                "topic": topic,
                "payload": payload,
                "source": self.source,
                "time_ms": now,
            }
        )
        return event_id

    # --- the end -------------------------------------------------------------------------

    def discard(self) -> None:
        self.close()
        self._kv.clear()
        self._expect.clear()
        self._blobs.clear()
        self._sends.clear()
        self._outbox.clear()

    def commit(
        self, extra: Extra | None = None, idempotency_id: str | Sequence[str] | None = None
    ) -> bool:
        """Apply everything in one transaction; False when an ``idempotency_id`` (one,
        or one per message of a batch) had already been committed: then only ``extra``
        runs, and nothing is applied twice."""
        self.close()
        ids = [idempotency_id] if isinstance(idempotency_id, str) else list(idempotency_id or ())
        if self.empty and extra is None and not ids:
            return True  # a read-only invocation takes no write lock
        s = self._s

        def apply(txn: Any) -> bool:
            if any(s.seen(txn, i) for i in ids):
                if extra is not None:
                    extra(txn)
                return False
            for (table, key), expected in self._expect.items():
                if s.tables.version(txn, table, key) != expected:
                    raise ConditionFailed(
                        f"table {table}: key {key!r} changed while the invocation ran"
                    )
            for (table, key), value in self._kv.items():
                if value is None:
                    s.tables.delete(txn, table, key)
                else:
                    version = (s.tables.version(txn, table, key) or 0) + 1
                    s.tables.put(txn, table, key, value, version)
            for (bucket, key), blob in self._blobs.items():
                if blob is None:
                    s.blobs.delete(txn, bucket, key)
                else:
                    s.blobs.put(txn, bucket, blob[0], blob[1])
            for message in self._sends:
                s.queues.send(txn, message)
            for record in self._outbox:
                s.outbox.append(txn, record)
            for i in ids:
                s.remember(txn, i)
            if extra is not None:
                extra(txn)
            return True

        wakes = bool(self._sends or self._outbox)
        applied: bool = s.storage.write(apply)
        self.discard()
        if wakes:
            s.notify_committed()
        return applied


def _merge(
    committed: Iterator[tuple[bytes, Any, int]], staged: list[bytes]
) -> Iterator[tuple[bytes, Any, int | None]]:
    """Committed items and staged keys in one key order (staged-only keys with no
    committed value come with ``(None, None)``; the caller substitutes its own)."""
    i = 0
    for key, value, version in committed:
        while i < len(staged) and staged[i] < key:
            yield staged[i], None, None
            i += 1
        if i < len(staged) and staged[i] == key:
            i += 1
        yield key, value, version
    for k in staged[i:]:
        yield k, None, None
