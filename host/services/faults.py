"""Storage faults: telling a full disk from another I/O failure, and pacing the loops
that meet one.

LMDB writes a transaction's pages with ``pwrite``; when the disk fills up the write
comes back short and ``mdb_txn_commit`` reports ``EIO``, not ``ENOSPC``. Right after
such a failure the filesystem has (next to) no free space left, since the short write
took what there was, so the free space of the data dir's filesystem tells the two
apart: under ``FULL_BELOW_BYTES`` free it is ``StorageFull`` (507), otherwise
``StorageUnavailable`` (503). Nothing of a failed transaction is applied; reads keep
working; LMDB reuses the pages the next write needs once space is freed.

The loops that write on their own (deliverers, the outbox dispatcher, the scheduler,
the workflow engine) meet these faults without a caller to answer: ``FaultPacer``
makes them wait, longer each time up to a cap, and log one line per episode rather
than a traceback every few milliseconds; a message or step caught by the fault does
not count it as a failed attempt.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from pathlib import Path

import lmdb

from host.errors import ServiceUnavailable, StorageFull, StorageUnavailable

log = logging.getLogger("nimbus.storage")

#: a commit that failed with less than this free on the data dir's filesystem failed
#: for lack of space
FULL_BELOW_BYTES = 1 << 20
#: what a 507/503 answer tells a caller to wait before retrying
RETRY_AFTER_S = 5
_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def free_bytes(path: Path) -> int:
    """Bytes free for an unprivileged writer on the filesystem holding ``path``."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def storage_fault(path: Path, err: BaseException, doing: str = "write") -> StorageUnavailable:
    """The typed error for ``err``, raised by LMDB (or the OS) while writing under ``path``."""
    try:
        free: int | None = free_bytes(path)
    except OSError:
        free = None
    space = isinstance(err, OSError) and err.errno in _SPACE_ERRNOS
    if space or (free is not None and free < FULL_BELOW_BYTES):
        return StorageFull(
            f"the disk holding the data dir {path} is full ({free or 0} bytes free); the "
            f"{doing} was not applied. Free some space: writes resume by themselves, "
            "reads keep working",
            path=str(path),
            retry_after_s=RETRY_AFTER_S,
        )
    if isinstance(err, lmdb.PanicError):
        advice = "restart the host to reopen it"
    else:
        advice = "check the disk (dmesg); retry later"
    return StorageUnavailable(
        f"the data dir {path} could not take a {doing} ({err}); nothing was applied: {advice}",
        path=str(path),
        retry_after_s=RETRY_AFTER_S,
    )


def is_space_error(err: OSError) -> bool:
    return err.errno in _SPACE_ERRNOS


class FaultPacer:
    """How long a background loop waits after storage faults, with one log line per
    episode (its first fault, then at most every ``LOG_EVERY`` faults, and recovery)."""

    LOG_EVERY = 100

    def __init__(self, name: str, initial_s: float = 0.1, max_s: float = 2.0) -> None:
        self.name = name
        self.initial_s = initial_s
        self.max_s = max_s
        self.faults = 0
        self.total = 0
        self._lock = threading.Lock()

    def failed(self, err: ServiceUnavailable) -> float:
        """Note a fault; the seconds to wait before writing again."""
        with self._lock:
            self.faults += 1
            self.total += 1
            n = self.faults
        if n == 1 or n % self.LOG_EVERY == 0:
            log.warning("%s: storage fault, backing off (%d in a row): %s", self.name, n, err)
        return self.delay()

    def delay(self) -> float:
        with self._lock:
            if not self.faults:
                return 0.0
            return float(min(self.max_s, self.initial_s * 2 ** min(self.faults - 1, 16)))

    def ok(self) -> None:
        """A write went through: the episode is over."""
        if not self.faults:
            return
        with self._lock:
            n, self.faults = self.faults, 0
        if n:
            log.warning("%s: storage writable again after %d fault(s)", self.name, n)

    def wait(self, stop: threading.Event, err: ServiceUnavailable) -> None:
        """Note ``err`` and wait out the delay (or until ``stop``)."""
        stop.wait(self.failed(err))
