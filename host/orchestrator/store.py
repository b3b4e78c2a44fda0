"""Workflow runs and their timers in LMDB.

A run is one record (status, input, each step's latest result, the history of every
attempt). What the engine must do next is a timer: ``due time + run id`` → the step
and attempt to run. Starting a step *leases* its timer (moves it to ``now + lease``),
so a host that dies mid-step leaves a timer that fires again when the lease runs out:
nothing is lost, and a step never runs in two places at once. Retries are timers too,
so a waiting run holds no thread.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import msgpack

from host.services.storage import Storage

_TIME = struct.Struct(">Q")


@dataclass(frozen=True)
class Timer:
    """What to run when: ``attempt`` of ``step`` in run ``run_id``."""

    due_ms: int
    run_id: str
    step: str
    attempt: int
    #: set when this timer is the lease of a running attempt: if it fires, that attempt
    #: was interrupted (the host died, or the step outlived its lease)
    leased: bool = False

    def key(self) -> bytes:
        return _TIME.pack(self.due_ms) + self.run_id.encode()


class RunStore:
    """Runs, timers and idempotency keys of the workflows of one data dir."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.runs = storage.db(b"wf_runs")
        self.timers = storage.db(b"wf_timers")
        self.keys = storage.db(b"wf_keys")

    def get(self, txn: Any, run_id: str) -> dict[str, Any] | None:
        raw = txn.get(run_id.encode(), db=self.runs)
        return None if raw is None else dict(msgpack.unpackb(raw))

    def put(self, txn: Any, run: dict[str, Any]) -> None:
        txn.put(run["id"].encode(), msgpack.packb(run), db=self.runs)

    def delete(self, txn: Any, run_id: str) -> None:
        txn.delete(run_id.encode(), db=self.runs)

    def all(self, txn: Any) -> list[dict[str, Any]]:
        return [dict(msgpack.unpackb(v)) for _, v in txn.cursor(db=self.runs)]

    def add_timer(self, txn: Any, t: Timer) -> None:
        txn.put(t.key(), msgpack.packb([t.step, t.attempt, t.leased]), db=self.timers)

    def remove_timer(self, txn: Any, due_ms: int, run_id: str) -> None:
        txn.delete(_TIME.pack(due_ms) + run_id.encode(), db=self.timers)

    def due(self, txn: Any, now_ms: int, limit: int) -> list[Timer]:
        out: list[Timer] = []
        stop = _TIME.pack(now_ms + 1)
        for key, raw in txn.cursor(db=self.timers):
            if key >= stop or len(out) >= limit:
                break
            step, attempt, leased = msgpack.unpackb(raw)
            out.append(Timer(_TIME.unpack(key[:8])[0], key[8:].decode(), step, attempt, leased))
        return out

    def count_timers(self, txn: Any) -> int:
        count: int = txn.stat(self.timers)["entries"]
        return count

    def key_run(self, txn: Any, workflow: str, key: str) -> str | None:
        raw = txn.get(f"{workflow}\0{key}".encode(), db=self.keys)
        return None if raw is None else bytes(raw).decode()

    def set_key(self, txn: Any, workflow: str, key: str, run_id: str) -> None:
        txn.put(f"{workflow}\0{key}".encode(), run_id.encode(), db=self.keys)

    def delete_key(self, txn: Any, workflow: str, key: str) -> None:
        txn.delete(f"{workflow}\0{key}".encode(), db=self.keys)
