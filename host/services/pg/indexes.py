"""Secondary indexes of tables on PostgreSQL: ``indexes.py``'s entries as rows.

An entry is a row of ``kv_index`` (table, field, encoded value, key), its primary
key in that order, so one index is one range ordered by value then key, bytewise,
as on LMDB (``indexes.encode`` makes the bytes). Definitions are rows of
``kv_index_defs``. Every write transaction that touches a table holds a shared
advisory lock (``INDEX_DEFS_LOCK``, taken by ``nimbus_kv_lock`` before it reads the
definitions); defining indexes takes it exclusively: writers in flight finish first,
and later ones read the new definitions, so a back-fill never misses a row that a
concurrent writer adds without its entries.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import suppress

import msgpack

from host.errors import InvalidArgument
from host.services.indexes import entries
from host.services.pg.store import Tx

#: the advisory lock of the index definitions (writers shared, definers exclusive)
INDEX_DEFS_LOCK = 0x6E696D627573_01
#: entries fetched per round trip of a query
PAGE = 128


def parse_specs(raw: bytes | None) -> dict[str, str]:
    return {} if raw is None else dict(msgpack.unpackb(raw))


class PgIndexes:
    """Index definitions and entries; every method works on the caller's transaction."""

    def specs(self, txn: Tx, table: str) -> dict[str, str]:
        row = txn.execute("SELECT specs FROM kv_index_defs WHERE tbl = %s", (table,)).fetchone()
        return parse_specs(None if row is None else bytes(row[0]))

    def all_specs(self, txn: Tx) -> dict[str, dict[str, str]]:
        if txn.writing:  # a definer: wait for the writers in flight, hold off new ones
            txn.lock(INDEX_DEFS_LOCK)
        rows = txn.execute("SELECT tbl, specs FROM kv_index_defs ORDER BY tbl").fetchall()
        return {t: parse_specs(bytes(s)) for t, s in rows}

    def set_specs(self, txn: Tx, table: str, specs: Mapping[str, str]) -> None:
        if specs:
            txn.execute(
                "INSERT INTO kv_index_defs (tbl, specs) VALUES (%s, %s)"
                " ON CONFLICT (tbl) DO UPDATE SET specs = excluded.specs",
                (table, msgpack.packb(dict(sorted(specs.items())))),
            )
        else:
            txn.execute("DELETE FROM kv_index_defs WHERE tbl = %s", (table,))

    def add(self, txn: Tx, table: str, field: str, enc: bytes, key: bytes) -> None:
        txn.execute(
            "INSERT INTO kv_index (tbl, field, value, key) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            (table, field, enc, key),
        )

    def drop(self, txn: Tx, table: str, field: str) -> int:
        gone: int = txn.execute(
            "DELETE FROM kv_index WHERE tbl = %s AND field = %s", (table, field)
        ).rowcount
        return gone

    def replace(
        self,
        txn: Tx,
        table: str,
        key: bytes,
        specs: Mapping[str, str],
        old: bytes | None,
        new: bytes | None,
    ) -> None:
        """Move ``key``'s entries from its ``old`` value to its ``new`` one."""
        after = entries(specs, table, key, new) if new is not None else {}
        before = {} if old is None else after if old == new else _lenient(specs, table, key, old)
        for field, enc in before.items():
            if after.get(field) != enc:
                txn.execute(
                    "DELETE FROM kv_index WHERE tbl = %s AND field = %s AND value = %s"
                    " AND key = %s",
                    (table, field, enc, key),
                )
        for field, enc in after.items():
            if before.get(field) != enc:
                self.add(txn, table, field, enc, key)

    def positions(
        self,
        txn: Tx,
        table: str,
        field: str,
        start: bytes | None,
        end: bytes | None,
        after: tuple[bytes, bytes] | None,
        reverse: bool,
    ) -> Iterator[tuple[bytes, bytes]]:
        """``(encoded value, key)`` with ``start <= value < end``, in order (or
        reversed), strictly beyond ``after``: a page per round trip."""
        while True:
            where: list[str] = ["tbl = %s", "field = %s"]
            params: list[object] = [table, field]
            if start is not None:
                where.append("value >= %s")
                params.append(start)
            if end is not None:
                where.append("value < %s")
                params.append(end)
            if after is not None:
                where.append("(value, key) < (%s, %s)" if reverse else "(value, key) > (%s, %s)")
                params += [after[0], after[1]]
            order = "DESC" if reverse else "ASC"
            rows = txn.execute(
                f"SELECT value, key FROM kv_index WHERE {' AND '.join(where)}"
                f" ORDER BY value {order}, key {order} LIMIT {PAGE}",
                params,
            ).fetchall()
            for value, key in rows:
                yield bytes(value), bytes(key)
            if len(rows) < PAGE:
                return
            after = (bytes(rows[-1][0]), bytes(rows[-1][1]))


def _lenient(specs: Mapping[str, str], table: str, key: bytes, value: bytes) -> dict[str, bytes]:
    """The entries a stored value has (it was checked when written; a guard only)."""
    try:
        return entries(specs, table, key, value)
    except InvalidArgument:
        out: dict[str, bytes] = {}
        for field, kind in specs.items():
            with suppress(InvalidArgument):
                out.update(entries({field: kind}, table, key, value))
        return out
