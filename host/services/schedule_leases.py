"""Schedules' last fired times: a compare-and-set that makes a firing happen once.

Each schedule's last fired time is stored by name. A process that finds a schedule
due claims the new time with ``claim(name, expected, fired_ms, firing)``: it succeeds
only if the stored time is still ``expected``, and enqueues the firing's message in
the same transaction. Two processes racing for one time are serialised by the store:
the second sees the time already taken and fires nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from msgspec import Struct

from host.services.queues import Queues, new_message
from host.services.storage import Storage


class Firing(Struct, frozen=True):
    """The message a claimed schedule time sends (``body`` is msgpack bytes)."""

    queue: str
    body: bytes


class ScheduleLeases:
    """The last fired time of every schedule, on the LMDB backend."""

    def __init__(self, storage: Storage, queues: Queues) -> None:
        self._storage = storage
        self._queues = queues
        self._db = storage.db(b"schedules")

    def last_fired(self, names: Iterable[str]) -> dict[str, int | None]:
        """Each schedule's last claimed time (None: never seen), from one snapshot."""
        out: dict[str, int | None] = {}
        with self._storage.read() as txn:
            for name in names:
                raw = txn.get(name.encode(), db=self._db)
                out[name] = None if raw is None else int(raw)
        return out

    def claim(
        self, name: str, expected: int | None, fired_ms: int, firing: Firing | None, now_ms: int
    ) -> bool:
        """Set ``name``'s time to ``fired_ms`` if it is still ``expected``, and send
        ``firing`` with it; False (nothing done) when another claim got there first."""
        key, db, queues = name.encode(), self._db, self._queues

        def write(txn: Any) -> bool:
            raw = txn.get(key, db=db)
            if (None if raw is None else int(raw)) != expected:
                return False
            txn.put(key, str(fired_ms).encode(), db=db)
            if firing is not None:
                queues.send(txn, new_message(firing.queue, firing.body, now_ms))
            return True

        return self._storage.write(write)
