"""Tables: msgpack values under byte keys, with a version per key for compare-and-set.

A record is ``version (8 bytes, big-endian) + the value's msgpack bytes`` under
``table + NUL + key``; the service never decodes values, they pass through to guests
as they came. Keys order bytewise (shorter first on a shared prefix).

Versions only grow, deletes included: a table remembers the highest version it ever
deleted, and a key written after a delete starts above it. So a compare-and-set that
read version 3 cannot succeed against a key that was deleted and written again since
(the ABA problem), at the cost of one small record per table.

A table may have secondary indexes (``indexes.py``): ``put`` and ``delete`` keep
them in the same transaction, reading the table's definitions in it, so every write
path (an invocation's commit, the admin API) maintains them and none can forget.

Everything here works on a transaction that the caller owns: reads in a snapshot,
writes inside ``Storage.write``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

from host.services.indexes import Indexes
from host.services.keys import scoped, unscoped
from host.services.storage import Storage

_VERSION = struct.Struct(">Q")

#: the largest table value (msgpack bytes), as Spin's 1 MB: a value travels whole into
#: guest memory on every read and a scan page holds many; bulk data belongs in a bucket
#: (objects up to 64 MiB, read by byte range)
MAX_VALUE_BYTES = 1024 * 1024
#: the value bytes one scan or query page carries at most (at least one item): the page
#: stops reading there, so no page loads a thousand large values into the host
MAX_PAGE_BYTES = 4 * 1024 * 1024


class Tables:
    """Key-value tables in one LMDB database (and their deleted-version marks)."""

    def __init__(self, storage: Storage) -> None:
        self.db = storage.db(b"kv")
        self._deleted = storage.db(b"kv_deleted")
        self._prefixes: dict[str, bytes] = {}
        self.index = Indexes(storage)

    def prefix(self, table: str) -> bytes:
        """The bytes every key of ``table`` starts with in LMDB (cached: hot path)."""
        found = self._prefixes.get(table)
        if found is None:
            found = self._prefixes[table] = scoped(table)
        return found

    def get(self, txn: Any, table: str, key: bytes) -> tuple[bytes, int] | None:
        """The value (msgpack bytes) and version under ``key``, or None."""
        raw = txn.get(self.prefix(table) + key, db=self.db)
        if raw is None:
            return None
        return raw[8:], _VERSION.unpack_from(raw)[0]

    def version(self, txn: Any, table: str, key: bytes) -> int | None:
        raw = txn.get(self.prefix(table) + key, db=self.db)
        return None if raw is None else _VERSION.unpack_from(raw)[0]

    def next_version(self, txn: Any, table: str, key: bytes) -> int:
        """The version the next write of ``key`` gets: above its current one, or, for
        an absent key, above every version this table ever deleted."""
        current = self.version(txn, table, key)
        if current is not None:
            return current + 1
        raw = txn.get(table.encode(), db=self._deleted)
        return (0 if raw is None else _VERSION.unpack(raw)[0]) + 1

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
        """Store ``value``, moving the key's index entries (``InvalidArgument`` when
        the value does not fit the table's indexes)."""
        full = self.prefix(table) + key
        specs = self.index.write_specs(txn, table)
        if specs:
            old = txn.get(full, db=self.db)
            self.index.replace(txn, table, key, specs, None if old is None else old[8:], value)
        txn.put(full, _VERSION.pack(version) + value, db=self.db)

    def delete(self, txn: Any, table: str, key: bytes) -> bool:
        full = self.prefix(table) + key
        raw = txn.pop(full, db=self.db)
        if raw is None:
            return False
        specs = self.index.write_specs(txn, table)
        if specs:
            self.index.replace(txn, table, key, specs, raw[8:], None)
        version = _VERSION.unpack_from(raw)[0]
        mark = txn.get(table.encode(), db=self._deleted)
        if mark is None or _VERSION.unpack(mark)[0] < version:
            txn.put(table.encode(), _VERSION.pack(version), db=self._deleted)
        return True

    def indexes(self, txn: Any, table: str) -> dict[str, str]:
        """``table``'s indexes (field → type) as ``txn`` sees them."""
        return self.index.specs(txn, table)

    def index_positions(
        self,
        txn: Any,
        table: str,
        index: str,
        start: bytes | None,
        end: bytes | None,
        after: tuple[bytes, bytes] | None,
        reverse: bool,
    ) -> Iterator[tuple[bytes, bytes]]:
        """``(encoded value, key)`` of one index's entries in ``[start, end)``, in order
        (or reversed), strictly beyond ``after``; see ``Indexes.positions``."""
        return self.index.positions(txn, table, index, start, end, after, reverse)
