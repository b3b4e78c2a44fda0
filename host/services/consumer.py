"""Consuming queues: lease, ack, retry, dead-letter, peek and replay, one call each.

The triggers and the admin API consume queues through these typed operations; each
runs in its own short transaction, so no transaction handle leaves ``services/``. An
ack that must commit together with a function's effects goes through the unit of
work of that commit instead (``work.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from host.services.interface import QueueStore, Store
from host.services.queues import Message, QueueStats, new_message


class Consumer:
    """Queue consumption over any backend's ``Store`` and ``QueueStore``."""

    def __init__(self, storage: Store, queues: QueueStore) -> None:
        self._storage = storage
        self._queues = queues

    def lease(
        self, queue: str, limit: int, visibility_ms: int, now_ms: int, holder: str = ""
    ) -> list[Message]:
        """Up to ``limit`` visible messages, hidden for ``visibility_ms``, attempt + 1,
        leased by ``holder`` (a host incarnation, ``hosts.py``)."""
        q = self._queues
        # an idle queue is polled often: a read says so without the write lock (shared
        # by every process on the data dir) or a commit
        with self._storage.read() as txn:
            if not q.has_due(txn, queue, now_ms):
                return []
        return self._storage.write(
            lambda txn: q.lease(txn, queue, limit, visibility_ms, now_ms, holder)
        )

    def ack(self, queue: str, ids: Sequence[str]) -> None:
        """Delete the messages ``ids`` (handled)."""
        q = self._queues

        def write(txn: Any) -> None:
            for id in ids:
                q.ack(txn, queue, id)

        self._storage.write(write)

    def retry(
        self, queue: str, visible_at: Mapping[str, int], error: str, count: bool = True
    ) -> None:
        """Make each leased message ``id`` visible again at ``visible_at[id]`` with
        ``error``; with ``count=False`` the lease does not count as an attempt."""
        q = self._queues

        def write(txn: Any) -> None:
            for id, visible_ms in visible_at.items():
                q.retry_at(txn, queue, id, visible_ms, error, count)

        self._storage.write(write)

    def dead_letter(
        self, queue: str, ids: Sequence[str], to_queue: str, now_ms: int, error: str
    ) -> None:
        """Move the messages ``ids`` to ``to_queue``, visible now, with ``error``."""
        q = self._queues

        def write(txn: Any) -> None:
            for id in ids:
                q.move(txn, queue, id, to_queue, now_ms, error)

        self._storage.write(write)

    def get(self, queue: str, id: str) -> Message | None:
        with self._storage.read() as txn:
            return self._queues.get(txn, queue, id)

    def peek(self, queue: str, limit: int) -> list[Message]:
        """The first ``limit`` messages in enqueue order, without leasing them."""
        with self._storage.read() as txn:
            return self._queues.peek(txn, queue, limit)

    def stats(self, queue: str, now_ms: int, dead_letter: str | None = None) -> QueueStats:
        with self._storage.read() as txn:
            return self._queues.stats(txn, queue, now_ms, dead_letter)

    def all_stats(self, now_ms: int) -> dict[str, QueueStats]:
        """The counts of every queue that holds a message, from one snapshot."""
        q = self._queues
        with self._storage.read() as txn:
            return {name: q.stats(txn, name, now_ms) for name in q.names(txn)}

    def replay(
        self, from_queue: str, to_queue: str, now_ms: int, message_id: str | None = None
    ) -> int:
        """Send every message of ``from_queue`` (a dead-letter queue), or only
        ``message_id``, back to ``to_queue`` as a new message (attempts reset); how
        many moved (0 when ``message_id`` is not there)."""
        q = self._queues

        def write(txn: Any) -> int:
            if message_id is None:
                messages = q.peek(txn, from_queue, 1 << 62)
            else:
                found = q.get(txn, from_queue, message_id)
                messages = [] if found is None else [found]
            for m in messages:
                q.ack(txn, from_queue, m.id)
                q.send(txn, new_message(to_queue, m.body, now_ms))
            return len(messages)

        return self._storage.write(write)
