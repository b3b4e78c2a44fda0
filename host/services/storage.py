"""The one LMDB environment of a data dir, with map growth that no caller ever sees.

LMDB is multi-process and multi-reader: every host process on a data dir opens the
same environment (one ``lmdb.Environment`` per process, ``lock=True``; py-lmdb always
uses ``MDB_NOTLS``, so a read transaction may move between threads). Writes go through
``write(fn)``, which runs ``fn`` in one short write transaction and, when the map is
full, aborts, doubles the map and runs it again; when another process grew the map,
the new size is adopted and the call retried. No caller ever sees ``MapFullError`` or
``MapResizedError``.

Resizing needs no transaction active in this process. Short transactions (``read``,
``write``, ``backup``) pass a gate that a resize closes for its few microseconds. A
``Snapshot`` (the read view an invocation keeps while its guest runs) does not hold
the gate while idle: a resize aborts it, and its next read reopens a fresh view. So a
map growth never waits for guest code, and a guest holding a snapshot never blocks a
writer.

A commit that fails on I/O (the disk is full, or failing) raises ``StorageFull`` or
``StorageUnavailable`` (see ``faults.py``) and applies nothing; the environment stays
usable, so reads go on and writes resume when space comes back.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import lmdb

from host.errors import ServiceUnavailable
from host.services.faults import storage_fault

T = TypeVar("T")

#: named databases an environment may hold (services, registry, triggers, workflows)
MAX_DBS = 64
#: reader slots in the lock file (one per read transaction open at once, any process)
MAX_READERS = 1024
#: the lock file's size for MAX_READERS: LMDB's header, then 64 bytes a reader
_LOCK_HEADER, _READER = 192, 64
#: the map never grows past this (LMDB needs the address space, not the disk)
MAX_MAP_SIZE = 1 << 40


class _Gate:
    """Many transactions at once, or one resize alone."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._active = 0
        self._resizing = False

    def enter(self) -> None:
        with self._cond:
            while self._resizing:
                self._cond.wait()
            self._active += 1

    def leave(self) -> None:
        with self._cond:
            self._active -= 1
            if self._active == 0:
                self._cond.notify_all()

    @contextmanager
    def shared(self) -> Iterator[None]:
        self.enter()
        try:
            yield
        finally:
            self.leave()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            while self._resizing:
                self._cond.wait()
            self._resizing = True
            while self._active:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._resizing = False
                self._cond.notify_all()


class Snapshot:
    """A read transaction kept across many reads, that a map resize may revoke.

    Use it as ``with snapshot as txn: ...`` around each read: short, with no guest
    code and no other ``Storage`` call inside (a resize waits for the block to end).
    Between reads it holds no gate slot; a resize aborts its transaction and the next
    read opens a new one (a newer, still consistent, view).
    """

    __slots__ = ("_storage", "lock", "txn")

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self.lock = threading.Lock()
        self.txn: Any = None

    def __enter__(self) -> Any:
        self.lock.acquire()
        txn = self.txn
        if txn is None:
            try:
                txn = self.open()
            except BaseException:
                self.lock.release()
                raise
        return txn

    def open(self) -> Any:
        """Begin the transaction (the caller holds ``lock``; hot paths that take the
        lock themselves call this when ``txn`` is None)."""
        self.txn = self._storage._begin_snapshot(self)
        return self.txn

    def __exit__(self, *exc: object) -> None:
        self.lock.release()

    def revoke(self) -> None:
        """Abort the transaction (a resize is under way, or the snapshot is closed)."""
        if self.txn is not None:
            self.txn.abort()
            self.txn = None

    def close(self) -> None:
        with self.lock:
            if self.txn is None:  # never opened, or revoked: not listed (no read, most calls)
                return
            self.revoke()
            with self._storage._snapshots_lock:
                self._storage._snapshots.discard(self)


class Storage:
    """An LMDB environment in ``path`` (a directory), shared by threads and processes."""

    def __init__(self, path: Path, map_size: int = 64 * 1024 * 1024) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        _reserve(path / "lock.mdb", MAX_READERS)
        self.env = lmdb.open(
            str(path),
            map_size=map_size,
            max_dbs=MAX_DBS,
            max_readers=MAX_READERS,
            lock=True,
            readahead=False,
            metasync=True,
            sync=True,
        )
        self.env.reader_check()  # free reader slots left by processes that were killed
        self._gate = _Gate()
        self._write_lock = threading.Lock()
        self._snapshots: set[Snapshot] = set()
        self._snapshots_lock = threading.Lock()
        self._dbs: dict[bytes, Any] = {}
        self.resizes = 0

    def close(self) -> None:
        with self._gate.exclusive():
            self._revoke_snapshots()
            self.env.close()

    @property
    def map_size(self) -> int:
        size: int = self.env.info()["map_size"]
        return size

    def space(self) -> tuple[int, int]:
        """``(map size, bytes in use)`` of the environment: how close it is to growing."""
        return env_space(self.env)

    def db(self, name: bytes, dupsort: bool = False) -> Any:
        """The named database ``name``, created on first use (``dupsort``: a key holds
        many values, kept sorted; a database is always opened the same way)."""
        found = self._dbs.get(name)
        if found is None:
            found = self._dbs[name] = self.write(
                lambda txn: self.env.open_db(name, txn=txn, dupsort=dupsort)
            )
        return found

    @contextmanager
    def read(self) -> Iterator[Any]:
        """A read transaction (a consistent snapshot) for the ``with`` block."""
        for _ in range(3):
            with self._gate.shared():
                try:
                    txn = self.env.begin(buffers=False)
                except lmdb.MapResizedError:
                    pass
                else:
                    try:
                        yield txn
                    finally:
                        txn.abort()
                    return
            self._adopt_size()
        raise ServiceUnavailable("the data store kept being resized; retry")

    def snapshot(self) -> Snapshot:
        """A read view for many short reads (one invocation's), opened on first use and
        released by ``close()``; see ``Snapshot``."""
        return Snapshot(self)

    def _begin_snapshot(self, snapshot: Snapshot) -> Any:
        for _ in range(3):
            with self._gate.shared():
                try:
                    txn = self.env.begin(buffers=False)
                except lmdb.MapResizedError:
                    pass
                else:
                    with self._snapshots_lock:
                        self._snapshots.add(snapshot)
                    return txn
            self._adopt_size()
        raise ServiceUnavailable("the data store kept being resized; retry")

    def _revoke_snapshots(self) -> None:
        """Abort every snapshot's idle transaction (the gate is held exclusively, so
        none is between ``__enter__`` and ``__exit__`` for long: wait for those)."""
        with self._snapshots_lock:
            snapshots = list(self._snapshots)
            self._snapshots.clear()
        for snapshot in snapshots:
            with snapshot.lock:
                snapshot.revoke()

    def write(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(txn)`` in one write transaction and commit; retried on map growth.

        An I/O failure of the commit (a full disk above all) is ``StorageFull`` or
        ``StorageUnavailable``: nothing of the transaction is applied."""
        with self._write_lock:  # one writer per process; LMDB serialises processes
            for _ in range(32):
                with self._gate.shared():
                    try:
                        txn = self.env.begin(write=True)
                    except lmdb.MapResizedError:
                        grow = False
                    except lmdb.Error as e:  # MDB_PANIC after a failed meta-page write
                        raise storage_fault(self.path, e) from e
                    else:
                        try:
                            result = fn(txn)
                        except lmdb.MapFullError:
                            txn.abort()
                            grow = True
                        except BaseException:
                            txn.abort()
                            raise
                        else:
                            try:
                                txn.commit()
                            except lmdb.MapFullError:
                                grow = True
                            except lmdb.MapResizedError:
                                grow = False
                            except lmdb.Error as e:
                                raise storage_fault(self.path, e) from e
                            else:
                                return result
                if grow:
                    self._grow()
                else:
                    self._adopt_size()
        raise ServiceUnavailable("the data store could not make room for a write")

    def _grow(self) -> None:
        with self._gate.exclusive():
            size = self.env.info()["map_size"]
            if size >= MAX_MAP_SIZE:
                raise ServiceUnavailable(f"the data store reached its {MAX_MAP_SIZE}-byte cap")
            self._revoke_snapshots()
            self.env.set_mapsize(min(size * 2, MAX_MAP_SIZE))
            self.resizes += 1

    def _adopt_size(self) -> None:
        with self._gate.exclusive():
            self._revoke_snapshots()
            self.env.set_mapsize(0)  # take the size another process set

    def backup(self, dest: Path) -> None:
        """A consistent, compacted copy of the environment into directory ``dest``,
        taken from one read snapshot while writers (threads and processes) go on; a
        map growth in this process waits for the copy to finish."""
        dest.mkdir(parents=True, exist_ok=True)
        if any(dest.iterdir()):
            raise FileExistsError(f"{dest} is not empty; back up into a new directory")
        with self._gate.shared():
            self.env.copy(str(dest), compact=True)


def _reserve(lock_file: Path, readers: int) -> None:
    """Allocate the whole lock file (the reader table) before LMDB maps it: LMDB
    writes it through a memory map, and a page first touched on a full filesystem
    (tmpfs, a sparse file) would kill the process with SIGBUS instead of failing a
    call. Done before ``lmdb.open``: closing a descriptor of the lock file would drop
    the POSIX locks LMDB holds on it, so it must not happen once they are taken."""
    try:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return
    try:
        size = max(os.fstat(fd).st_size, _LOCK_HEADER + (readers - 1) * _READER)
        os.posix_fallocate(fd, 0, size)
    except OSError:
        pass  # a full disk at start: the pages allocated so far are all there is
    finally:
        os.close(fd)


def env_space(env: Any) -> tuple[int, int]:
    """``(map size, bytes in use)`` of an open LMDB environment."""
    info = env.info()
    return int(info["map_size"]), (int(info["last_pgno"]) + 1) * int(env.stat()["psize"])
