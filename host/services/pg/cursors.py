"""The outbox dispatcher's cursor and the schedules' last fired times, on PostgreSQL
(``OutboxDispatch``, ``ScheduleStore``).

Both are compare-and-set decisions shared by every host, so each locks its row
``FOR UPDATE`` before reading it: dispatchers on several hosts take turns on the
cursor (each record fanned out once), and of two hosts claiming one schedule time
the second finds the time taken and fires nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import msgpack

from host.services.pg.outbox import PgOutbox
from host.services.pg.queues import PgQueues
from host.services.pg.store import PgStore, Tx
from host.services.queues import new_message
from host.services.schedule_leases import Firing

Router = Callable[[dict[str, Any]], list[str]]


class PgOutboxCursor:
    """The dispatcher's position, the ``outbox_cursor`` counter row."""

    def __init__(self, store: PgStore, outbox: PgOutbox, queues: PgQueues) -> None:
        self._store = store
        self._outbox = outbox
        self._queues = queues

    def dispatch(self, route: Router, limit: int, now_ms: int) -> int:
        outbox, queues = self._outbox, self._queues

        def write(txn: Tx) -> int:
            row = txn.execute(
                "SELECT value FROM counters WHERE name = 'outbox_cursor' FOR UPDATE"
            ).fetchone()
            records = outbox.after(txn, int(row[0]), limit)
            for _seq, record in records:
                for target in route(record):
                    queues.send(txn, new_message(target, msgpack.packb(record), now_ms))
            if records:
                last = records[-1][0]
                txn.execute("UPDATE counters SET value = %s WHERE name = 'outbox_cursor'", (last,))
                outbox.trim(txn, last)
            return len(records)

        return self._store.write(write)

    def position(self) -> int:
        with self._store.read() as txn:
            row = txn.execute("SELECT value FROM counters WHERE name = 'outbox_cursor'").fetchone()
        return int(row[0])


class PgScheduleLeases:
    """Each schedule's last claimed time, a row of ``schedules``."""

    def __init__(self, store: PgStore, queues: PgQueues) -> None:
        self._store = store
        self._queues = queues

    def last_fired(self, names: Iterable[str]) -> dict[str, int | None]:
        wanted = list(names)
        with self._store.read() as txn:
            rows = txn.execute(
                "SELECT name, fired_ms FROM schedules WHERE name = ANY(%s)", (wanted,)
            ).fetchall()
        found = {name: fired for name, fired in rows}
        return {name: found.get(name) for name in wanted}

    def claim(
        self, name: str, expected: int | None, fired_ms: int, firing: Firing | None, now_ms: int
    ) -> bool:
        queues = self._queues

        def write(txn: Tx) -> bool:
            txn.execute(
                "INSERT INTO schedules (name, fired_ms) VALUES (%s, NULL) ON CONFLICT DO NOTHING",
                (name,),
            )
            row = txn.execute(
                "SELECT fired_ms FROM schedules WHERE name = %s FOR UPDATE", (name,)
            ).fetchone()
            if row[0] != expected:
                return False
            txn.execute("UPDATE schedules SET fired_ms = %s WHERE name = %s", (fired_ms, name))
            if firing is not None:
                queues.send(txn, new_message(firing.queue, firing.body, now_ms))
            return True

        return self._store.write(write)
