"""The outbox's dispatcher cursor: records moved to their queues exactly once.

One ``dispatch`` reads the records after the cursor, sends each to the queues its
router names, advances the cursor and trims what it read, all in one transaction:
a record is fanned out exactly once even with several host processes dispatching on
one data dir. Which queues a record goes to is the caller's business (the triggers).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack

from host.services.outbox import Outbox
from host.services.queues import Queues, new_message
from host.services.storage import Storage

_CURSOR = b"outbox_cursor"

#: the queues a record goes to
Router = Callable[[dict[str, Any]], list[str]]


class OutboxCursor:
    """The dispatcher's position in the outbox, on the LMDB backend."""

    def __init__(self, storage: Storage, outbox: Outbox, queues: Queues) -> None:
        self._storage = storage
        self._outbox = outbox
        self._queues = queues
        self._state = storage.db(b"trigger_state")

    def dispatch(self, route: Router, limit: int, now_ms: int) -> int:
        """Move up to ``limit`` records to the queues ``route`` names; how many."""
        state, outbox, queues = self._state, self._outbox, self._queues

        def write(txn: Any) -> int:
            raw = txn.get(_CURSOR, db=state)
            records = outbox.after(txn, int(raw) if raw else 0, limit)
            for _seq, record in records:
                for target in route(record):
                    queues.send(txn, new_message(target, msgpack.packb(record), now_ms))
            if records:
                last = records[-1][0]
                txn.put(_CURSOR, str(last).encode(), db=state)
                outbox.trim(txn, last)
            return len(records)

        return self._storage.write(write)

    def position(self) -> int:
        """The sequence number of the last record dispatched (0: none yet)."""
        with self._storage.read() as txn:
            raw = txn.get(_CURSOR, db=self._state)
        return int(raw) if raw else 0
