"""The one LMDB environment of a data dir, with map growth that no caller ever sees.

LMDB is multi-process and multi-reader: every host process on a data dir opens the
same environment. Writes go through ``write(fn)``, which runs ``fn`` in one short
write transaction and, when the map is full, aborts, doubles the map and runs it
again; when another process grew the map, the new size is adopted and the call
retried. No caller ever sees ``MapFullError`` or ``MapResizedError``.

Resizing needs no transaction open in this process, so reads and writes pass a
gate that a resize closes for its few microseconds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import lmdb

from host.errors import ServiceUnavailable

T = TypeVar("T")

#: named databases an environment may hold (services, registry, triggers, workflows)
MAX_DBS = 64
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
    """An open read transaction and the gate slot it holds."""

    __slots__ = ("_gate", "txn")

    def __init__(self, txn: Any, gate: _Gate) -> None:
        self.txn, self._gate = txn, gate

    def close(self) -> None:
        if self.txn is not None:
            self.txn.abort()
            self.txn = None
            self._gate.leave()


class Storage:
    """An LMDB environment in ``path`` (a directory), shared by threads and processes."""

    def __init__(self, path: Path, map_size: int = 64 * 1024 * 1024) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.env = lmdb.open(
            str(path),
            map_size=map_size,
            max_dbs=MAX_DBS,
            max_readers=1024,
            lock=True,
            readahead=False,
            metasync=True,
            sync=True,
        )
        self.env.reader_check()  # free reader slots left by processes that were killed
        self._gate = _Gate()
        self._write_lock = threading.Lock()
        self._dbs: dict[bytes, Any] = {}
        self.resizes = 0

    def close(self) -> None:
        with self._gate.exclusive():
            self.env.close()

    @property
    def map_size(self) -> int:
        size: int = self.env.info()["map_size"]
        return size

    def db(self, name: bytes) -> Any:
        """The named database ``name``, created on first use."""
        found = self._dbs.get(name)
        if found is None:
            found = self._dbs[name] = self.write(lambda txn: self.env.open_db(name, txn=txn))
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
        """A read transaction held until ``close()``: one consistent view for a whole
        invocation, without the cost of a transaction per read. A map resize waits
        for open snapshots, so hold one only while an invocation runs."""
        for _ in range(3):
            self._gate.enter()
            try:
                return Snapshot(self.env.begin(buffers=False), self._gate)
            except lmdb.MapResizedError:
                self._gate.leave()
            self._adopt_size()
        raise ServiceUnavailable("the data store kept being resized; retry")

    def write(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(txn)`` in one write transaction and commit; retried on map growth."""
        with self._write_lock:  # one writer per process; LMDB serialises processes
            for _ in range(32):
                with self._gate.shared():
                    try:
                        with self.env.begin(write=True) as txn:
                            return fn(txn)
                    except lmdb.MapFullError:
                        grow = True
                    except lmdb.MapResizedError:
                        grow = False
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
            self.env.set_mapsize(min(size * 2, MAX_MAP_SIZE))
            self.resizes += 1

    def _adopt_size(self) -> None:
        with self._gate.exclusive():
            self.env.set_mapsize(0)  # take the size another process set

    def backup(self, dest: Path) -> None:
        """A consistent, compacted copy of the environment into directory ``dest``."""
        dest.mkdir(parents=True, exist_ok=True)
        if any(dest.iterdir()):
            raise FileExistsError(f"{dest} is not empty; back up into a new directory")
        with self._gate.shared():
            self.env.copy(str(dest), compact=True)
