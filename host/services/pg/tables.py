"""Tables on PostgreSQL: the ``TableStore`` of ``kv.py``, one row per key.

Keys are ``bytea`` (ordered bytewise, as in LMDB); versions only grow, deletes
included (``kv_deleted`` keeps each table's highest deleted version). Inside a write
transaction every read of a key first takes an advisory lock on (table, key), so the
version a commit checks cannot change before it commits, even for an absent key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from host.services.pg.indexes import INDEX_DEFS_LOCK, PgIndexes, parse_specs
from host.services.pg.store import Tx

#: rows fetched per round trip of a scan
SCAN_PAGE = 128


def key_lock(kind: str, name: str, key: bytes) -> int:
    """The advisory lock key (a signed 64-bit int) of one record."""
    digest = hashlib.blake2b(b"%s\0%s\0%s" % (kind.encode(), name.encode(), key), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


class PgTables:
    """Key-value tables in ``kv``, and their secondary indexes (``indexes.py``)."""

    def __init__(self) -> None:
        self.index = PgIndexes()

    def _locked(self, txn: Tx, table: str, key: bytes) -> tuple[int | None, int]:
        """Lock ``key`` for the rest of ``txn`` (a write transaction) and read its
        version and the table's deleted mark, in one round trip (then from memory)."""
        found = txn.versions.get((table, key))
        if found is None:
            row = txn.execute(
                "SELECT * FROM nimbus_kv_lock(%s, %s, %s, %s)",
                (table, key, key_lock("kv", table, key), INDEX_DEFS_LOCK),
            ).fetchone()
            found = txn.versions[(table, key)] = (
                None if row[0] is None else int(row[0]),
                0 if row[1] is None else int(row[1]),
            )
            txn.specs[table] = parse_specs(None if row[2] is None else bytes(row[2]))
        return found

    def get(self, txn: Tx, table: str, key: bytes) -> tuple[bytes, int] | None:
        if txn.writing:
            self._locked(txn, table, key)
        row = txn.execute(
            "SELECT value, version FROM kv WHERE tbl = %s AND key = %s", (table, key)
        ).fetchone()
        return None if row is None else (bytes(row[0]), int(row[1]))

    def version(self, txn: Tx, table: str, key: bytes) -> int | None:
        if txn.writing:
            return self._locked(txn, table, key)[0]
        row = txn.execute(
            "SELECT version FROM kv WHERE tbl = %s AND key = %s", (table, key)
        ).fetchone()
        return None if row is None else int(row[0])

    def next_version(self, txn: Tx, table: str, key: bytes) -> int:
        if txn.writing:
            current, deleted = self._locked(txn, table, key)
            return (current if current is not None else deleted) + 1
        row = txn.execute(
            "SELECT coalesce((SELECT version FROM kv WHERE tbl = %s AND key = %s),"
            " (SELECT version FROM kv_deleted WHERE tbl = %s), 0) + 1",
            (table, key, table),
        ).fetchone()
        return int(row[0])

    def items(
        self, txn: Tx, table: str, start: bytes, end: bytes | None
    ) -> Iterator[tuple[bytes, bytes, int]]:
        """``(key, value, version)`` in ``[start, end)``, a page per round trip."""
        op = ">="
        while True:
            if end is None:
                rows = txn.execute(
                    f"SELECT key, value, version FROM kv WHERE tbl = %s AND key {op} %s"
                    " ORDER BY key LIMIT %s",
                    (table, start, SCAN_PAGE),
                ).fetchall()
            else:
                rows = txn.execute(
                    f"SELECT key, value, version FROM kv WHERE tbl = %s AND key {op} %s"
                    " AND key < %s ORDER BY key LIMIT %s",
                    (table, start, end, SCAN_PAGE),
                ).fetchall()
            for key, value, version in rows:
                yield bytes(key), bytes(value), int(version)
            if len(rows) < SCAN_PAGE:
                return
            start, op = bytes(rows[-1][0]), ">"

    def put(self, txn: Tx, table: str, key: bytes, value: bytes, version: int) -> None:
        """Store ``value``, moving the key's index entries (``InvalidArgument`` when
        the value does not fit the table's indexes)."""
        current, deleted = self._locked(txn, table, key)
        specs = txn.specs[table]
        if specs:
            old = self.get(txn, table, key) if current is not None else None
            self.index.replace(txn, table, key, specs, None if old is None else old[0], value)
        txn.versions[(table, key)] = (version, deleted)
        txn.execute(
            "INSERT INTO kv (tbl, key, value, version) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (tbl, key) DO UPDATE SET value = excluded.value,"
            " version = excluded.version",
            (table, key, value, version),
        )

    def delete(self, txn: Tx, table: str, key: bytes) -> bool:
        current, deleted = self._locked(txn, table, key)
        if current is None:
            return False
        row = txn.execute(
            "DELETE FROM kv WHERE tbl = %s AND key = %s RETURNING value", (table, key)
        ).fetchone()
        specs = txn.specs[table]
        if specs and row is not None:
            self.index.replace(txn, table, key, specs, bytes(row[0]), None)
        mark = max(deleted, current)
        for (t, k), (v, _) in list(txn.versions.items()):
            if t == table:  # the table's mark, as every key of it in this transaction sees it
                txn.versions[(t, k)] = (v, mark)
        txn.versions[(table, key)] = (None, mark)
        txn.execute(
            "INSERT INTO kv_deleted (tbl, version) VALUES (%s, %s) ON CONFLICT (tbl)"
            " DO UPDATE SET version = greatest(kv_deleted.version, excluded.version)",
            (table, current),
        )
        return True

    def indexes(self, txn: Tx, table: str) -> dict[str, str]:
        """``table``'s indexes (field → type) as ``txn`` sees them."""
        return self.index.specs(txn, table)

    def index_positions(
        self,
        txn: Tx,
        table: str,
        index: str,
        start: bytes | None,
        end: bytes | None,
        after: tuple[bytes, bytes] | None,
        reverse: bool,
    ) -> Iterator[tuple[bytes, bytes]]:
        return self.index.positions(txn, table, index, start, end, after, reverse)
