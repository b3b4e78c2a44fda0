"""Managed services on one LMDB environment: tables, blobs, queues, the event outbox,
and the stores of the parts above them (queue consumption, the dispatcher's cursor,
schedules, workflow runs, deployments, usage metering).

``Services`` is what the platform builds once per process; ``begin()`` starts an
invocation's staged effects. Nothing here knows about wasmtime or HTTP: the guest
imports in ``host/hostcalls`` translate to these calls. The shapes callers rely on
are the protocols of ``interface.py``; the classes here are their LMDB backend.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from host.services.activity import Activity
from host.services.apikeys import ApiKeys
from host.services.blobs import MAX_OBJECT_BYTES, Blobs
from host.services.console_sessions import ConsoleSessions
from host.services.consumer import Consumer
from host.services.counters import Counters
from host.services.deployments import Deployments
from host.services.dispatch import OutboxCursor
from host.services.effects import Effects
from host.services.hosts import Hosts
from host.services.idempotency import Idempotency
from host.services.indexes import IndexCatalog
from host.services.kv import Tables
from host.services.outbox import Outbox
from host.services.queues import Queues
from host.services.runs import Runs
from host.services.schedule_leases import ScheduleLeases
from host.services.secrets import Secrets
from host.services.storage import Storage
from host.services.usage import Usage
from host.services.work import Work


class Services:
    """The managed services of one data dir (one per process; thread-safe)."""

    def __init__(
        self,
        path: Path,
        map_size: int = 64 * 1024 * 1024,
        max_object_bytes: int = MAX_OBJECT_BYTES,
    ) -> None:
        self.storage = Storage(path, map_size)
        self.tables = Tables(self.storage)
        #: index definitions (a manifest apply sets them, back-filling new ones)
        self.indexes = IndexCatalog(self.storage, self.tables, self.tables.index)
        self.blobs = Blobs(self.storage, max_object_bytes)
        self.queues = Queues(self.storage)
        self.outbox = Outbox(self.storage)
        self.idempotency = Idempotency(self.storage)
        self.consumer = Consumer(self.storage, self.queues)
        self.dispatch = OutboxCursor(self.storage, self.outbox, self.queues)
        self.schedules = ScheduleLeases(self.storage, self.queues)
        self.runs = Runs(self.storage)
        self.deployments = Deployments(self.storage)
        self.hosts = Hosts(self.storage)
        #: the gateway's API keys, and its rate-limit and quota counters (in their own
        #: environment, in a folder of this one, without fsync); every worker shares both
        self.api_keys = ApiKeys(self.storage)
        self.counters = Counters(path / "counters")
        #: the web console's login sessions, seen by every worker
        self.console_sessions = ConsoleSessions(self.storage)
        #: metered usage, in its own environment (a folder of this one, fsynced): its
        #: background flushes never queue behind, or count among, invocations' commits
        self.usage = Usage(Storage(path / "usage", 1 << 20))
        #: per-minute activity per function (the console's overview), shared likewise
        self.activity = Activity(path / "activity")
        #: notified after every commit in this process, so consumers wake at once
        self.committed = threading.Condition()

    def space(self) -> dict[str, tuple[int, int]]:
        """``(map size, bytes in use)`` of each LMDB environment, by name."""
        return {
            "data": self.storage.space(),
            "usage": self.usage.space(),
            "counters": self.counters.space(),
            "activity": self.activity.space(),
        }

    def open_secrets(self, key_path: Path) -> Secrets:
        """The secrets, sealed under the key in ``key_path`` (created on first use)."""
        return Secrets(self.storage, key_path)

    def notify_committed(self) -> None:
        with self.committed:
            self.committed.notify_all()

    def work(self, txn: Any) -> Work:
        """The typed operations of the write transaction ``txn`` (see ``work.py``)."""
        return Work(self.queues, self.runs.dbs, txn)

    def wait_for_commit(self, timeout: float) -> bool:
        """Block until a commit in this process (True), or ``timeout`` (False); commits
        made by other processes are only seen by polling."""
        with self.committed:
            return self.committed.wait(timeout)

    def begin(self, source: str = "") -> Effects:
        """A new staging area for one invocation of function ``source``."""
        return Effects(self, source)

    def backup(self, dest: Path) -> None:
        """A consistent, compacted copy of the data into the new directory ``dest``,
        taken while other threads and processes keep writing: the main environment,
        then the usage rows (``dest/usage``). The rate-limit counters are not copied: a
        restored host starts its buckets full and its quota periods anew."""
        self.storage.backup(dest)
        self.usage.backup(dest / "usage")

    def close(self) -> None:
        self.activity.close()
        self.usage.close()
        self.counters.close()
        self.api_keys.close()
        self.deployments.close()
        self.storage.close()
