"""The outbox: events published and storage changes made, in commit order.

Records are appended in the same transaction as the effects that produced them
(a transactional outbox), under an increasing sequence number, so whatever fans
them out later (the triggers) sees each exactly once and in order.
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack

from host.services.storage import Storage

_SEQ = struct.Struct(">Q")


class Outbox:
    """An append-only log of ``{kind, id, time_ms, …}`` records."""

    def __init__(self, storage: Storage) -> None:
        self.db = storage.db(b"outbox")
        self._meta = storage.db(b"outbox_meta")

    def append(self, txn: Any, record: dict[str, Any]) -> int:
        # the last sequence number lives apart from the records: trimming every record
        # must not make numbers start over below a reader's cursor
        raw = txn.get(b"last", db=self._meta)
        seq = (int(raw) if raw else 0) + 1
        txn.put(b"last", str(seq).encode(), db=self._meta)
        txn.put(_SEQ.pack(seq), msgpack.packb(record), db=self.db)
        return seq

    def after(self, txn: Any, seq: int, limit: int) -> list[tuple[int, dict[str, Any]]]:
        """Up to ``limit`` records with a sequence number above ``seq``."""
        out: list[tuple[int, dict[str, Any]]] = []
        cur = txn.cursor(db=self.db)
        if not cur.set_range(_SEQ.pack(seq + 1)):
            return out
        for key, raw in cur:
            if len(out) >= limit:
                break
            out.append((_SEQ.unpack(key)[0], msgpack.unpackb(raw)))
        return out

    def trim(self, txn: Any, upto: int) -> int:
        """Delete records up to and including ``upto`` (once every reader has them)."""
        removed = 0
        cur = txn.cursor(db=self.db)
        while cur.first() and _SEQ.unpack(cur.key())[0] <= upto:
            cur.delete()
            removed += 1
        return removed
