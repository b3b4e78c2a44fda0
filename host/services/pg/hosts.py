"""Which hosts are alive on one database: a heartbeat per host incarnation.

On LMDB a dead process is recognised by its pid (``hosts.py``); hosts sharing a
PostgreSQL database run on different machines, so here an incarnation is alive
while it keeps its ``heartbeat_ms`` fresh (a thread beats every ``BEAT_S``). One
that has not beaten for ``HOST_TTL_MS`` is dead: any host takes its queue and step
leases back (``reclaim.py``), and removes its record. A clean shutdown removes it
at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time

import msgpack

from host.common.ids import new_id
from host.errors import ServiceUnavailable
from host.services.pg.store import PgStore, Tx

log = logging.getLogger("nimbus.storage")

#: how often a host renews its heartbeat, and after how long without one it is dead
BEAT_S = 0.5
HOST_TTL_MS = 3_000


def _now_ms() -> int:
    return int(time.time() * 1000)


class PgHosts:
    """Host incarnations in ``hosts``, kept alive by a heartbeat thread."""

    def __init__(self, store: PgStore) -> None:
        self._store = store
        self._stop = threading.Event()
        self._beating: threading.Thread | None = None

    def register(self) -> str:
        incarnation = new_id("host")
        info = msgpack.packb({"host": socket.gethostname(), "pid": os.getpid()})

        def write(txn: Tx) -> None:
            txn.execute("DELETE FROM hosts WHERE heartbeat_ms < %s", (_now_ms() - HOST_TTL_MS,))
            txn.execute(
                "INSERT INTO hosts (incarnation, info, heartbeat_ms) VALUES (%s, %s, %s)",
                (incarnation, info, _now_ms()),
            )

        try:
            self._store.write(write)
        except ServiceUnavailable as e:
            log.warning("host not registered (%s); its leases will wait out their timeout", e)
            return ""
        self._beating = threading.Thread(
            target=self._beat, args=(incarnation,), name="nimbus-heartbeat", daemon=True
        )
        self._beating.start()
        return incarnation

    def _beat(self, incarnation: str) -> None:
        beats = 0
        while not self._stop.wait(BEAT_S):
            beats += 1
            try:
                with self._store.connection() as conn:
                    if beats % 100 == 0:  # forget long-dead hosts (their leases are
                        # taken back whether or not their record is still here)
                        conn.execute(
                            "DELETE FROM hosts WHERE heartbeat_ms < %s",
                            (_now_ms() - 20 * HOST_TTL_MS,),
                        )
                    conn.execute(
                        "INSERT INTO hosts (incarnation, info, heartbeat_ms) VALUES (%s, %s, %s)"
                        " ON CONFLICT (incarnation)"
                        " DO UPDATE SET heartbeat_ms = excluded.heartbeat_ms",
                        (incarnation, msgpack.packb({}), _now_ms()),
                    )
            except Exception:  # the database is away: beat again when it is back
                log.warning("host heartbeat failed", exc_info=True)

    def unregister(self, incarnation: str) -> None:
        self._stop.set()
        if self._beating is not None:
            self._beating.join(timeout=2)
        if not incarnation:
            return
        with contextlib.suppress(ServiceUnavailable):
            self._store.write(
                lambda txn: txn.execute("DELETE FROM hosts WHERE incarnation = %s", (incarnation,))
            )

    def live(self, txn: Tx) -> set[str]:
        """The incarnations whose heartbeat is fresh, in ``txn``'s view."""
        rows = txn.execute(
            "SELECT incarnation FROM hosts WHERE heartbeat_ms >= %s", (_now_ms() - HOST_TTL_MS,)
        ).fetchall()
        return {r[0] for r in rows}
