"""Tables: msgpack values under byte keys, with a version per key for compare-and-set.

A record is ``version (8 bytes, big-endian) + the value's msgpack bytes``; the
service never decodes values, they pass through to guests as they came. Keys order
bytewise (shorter first on a shared prefix). Everything here works on a transaction
that the caller owns: reads in a snapshot, writes inside ``Storage.write``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

from host.services.keys import scoped, unscoped
from host.services.storage import Storage

_VERSION = struct.Struct(">Q")


class Tables:
    """Key-value tables in one LMDB database."""

    def __init__(self, storage: Storage) -> None:
        self.db = storage.db(b"kv")

    def get(self, txn: Any, table: str, key: bytes) -> tuple[bytes, int] | None:
        """The value (msgpack bytes) and version under ``key``, or None."""
        raw = txn.get(scoped(table, key), db=self.db)
        if raw is None:
            return None
        return raw[8:], _VERSION.unpack_from(raw)[0]

    def version(self, txn: Any, table: str, key: bytes) -> int | None:
        raw = txn.get(scoped(table, key), db=self.db)
        return None if raw is None else _VERSION.unpack_from(raw)[0]

    def items(
        self, txn: Any, table: str, start: bytes, end: bytes | None
    ) -> Iterator[tuple[bytes, bytes, int]]:
        """``(key, value, version)`` from ``start`` (inclusive) to ``end`` (exclusive)."""
        first = scoped(table, start)
        stop = scoped(table, end) if end is not None else scoped(table)[:-1] + b"\x01"
        cur = txn.cursor(db=self.db)
        if not cur.set_range(first):
            return
        for full, raw in cur:
            if full >= stop:
                return
            yield unscoped(table, full), raw[8:], _VERSION.unpack_from(raw)[0]

    def put(self, txn: Any, table: str, key: bytes, value: bytes, version: int) -> None:
        txn.put(scoped(table, key), _VERSION.pack(version) + value, db=self.db)

    def delete(self, txn: Any, table: str, key: bytes) -> bool:
        deleted: bool = txn.delete(scoped(table, key), db=self.db)
        return deleted
