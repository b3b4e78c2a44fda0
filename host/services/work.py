"""A unit of work: typed operations that commit together with an invocation's effects.

A caller that needs its own changes in the same transaction as a function's effects
(a trigger acks the messages it delivered; the orchestrator records a step's result
and schedules the next one) hands ``Effects.commit`` a ``CommitWork``; inside the
commit it gets a ``Work`` whose operations write in that transaction. The caller
never holds the transaction itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from host.services.interface import QueueStore, UnitOfWork
from host.services.queues import Queues, new_message
from host.services.runs import RunDbs, RunTable


class QueueOps:
    """Queue operations inside one transaction."""

    __slots__ = ("_queues", "_txn")

    def __init__(self, queues: QueueStore, txn: Any) -> None:
        self._queues = queues
        self._txn = txn

    def ack(self, queue: str, ids: Sequence[str]) -> None:
        """Delete the messages ``ids`` of ``queue`` (handled)."""
        for id in ids:
            self._queues.ack(self._txn, queue, id)

    def send(self, queue: str, body: bytes, now_ms: int, delay_ms: int = 0) -> str:
        """Enqueue ``body`` (msgpack bytes) on ``queue``; the message id."""
        m = new_message(queue, body, now_ms, delay_ms)
        self._queues.send(self._txn, m)
        return m.id


class Work:
    """The typed operations of one write transaction (LMDB backend)."""

    __slots__ = ("queues", "runs")

    def __init__(self, queues: Queues, runs: RunDbs, txn: Any) -> None:
        self.queues = QueueOps(queues, txn)
        self.runs = RunTable(runs, txn)


class Ack:
    """Commit work that acks delivered messages with the effects of their handling."""

    __slots__ = ("ids", "queue")

    def __init__(self, queue: str, ids: Sequence[str]) -> None:
        self.queue = queue
        self.ids = tuple(ids)

    def apply(self, work: UnitOfWork) -> None:
        work.queues.ack(self.queue, self.ids)
