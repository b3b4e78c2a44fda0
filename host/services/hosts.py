"""Which host processes are alive on a data dir, so that a dead one's leases come back
at once instead of after their visibility timeout.

Every host process registers an *incarnation* (a fresh id) when it opens the data
dir, with what identifies the process beyond doubt: hostname, boot id, pid, the
process's start time (from ``/proc``) and the identity (device, inode) of the data
file it opened. Leases (queue deliveries, workflow steps) are taken in the name of
the incarnation. An incarnation is alive while its record exists, the machine has
not rebooted, a process with that pid and start time runs (not a zombie), and the
data file is the one this process sees: a record copied into a backup names a
process that, even if still running, serves another data dir. Anything else is dead,
and what it holds may be taken back by any host.

A clean shutdown removes its record; a SIGKILLed process leaves it, and the next
host to look finds it dead. The check reads ``/proc``; elsewhere it falls back to
"the pid exists".
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from pathlib import Path
from typing import Any

import msgpack

from host.common.ids import new_id
from host.errors import ServiceUnavailable
from host.services.storage import Storage

log = logging.getLogger("nimbus.storage")

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def _boot_id() -> str:
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:
        return ""


def process_start(pid: int) -> int | None:
    """The start time of process ``pid`` (clock ticks since boot), 0 where ``/proc`` is
    not there, or None: no such process, or a zombie."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return 0
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # the name may hold spaces and ")"
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


class Hosts:
    """The incarnation records of the host processes on one data dir."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._db = storage.db(b"hosts")
        self._data_file = _file_identity(storage.path / "data.mdb")
        self._here = {"host": socket.gethostname(), "boot": _boot_id()}

    def register(self) -> str:
        """A new incarnation for this process (dead records are dropped on the way);
        "" if the data dir cannot take the write (a full disk): this process's leases
        then come back only after their visibility timeout."""
        incarnation = new_id("host")
        record = {
            **self._here,
            "pid": os.getpid(),
            "start": process_start(os.getpid()),
            "data": self._data_file,
        }

        def write(txn: Any) -> None:
            for key, raw in list(txn.cursor(db=self._db)):
                if not self._alive(msgpack.unpackb(raw)):
                    txn.delete(key, db=self._db)
            txn.put(incarnation.encode(), msgpack.packb(record), db=self._db)

        try:
            self._storage.write(write)
        except ServiceUnavailable as e:
            log.warning("host not registered (%s); its leases will wait out their timeout", e)
            return ""
        return incarnation

    def unregister(self, incarnation: str) -> None:
        """Forget a clean-shutdown incarnation (best effort: a dead record does no harm)."""
        if not incarnation:
            return
        with contextlib.suppress(ServiceUnavailable):
            self._storage.write(lambda txn: txn.delete(incarnation.encode(), db=self._db))

    def live(self, txn: Any) -> set[str]:
        """The incarnations alive now, in ``txn``'s view of the records."""
        return {
            bytes(key).decode()
            for key, raw in txn.cursor(db=self._db)
            if self._alive(msgpack.unpackb(raw))
        }

    def _alive(self, record: dict[str, Any]) -> bool:
        if record.get("host") != self._here["host"] or record.get("boot") != self._here["boot"]:
            return False
        if record.get("data") != self._data_file:
            return False
        start = process_start(int(record["pid"]))
        return start is not None and start == record.get("start")


def _file_identity(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_dev, st.st_ino]
