"""Workflow runs and their timers, behind typed operations (the LMDB backend).

A run is one record (status, input, each step's latest result, the history of every
attempt). What the engine must do next is a timer: ``due time + run id`` → the step
and attempt to run. Starting a step *leases* its timer (moves it to ``now + lease``),
so a host that dies mid-step leaves a timer that fires again when the lease runs out:
nothing is lost, and a step never runs in two places at once. Retries are timers too,
so a waiting run holds no thread.

The orchestrator decides the transitions; this module only stores them. It reads and
writes through a ``RunTable`` bound to one transaction, obtained from
``Runs.transact(fn)`` or, inside an invocation's commit, from the unit of work.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, TypeVar

import msgpack
from msgspec import Struct

from host.services.storage import Storage

T = TypeVar("T")
_TIME = struct.Struct(">Q")


class Timer(Struct, frozen=True):
    """What to run when: ``attempt`` of ``step`` in run ``run_id``."""

    due_ms: int
    run_id: str
    step: str
    attempt: int
    #: set when this timer is the lease of a running attempt: if it fires, that attempt
    #: was interrupted (the host died, or the step outlived its lease)
    leased: bool = False
    #: the host incarnation running the attempt (on a lease; "" if unknown)
    holder: str = ""

    def key(self) -> bytes:
        return _TIME.pack(self.due_ms) + self.run_id.encode()


class RunDbs(Struct, frozen=True):
    """The named databases of the runs (opened once per process)."""

    runs: Any
    timers: Any
    keys: Any


class RunTable:
    """Runs, timers and idempotency keys inside one transaction."""

    __slots__ = ("_dbs", "_txn")

    def __init__(self, dbs: RunDbs, txn: Any) -> None:
        self._dbs = dbs
        self._txn = txn

    def get(self, run_id: str) -> dict[str, Any] | None:
        raw = self._txn.get(run_id.encode(), db=self._dbs.runs)
        return None if raw is None else dict(msgpack.unpackb(raw))

    def put(self, run: dict[str, Any]) -> None:
        self._txn.put(run["id"].encode(), msgpack.packb(run), db=self._dbs.runs)

    def delete(self, run_id: str) -> None:
        self._txn.delete(run_id.encode(), db=self._dbs.runs)

    def all(self) -> list[dict[str, Any]]:
        return [dict(msgpack.unpackb(v)) for _, v in self._txn.cursor(db=self._dbs.runs)]

    def add_timer(self, t: Timer) -> None:
        fields: list[Any] = [t.step, t.attempt, t.leased]
        if t.holder:
            fields.append(t.holder)
        self._txn.put(t.key(), msgpack.packb(fields), db=self._dbs.timers)

    def remove_timer(self, due_ms: int, run_id: str) -> None:
        self._txn.delete(_TIME.pack(due_ms) + run_id.encode(), db=self._dbs.timers)

    def due(self, now_ms: int, limit: int) -> list[Timer]:
        """Up to ``limit`` timers due at ``now_ms``, earliest first."""
        out: list[Timer] = []
        stop = _TIME.pack(now_ms + 1)
        for key, raw in self._txn.cursor(db=self._dbs.timers):
            if key >= stop or len(out) >= limit:
                break
            out.append(_timer(key, raw))
        return out

    def leases(self) -> list[Timer]:
        """The timers that are leases of running attempts."""
        timers = (_timer(key, raw) for key, raw in self._txn.cursor(db=self._dbs.timers))
        return [t for t in timers if t.leased]

    def count_timers(self) -> int:
        count: int = self._txn.stat(self._dbs.timers)["entries"]
        return count

    def key_run(self, workflow: str, key: str) -> str | None:
        """The run an idempotency key of ``workflow`` started, if any."""
        raw = self._txn.get(f"{workflow}\0{key}".encode(), db=self._dbs.keys)
        return None if raw is None else bytes(raw).decode()

    def set_key(self, workflow: str, key: str, run_id: str) -> None:
        self._txn.put(f"{workflow}\0{key}".encode(), run_id.encode(), db=self._dbs.keys)

    def delete_key(self, workflow: str, key: str) -> None:
        self._txn.delete(f"{workflow}\0{key}".encode(), db=self._dbs.keys)


class Runs:
    """The workflow runs of one data dir."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self.dbs = RunDbs(
            runs=storage.db(b"wf_runs"),
            timers=storage.db(b"wf_timers"),
            keys=storage.db(b"wf_keys"),
        )

    def table(self, txn: Any) -> RunTable:
        """The runs inside transaction ``txn`` (for ``reclaim.py``)."""
        return RunTable(self.dbs, txn)

    def transact(self, fn: Callable[[RunTable], T]) -> T:
        """Run ``fn`` on the runs in one write transaction and commit it (``fn`` may
        run more than once: a map growth retries it)."""
        return self._storage.write(lambda txn: fn(RunTable(self.dbs, txn)))

    def get(self, run_id: str) -> dict[str, Any] | None:
        with self._storage.read() as txn:
            return RunTable(self.dbs, txn).get(run_id)

    def all(self) -> list[dict[str, Any]]:
        with self._storage.read() as txn:
            return RunTable(self.dbs, txn).all()

    def count_timers(self) -> int:
        with self._storage.read() as txn:
            return RunTable(self.dbs, txn).count_timers()


def _timer(key: bytes, raw: bytes) -> Timer:
    step, attempt, leased, *holder = msgpack.unpackb(raw)
    return Timer(_TIME.unpack(key[:8])[0], key[8:].decode(), step, attempt, leased, *holder)
