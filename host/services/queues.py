"""Queues: messages stored so that a consumer can lease, ack, retry and dead-letter them.

A message is a record under ``queue + NUL + id`` (ids sort by enqueue time) and an
entry in a visibility index under ``queue + NUL + visible_ms + id``. Sending writes
both; leasing takes the first index entries whose time has come, moves them forward
by the visibility timeout and counts the attempt; an ack deletes both; a nack makes
the message visible again at a later time with the error; dead-lettering moves it to
another queue. All of it happens in the caller's write transaction, so a consumer can
ack in the same transaction that commits a function's effects.

A lease names its holder (a host incarnation, ``hosts.py``) on the message and in a
third index, ``holder + NUL + queue + NUL + id``, so that ``release`` can give back
everything a dead host held without a scan of the queues.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import msgpack
from msgspec import Struct
from msgspec.structs import replace

from host.common.ids import sortable_id
from host.services.keys import scoped, unscoped
from host.services.storage import Storage

_TIME = struct.Struct(">Q")


class Message(Struct, frozen=True):
    """One queued message; ``body`` is msgpack bytes, passed through untouched."""

    id: str
    queue: str
    body: bytes
    enqueued_ms: int
    visible_ms: int
    attempt: int = 0
    last_error: str | None = None
    #: the host incarnation (``hosts.py``) holding the lease, "" when not leased
    holder: str = ""
    #: the W3C trace context of the invocation that sent it, when that was traced
    traceparent: str | None = None

    def pack(self) -> bytes:
        fields = [self.body, self.enqueued_ms, self.visible_ms, self.attempt, self.last_error]
        if self.holder or self.traceparent:
            fields.append(self.holder)
        if self.traceparent:
            fields.append(self.traceparent)
        packed: bytes = msgpack.packb(fields)
        return packed

    @classmethod
    def unpack(cls, queue: str, id: str, raw: bytes) -> Message:
        body, enqueued, visible, attempt, error, *rest = msgpack.unpackb(raw)
        return cls(id, queue, body, enqueued, visible, attempt, error, *rest)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "queue": self.queue,
            "body": msgpack.unpackb(self.body),
            "enqueued_ms": self.enqueued_ms,
            "visible_ms": self.visible_ms,
            "attempt": self.attempt,
            "last_error": self.last_error,
        }


class QueueStats(Struct, frozen=True):
    """A queue's messages: all (depth), leased or backing off after a failure (in
    flight), sent with a delay not yet over (delayed), and in its dead-letter queue."""

    depth: int
    in_flight: int
    delayed: int
    dead: int = 0
    #: when the oldest message still in the queue was sent (0: empty)
    oldest_ms: int = 0


def new_message(
    queue: str, body: bytes, now_ms: int, delay_ms: int = 0, traceparent: str | None = None
) -> Message:
    return Message(
        sortable_id("msg", now_ms),
        queue,
        body,
        now_ms,
        now_ms + max(delay_ms, 0),
        traceparent=traceparent,
    )


class Queues:
    """Queued messages and their visibility index, in two LMDB databases."""

    def __init__(self, storage: Storage) -> None:
        self.msgs = storage.db(b"q_msgs")
        self.index = storage.db(b"q_visible")
        #: holder + NUL + queue + NUL + id: the leases each host incarnation holds
        self.leases = storage.db(b"q_leases")

    def _ikey(self, m: Message) -> bytes:
        return scoped(m.queue, _TIME.pack(m.visible_ms) + m.id.encode())

    def _lkey(self, m: Message) -> bytes:
        return scoped(m.holder, scoped(m.queue, m.id.encode()))

    def _unlease(self, txn: Any, m: Message) -> None:
        """Drop ``m``'s visibility entry, and its lease entry if it is leased."""
        txn.delete(self._ikey(m), db=self.index)
        if m.holder:
            txn.delete(self._lkey(m), db=self.leases)

    def send(self, txn: Any, m: Message) -> None:
        txn.put(scoped(m.queue, m.id.encode()), m.pack(), db=self.msgs)
        txn.put(self._ikey(m), b"", db=self.index)

    def get(self, txn: Any, queue: str, id: str) -> Message | None:
        raw = txn.get(scoped(queue, id.encode()), db=self.msgs)
        return None if raw is None else Message.unpack(queue, id, raw)

    def has_due(self, txn: Any, queue: str, now_ms: int) -> bool:
        """Whether ``lease`` at ``now_ms`` would find a visible message (a read: an idle
        consumer's poll then takes no write transaction)."""
        cur = txn.cursor(db=self.index)
        if not cur.set_range(scoped(queue)):
            return False
        return bool(cur.key() < scoped(queue, _TIME.pack(now_ms + 1)))

    def lease(
        self, txn: Any, queue: str, limit: int, visibility_ms: int, now_ms: int, holder: str = ""
    ) -> list[Message]:
        """Up to ``limit`` visible messages, hidden for ``visibility_ms``, attempt + 1,
        leased by ``holder`` (a host incarnation; ``release`` gives its leases back)."""
        due: list[str] = []
        cur = txn.cursor(db=self.index)
        stop = scoped(queue, _TIME.pack(now_ms + 1))
        if cur.set_range(scoped(queue)):
            for ikey in cur.iternext(values=False):
                if ikey >= stop or len(due) >= limit:
                    break
                due.append(unscoped(queue, ikey)[8:].decode())
        leased = []
        for id in due:
            m = self.get(txn, queue, id)
            if m is None:
                continue
            self._unlease(txn, m)
            m = replace(m, visible_ms=now_ms + visibility_ms, attempt=m.attempt + 1, holder=holder)
            self.send(txn, m)
            if holder:
                txn.put(self._lkey(m), b"", db=self.leases)
            leased.append(m)
        return leased

    def release(self, txn: Any, holder: str, now_ms: int) -> int:
        """Make every message ``holder`` leased visible at ``now_ms`` (its host died);
        the interrupted attempt stays counted. The number released."""
        prefix = scoped(holder)
        keys: list[bytes] = []
        cur = txn.cursor(db=self.leases)
        if cur.set_range(prefix):
            for key in cur.iternext(values=False):
                if not key.startswith(prefix):
                    break
                keys.append(key)
        released = 0
        for key in keys:
            txn.delete(key, db=self.leases)
            queue, _, id = key[len(prefix) :].partition(b"\x00")
            m = self.get(txn, queue.decode(), id.decode())
            if m is None or m.holder != holder:
                continue
            txn.delete(self._ikey(m), db=self.index)
            self.send(txn, replace(m, visible_ms=min(m.visible_ms, now_ms), holder=""))
            released += 1
        return released

    def holders(self, txn: Any) -> list[str]:
        """Every host incarnation holding a lease."""
        found: list[str] = []
        cur = txn.cursor(db=self.leases)
        ok = cur.first()
        while ok:
            name = cur.key().split(b"\x00", 1)[0]
            found.append(name.decode())
            ok = cur.set_range(name + b"\x01")
        return found

    def ack(self, txn: Any, queue: str, id: str) -> bool:
        m = self.get(txn, queue, id)
        if m is None:
            return False
        self._unlease(txn, m)
        txn.delete(scoped(queue, id.encode()), db=self.msgs)
        return True

    def retry_at(
        self, txn: Any, queue: str, id: str, visible_ms: int, error: str, count: bool = True
    ) -> None:
        """Make a leased message visible again at ``visible_ms``, remembering ``error``;
        with ``count=False`` the lease does not count as an attempt (e.g. overloaded)."""
        m = self.get(txn, queue, id)
        if m is None:
            return
        self._unlease(txn, m)
        attempt = m.attempt if count else max(m.attempt - 1, 0)
        self.send(
            txn, replace(m, visible_ms=visible_ms, last_error=error, attempt=attempt, holder="")
        )

    def move(self, txn: Any, queue: str, id: str, to_queue: str, now_ms: int, error: str) -> None:
        """Move a message to ``to_queue`` (a dead-letter queue), visible now."""
        m = self.get(txn, queue, id)
        if m is None:
            return
        self.ack(txn, queue, id)
        self.send(txn, replace(m, queue=to_queue, visible_ms=now_ms, last_error=error, holder=""))

    def peek(self, txn: Any, queue: str, limit: int) -> list[Message]:
        """The first ``limit`` messages in enqueue order, without leasing them."""
        out: list[Message] = []
        stop = scoped(queue)[:-1] + b"\x01"
        cur = txn.cursor(db=self.msgs)
        if cur.set_range(scoped(queue)):
            for key, raw in cur:
                if key >= stop or len(out) >= limit:
                    break
                out.append(Message.unpack(queue, unscoped(queue, key).decode(), raw))
        return out

    def stats(
        self, txn: Any, queue: str, now_ms: int, dead_letter: str | None = None
    ) -> QueueStats:
        """Counts (a walk over the queue's visibility index: no message is decoded)."""
        depth = in_flight = delayed = 0
        stop = scoped(queue)[:-1] + b"\x01"
        cur = txn.cursor(db=self.index)
        if cur.set_range(scoped(queue)):
            for ikey in cur.iternext(values=False):
                if ikey >= stop:
                    break
                depth += 1
                if _TIME.unpack_from(ikey, len(queue) + 1)[0] > now_ms:
                    delayed += 1
        if delayed:  # which of the invisible ones were leased before: read only those
            delayed = 0
            for m in self._invisible(txn, queue, now_ms):
                if m.attempt:
                    in_flight += 1
                else:
                    delayed += 1
        dead = 0 if dead_letter is None else self.stats(txn, dead_letter, now_ms).depth
        oldest = self._oldest_ms(txn, queue) if depth else 0
        return QueueStats(depth, in_flight, delayed, dead, oldest)

    def _oldest_ms(self, txn: Any, queue: str) -> int:
        """When the queue's first message was sent (ids sort by time sent; a retried
        message keeps its id, so it stays the oldest until it leaves)."""
        cur = txn.cursor(db=self.msgs)
        if not cur.set_range(scoped(queue)) or not cur.key().startswith(scoped(queue)):
            return 0
        return Message.unpack(queue, "", cur.value()).enqueued_ms

    def _invisible(self, txn: Any, queue: str, now_ms: int) -> Iterator[Message]:
        stop = scoped(queue)[:-1] + b"\x01"
        cur = txn.cursor(db=self.index)
        if cur.set_range(scoped(queue, _TIME.pack(now_ms + 1))):
            for ikey in cur.iternext(values=False):
                if ikey >= stop:
                    return
                m = self.get(txn, queue, unscoped(queue, ikey)[8:].decode())
                if m is not None:
                    yield m

    def names(self, txn: Any) -> list[str]:
        """Every queue that holds a message."""
        found: list[str] = []
        cur = txn.cursor(db=self.msgs)
        key = b"" if cur.first() else None
        while key is not None:
            name = cur.key().split(b"\x00", 1)[0]
            found.append(name.decode())
            key = name + b"\x01"
            if not cur.set_range(key):
                break
        return found
