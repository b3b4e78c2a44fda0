"""A query on one index of a table: its bounds, its paging cursor, and its pages.

``IndexQuery.of`` turns the typed bounds a caller gave (``eq``, or ``start``/``end``)
into the encoded range of ``indexes.encode``; ``page`` reads one page of it from a
snapshot, merged with the writes an invocation has staged, so an invocation's
queries see its own writes as its gets and scans do.

A cursor is the position of the last item a page returned, packed with a tag of the
query it belongs to (table, index, bounds, direction). Handed to another query it is
refused; forged, it can only position the query that names it, inside the table that
query was granted, within the query's own bounds: it never reads anything its holder
could not have queried directly. It needs no secret for that, so it has none.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import msgpack
from msgspec import Struct

from host.common.indexes import INDEX_NAME
from host.errors import InvalidArgument
from host.services.indexes import encode, entries
from host.services.interface import TableStore
from host.services.keys import MAX_KEY_BYTES

#: the bytes of a cursor at most (a position is at most 256 + 480 bytes)
MAX_CURSOR_BYTES = 1024
_CURSOR_VERSION = 1

Position = tuple[bytes, bytes]
#: one item of a page: its position, key, value (msgpack bytes), version
Item = tuple[Position, bytes, bytes, int]


class IndexQuery(Struct, frozen=True):
    """Rows of ``table`` whose ``index`` field lies in ``[start, end)`` (encoded)."""

    table: str
    index: str
    kind: str
    start: bytes | None = None
    end: bytes | None = None
    reverse: bool = False

    @staticmethod
    def of(
        table: str,
        specs: Mapping[str, str],
        index: str,
        eq: object = None,
        start: object = None,
        end: object = None,
        reverse: bool = False,
    ) -> IndexQuery:
        """The query, with its typed bounds checked against the index's type."""
        kind = specs.get(index)
        if kind is None:
            known = ", ".join(f"{n} ({k})" for n, k in specs.items()) or "none"
            if not INDEX_NAME.match(index):
                raise InvalidArgument(
                    f"{index[:64]!r} is not an index name (table {table} has: {known})"
                )
            raise InvalidArgument(
                f"table {table} has no index {index!r} (its indexes: {known}); declare it "
                f"in nimbus.toml: [tables.{table}] indexes = {{ {index} = TYPE }}, TYPE one "
                'of "int", "string", "bytes"'
            )
        if eq is not None:
            if start is not None or end is not None:
                raise InvalidArgument("'eq' cannot be given with 'start' or 'end'")
            low = encode(kind, eq, "'eq'")
            return IndexQuery(table, index, kind, low, low + b"\x00", reverse)
        return IndexQuery(
            table,
            index,
            kind,
            None if start is None else encode(kind, start, "'start'"),
            None if end is None else encode(kind, end, "'end'"),
            reverse,
        )

    def contains(self, pos: Position) -> bool:
        return (self.start is None or pos[0] >= self.start) and (
            self.end is None or pos[0] < self.end
        )

    def _tag(self) -> bytes:
        packed = msgpack.packb([self.table, self.index, self.start, self.end, self.reverse])
        return hashlib.blake2b(packed, digest_size=8).digest()

    def cursor(self, pos: Position) -> bytes:
        """The cursor of the page that ends at ``pos``."""
        packed: bytes = msgpack.packb([_CURSOR_VERSION, self._tag(), pos[0], pos[1]])
        return packed

    def after(self, cursor: bytes) -> Position:
        """The position ``cursor`` holds; ``InvalidArgument`` unless this query made it."""
        wrong = InvalidArgument(
            f"the cursor is not one this query (table {self.table}, index {self.index}, "
            "these bounds and direction) returned; start again without a cursor"
        )
        if len(cursor) > MAX_CURSOR_BYTES:
            raise wrong
        try:
            parts = msgpack.unpackb(cursor, max_array_len=4, max_map_len=0, max_bin_len=1024)
        except (ValueError, TypeError, msgpack.UnpackException):
            raise wrong from None
        if not (
            isinstance(parts, list)
            and len(parts) == 4
            and parts[0] == _CURSOR_VERSION
            and parts[1] == self._tag()
            and all(isinstance(p, bytes) for p in parts[2:])
            and 0 < len(parts[3]) <= MAX_KEY_BYTES
            and self.contains((parts[2], parts[3]))
        ):
            raise wrong
        return parts[2], parts[3]

    def page(
        self,
        txn: Any,
        tables: TableStore,
        staged: Mapping[tuple[str, bytes], tuple[bytes, int] | None],
        after: Position | None,
        limit: int,
        max_bytes: int = 0,
    ) -> tuple[list[Item], bool]:
        """Up to ``limit`` items beyond ``after`` as ``txn`` sees them with ``staged``
        over it (table, key → value and version, or None for a delete), and whether
        more follow. With ``max_bytes``, the page stops before the item that would take
        its values past it (one item at least)."""
        positions = tables.index_positions(
            txn, self.table, self.index, self.start, self.end, after, self.reverse
        )
        out: list[Item] = []
        size = 0
        if not any(t == self.table for t, _ in staged):  # the common case: a plain read
            for pos in positions:
                if len(out) == limit:
                    return out, True
                found = tables.get(txn, self.table, pos[1])
                if found is None:  # an entry always has its row; never crash if not
                    continue
                size += len(found[0])
                if max_bytes and out and size > max_bytes:
                    return out, True
                out.append((pos, pos[1], found[0], found[1]))
            return out, False
        mine = [
            (pos, item)
            for (t, k), item in staged.items()
            if t == self.table and item is not None
            for pos in self._staged_position(k, item[0])
            if self.contains(pos) and self._beyond(pos, after)
        ]
        mine.sort(key=lambda p: p[0], reverse=self.reverse)
        committed = ((pos, None) for pos in positions if (self.table, pos[1]) not in staged)
        for pos, item in _merge(committed, mine, self.reverse):
            if len(out) == limit:
                return out, True
            if item is None:
                found = tables.get(txn, self.table, pos[1])
                if found is None:  # an entry without its row: cannot be, but never crash
                    continue
                item = found
            size += len(item[0])
            if max_bytes and out and size > max_bytes:
                return out, True
            out.append((pos, pos[1], item[0], item[1]))
        return out, False

    def _staged_position(self, key: bytes, value: bytes) -> Iterator[Position]:
        found = entries({self.index: self.kind}, self.table, key, value)
        yield found[self.index], key

    def _beyond(self, pos: Position, after: Position | None) -> bool:
        if after is None:
            return True
        return pos < after if self.reverse else pos > after


def _merge(
    committed: Iterable[tuple[Position, tuple[bytes, int] | None]],
    staged: list[tuple[Position, tuple[bytes, int]]],
    reverse: bool,
) -> Iterator[tuple[Position, tuple[bytes, int] | None]]:
    merged: Iterator[tuple[Position, tuple[bytes, int] | None]] = heapq.merge(
        committed, staged, key=lambda p: p[0], reverse=reverse
    )
    return merged
