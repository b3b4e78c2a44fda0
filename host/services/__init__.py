"""Managed services on one LMDB environment: tables, blobs, queues, the event outbox.

``Services`` is what the platform builds once per process; ``begin()`` starts an
invocation's staged effects. Nothing here knows about wasmtime or HTTP: the guest
imports in ``host/hostcalls`` translate to these calls.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from host.services.blobs import MAX_OBJECT_BYTES, Blobs
from host.services.effects import Effects
from host.services.kv import Tables
from host.services.outbox import Outbox
from host.services.queues import Queues
from host.services.storage import Storage

__all__ = ["Effects", "Services", "Storage"]


class Services:
    """The managed services of one data dir."""

    def __init__(
        self,
        path: Path,
        map_size: int = 64 * 1024 * 1024,
        max_object_bytes: int = MAX_OBJECT_BYTES,
    ) -> None:
        self.storage = Storage(path, map_size)
        self.tables = Tables(self.storage)
        self.blobs = Blobs(self.storage, max_object_bytes)
        self.queues = Queues(self.storage)
        self.outbox = Outbox(self.storage)
        self._idempotency = self.storage.db(b"idempotency")
        #: notified after every commit in this process, so consumers wake at once
        self.committed = threading.Condition()

    def notify_committed(self) -> None:
        with self.committed:
            self.committed.notify_all()

    def wait_for_commit(self, timeout: float) -> None:
        """Block until a commit in this process, or ``timeout`` (commits made by other
        processes are only seen by polling)."""
        with self.committed:
            self.committed.wait(timeout)

    def begin(self, source: str = "") -> Effects:
        """A new staging area for one invocation of function ``source``."""
        return Effects(self, source)

    def seen(self, txn: Any, idempotency_id: str) -> bool:
        return txn.get(idempotency_id.encode(), db=self._idempotency) is not None

    def remember(self, txn: Any, idempotency_id: str) -> None:
        txn.put(
            idempotency_id.encode(), str(int(time.time() * 1000)).encode(), db=self._idempotency
        )

    def backup(self, dest: Path) -> None:
        self.storage.backup(dest)

    def close(self) -> None:
        self.storage.close()
