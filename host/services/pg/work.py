"""The unit of work of a PostgreSQL write transaction (``UnitOfWork``), as ``work.py``."""

from __future__ import annotations

from host.services.pg.queues import PgQueues
from host.services.pg.runs import PgRunTable
from host.services.pg.store import Tx
from host.services.work import QueueOps


class PgWork:
    """The typed operations of one write transaction (PostgreSQL backend)."""

    __slots__ = ("queues", "runs")

    def __init__(self, queues: PgQueues, txn: Tx) -> None:
        self.queues = QueueOps(queues, txn)
        self.runs = PgRunTable(txn)
