"""Secondary indexes of tables: definitions, entries kept in the write's transaction.

An index orders a table's rows by one top-level field of their values (msgpack maps).
Its entries live in one LMDB database opened with sorted duplicates:

    table NUL field NUL encoded-value  ->  key, key, …   (each key a duplicate)

so one index's entries form one contiguous range ordered by value, then key, both
bytewise. ``encode`` makes bytewise order the value's order: a signed 64-bit int as
8 big-endian bytes with the sign bit flipped, a string as its UTF-8 bytes (code-point
order), bytes as they are. The value is the whole rest of the LMDB key, so it needs no
escaping; its length is capped (``MAX_INDEXED_BYTES``) to fit LMDB's 511-byte key.

Definitions (table → {field: type}) live in their own database and are read inside
every write transaction that touches the table (``Tables.put``/``delete``; once per
table and transaction), never from a cache that outlives it: a worker that has not yet
heard of a new index still maintains it, because the definition and its back-fill
commit together (``IndexCatalog``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import suppress
from typing import TYPE_CHECKING, Any, Protocol

import msgpack

from host.common.indexes import MAX_INDEXED_BYTES, MAX_INDEXES, index_problem
from host.errors import InvalidArgument
from host.services.keys import SEP, check_name, scoped
from host.services.storage import Storage

if TYPE_CHECKING:
    from host.services.interface import Store, TableStore

_INT_MIN, _INT_MAX = -(1 << 63), (1 << 63) - 1
_BIAS = 1 << 63
#: keys named in a refused back-fill's message
_SHOWN = 5


def encode(kind: str, value: object, what: object) -> bytes:
    """``value`` as the bytes an index of type ``kind`` orders by; ``InvalidArgument``
    (naming ``what``) when it is not of that type or is too long."""
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidArgument(f"{what} must be an integer (index type int), got {_type(value)}")
        if not _INT_MIN <= value <= _INT_MAX:
            raise InvalidArgument(f"{what} is outside the signed 64-bit range: {value}")
        return (value + _BIAS).to_bytes(8, "big")
    if kind == "string":
        if not isinstance(value, str):
            raise InvalidArgument(
                f"{what} must be a string (index type string), got {_type(value)}"
            )
        raw = value.encode()
    elif isinstance(value, bytes):
        raw = value
    else:
        raise InvalidArgument(f"{what} must be bytes (index type bytes), got {_type(value)}")
    if len(raw) > MAX_INDEXED_BYTES:
        raise InvalidArgument(f"{what} is {len(raw)} bytes; an indexed value is at most 256")
    return raw


def entries(specs: Mapping[str, str], table: str, key: bytes, value: bytes) -> dict[str, bytes]:
    """The encoded value of every index of ``specs`` in the msgpack ``value`` of ``key``;
    ``InvalidArgument`` when the value is not a map, lacks a field or mistypes it."""
    where = _Where(table, key)
    if not value or _held(value[0]) != "a map":
        raise InvalidArgument(
            f"{where} must be a msgpack map: the table has indexes ({_list(specs)})"
        )
    found: dict[str, bytes] = {}
    try:
        if len(value) <= _SMALL:  # decoded whole: one C call beats walking it
            pairs = msgpack.unpackb(
                value, raw=False, strict_map_key=False, object_pairs_hook=_Pairs
            )
            for name, field in pairs:
                if isinstance(name, str) and name in specs:
                    _add(found, specs, where, name, _type(field), field)
        else:
            _walk(found, specs, where, value)
    except (ValueError, IndexError, msgpack.UnpackException):
        raise InvalidArgument(f"{where} is not valid msgpack") from None
    missing = [n for n in specs if n not in found]
    if missing:
        raise InvalidArgument(
            f"{where} lacks the indexed field {missing[0]!r} ({specs[missing[0]]}); "
            f"every value of this table needs: {_list(specs)}"
        )
    return found


class _Where:
    """Where a value is, for a message: formatted only when one is raised."""

    __slots__ = ("field", "key", "table")

    def __init__(self, table: str, key: bytes, field: str = "") -> None:
        self.table, self.key, self.field = table, key, field

    def __str__(self) -> str:
        at = f"table {self.table}: the value of key {self.key!r}"
        return f"{at}: field {self.field!r}" if self.field else at


#: values up to this many bytes are decoded whole, larger ones walked field by field
_SMALL = 4096


class _Pairs(list[tuple[Any, Any]]):
    """A msgpack map decoded as its pairs (a key may repeat: that must be seen)."""


def _walk(found: dict[str, bytes], specs: Mapping[str, str], where: _Where, value: bytes) -> None:
    """``entries`` for a large value: only the indexed fields are decoded, each after
    its first byte says it has the right type (a mistyped large field never is)."""
    u = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=len(value))
    u.feed(value)
    for _ in range(u.read_map_header()):
        if _held(value[u.tell()]) != "a string":  # only str keys name fields:
            u.skip()  # any other key, and its value, is passed over undecoded
            u.skip()
            continue
        name = u.unpack()
        if name not in specs:
            u.skip()
            continue
        held = _held(value[u.tell()])
        _add(found, specs, where, name, held, u.unpack() if held == _WANTED[specs[name]] else None)


def _add(
    found: dict[str, bytes],
    specs: Mapping[str, str],
    where: _Where,
    name: str,
    held: str,
    field: Any,
) -> None:
    """Encode one indexed field that holds ``held`` (as ``_type`` names it)."""
    if name in found:
        raise InvalidArgument(f"{where} holds the indexed field {name!r} twice")
    kind = specs[name]
    what = _Where(where.table, where.key, name)
    if held != _WANTED[kind]:
        raise InvalidArgument(f"{what} must be {_WANTED[kind]} (index type {kind}), got {held}")
    found[name] = encode(kind, field, what)


_WANTED = {"int": "an integer", "string": "a string", "bytes": "bytes"}


def _held(first: int) -> str:
    """What a msgpack value holds, from its first byte (the names ``_type`` uses)."""
    if first <= 0x7F or first >= 0xE0 or 0xCC <= first <= 0xD3:
        return "an integer"
    if 0xA0 <= first <= 0xBF or 0xD9 <= first <= 0xDB:
        return "a string"
    if 0xC4 <= first <= 0xC6:
        return "bytes"
    if 0x80 <= first <= 0x8F or first in (0xDE, 0xDF):
        return "a map"
    if 0x90 <= first <= 0x9F or first in (0xDC, 0xDD):
        return "an array"
    return _OTHER_BYTES.get(first, "an extension type")


_OTHER_BYTES = {0xC0: "nil", 0xC2: "a boolean", 0xC3: "a boolean", 0xCA: "a float", 0xCB: "a float"}


_TYPES: dict[type, str] = {bool: "a boolean", int: "an integer", float: "a float"}
_TYPES.update({str: "a string", bytes: "bytes", type(None): "nil", dict: "a map"})
_TYPES.update({list: "an array", _Pairs: "a map", msgpack.ExtType: "an extension type"})


def _type(value: object) -> str:
    return _TYPES.get(type(value)) or type(value).__name__


def _list(specs: Mapping[str, str]) -> str:
    return ", ".join(f"{n} ({k})" for n, k in specs.items()) or "none"


class Indexes:
    """Index definitions and entries in LMDB; every method works on the caller's txn."""

    def __init__(self, storage: Storage) -> None:
        self._defs = storage.db(b"kv_index_defs")
        self.db = storage.db(b"kv_index", dupsort=True)
        self._parsed: dict[bytes, dict[str, str]] = {}
        #: the definitions one write transaction has read: ``(txn, {table: specs})``.
        #: Keyed by the transaction object itself, held here so no later transaction
        #: can be allocated at its address; ``set_specs`` forgets it. (Write
        #: transactions of a process run one at a time: ``Storage.write``.)
        self._writing: tuple[Any, dict[str, dict[str, str]]] = (None, {})

    def specs(self, txn: Any, table: str) -> dict[str, str]:
        """``table``'s indexes as committed in ``txn`` (field → type; ``{}``: none)."""
        raw = txn.get(table.encode(), db=self._defs)
        if raw is None:
            return {}
        found = self._parsed.get(raw)
        if found is None:
            found = dict(msgpack.unpackb(raw))
            if len(self._parsed) < 1024:
                self._parsed[raw] = found
        return found

    def write_specs(self, txn: Any, table: str) -> dict[str, str]:
        """``specs`` for the write transaction ``txn``, read once per table in it (a
        commit of many puts to one table pays for one lookup)."""
        held, tables = self._writing
        if held is not txn:
            tables = {}
            self._writing = (txn, tables)
        found = tables.get(table)
        if found is None:
            found = tables[table] = self.specs(txn, table)
        return found

    def all_specs(self, txn: Any) -> dict[str, dict[str, str]]:
        cur = txn.cursor(db=self._defs)
        return {bytes(k).decode(): dict(msgpack.unpackb(v)) for k, v in cur}

    def set_specs(self, txn: Any, table: str, specs: Mapping[str, str]) -> None:
        self._writing = (None, {})
        if specs:
            txn.put(table.encode(), msgpack.packb(dict(sorted(specs.items()))), db=self._defs)
        else:
            txn.delete(table.encode(), db=self._defs)

    def base(self, table: str, field: str) -> bytes:
        return scoped(table) + field.encode() + SEP

    def replace(
        self,
        txn: Any,
        table: str,
        key: bytes,
        specs: Mapping[str, str],
        old: bytes | None,
        new: bytes | None,
    ) -> None:
        """Move ``key``'s entries from its ``old`` value to its ``new`` one (either may
        be None: an insert, a delete); ``InvalidArgument`` when ``new`` does not fit."""
        after = entries(specs, table, key, new) if new is not None else {}
        if old is None:
            before: dict[str, bytes] = {}
        else:
            before = after if old == new else self._lenient(specs, table, key, old)
        for field, enc in before.items():
            if after.get(field) != enc:
                txn.delete(self.base(table, field) + enc, key, db=self.db)
        for field, enc in after.items():
            if before.get(field) != enc:
                txn.put(self.base(table, field) + enc, key, db=self.db)

    def _lenient(
        self, specs: Mapping[str, str], table: str, key: bytes, value: bytes
    ) -> dict[str, bytes]:
        """The entries a stored value has (every stored value was checked when written
        or back-filled; this only guards against a value that somehow was not)."""
        try:
            return entries(specs, table, key, value)
        except InvalidArgument:
            out = {}
            for field, kind in specs.items():
                with suppress(InvalidArgument):
                    out.update(entries({field: kind}, table, key, value))
            return out

    def positions(
        self,
        txn: Any,
        table: str,
        field: str,
        start: bytes | None,
        end: bytes | None,
        after: tuple[bytes, bytes] | None,
        reverse: bool,
    ) -> Iterator[tuple[bytes, bytes]]:
        """``(encoded value, key)`` of the entries with ``start <= value < end``, in
        order (or reverse order), strictly beyond the position ``after``."""
        base = self.base(table, field)
        n = len(base)
        high = base + end if end is not None else base[:-1] + b"\x01"  # past this index
        low = base + (start or b"")
        cur = txn.cursor(db=self.db)
        if not reverse:
            if after is not None:
                ok = _seek(cur, base + after[0], after[1])
                if ok and cur.key() == base + after[0] and cur.value() == after[1]:
                    ok = cur.next()
            else:
                ok = _seek(cur, low, None)
            if not ok:
                return
            for full, key in cur.iternext():
                if full >= high:
                    return
                yield full[n:], key
            return
        ok = _seek(cur, high, None) if after is None else _seek(cur, base + after[0], after[1])
        if not (cur.prev() if ok else cur.last()):
            return
        for full, key in cur.iterprev():
            if full < low:
                return
            yield full[n:], key

    def add(self, txn: Any, table: str, field: str, enc: bytes, key: bytes) -> None:
        """One entry of a back-fill."""
        txn.put(self.base(table, field) + enc, key, db=self.db)

    def drop(self, txn: Any, table: str, field: str) -> int:
        """Delete every entry of one index; how many there were."""
        base = self.base(table, field)
        cur = txn.cursor(db=self.db)
        n = 0
        if cur.set_range(base):
            while cur.key().startswith(base) and cur.delete():  # delete moves to the next
                n += 1
        return n


def _seek(cur: Any, full: bytes, key: bytes | None) -> bool:
    """Position ``cur`` on the first entry at or after ``(full, key)``."""
    if key is not None:
        if cur.set_range_dup(full, key):
            return True
        if cur.set_key(full):
            return bool(cur.next_nodup())
    return bool(cur.set_range(full))


def check_specs(table: str, specs: Mapping[str, str]) -> None:
    """The services' own check of a definition (the manifest checked it too)."""
    if len(specs) > MAX_INDEXES:
        raise InvalidArgument(f"table {table}: at most {MAX_INDEXES} indexes, got {len(specs)}")
    for name, kind in specs.items():
        problem = index_problem(name, kind)
        if problem:
            raise InvalidArgument(f"table {table}: {problem}")


class IndexOps(Protocol):
    """What defining indexes needs of a backend's index entries (``Indexes`` on LMDB,
    ``pg.indexes.PgIndexes``), each on the caller's write transaction."""

    def all_specs(self, txn: Any) -> dict[str, dict[str, str]]: ...

    def set_specs(self, txn: Any, table: str, specs: Mapping[str, str]) -> None: ...

    def add(self, txn: Any, table: str, field: str, enc: bytes, key: bytes) -> None: ...

    def drop(self, txn: Any, table: str, field: str) -> int: ...


class IndexCatalog:
    """Defining indexes: the typed operation a manifest apply uses (one transaction)."""

    def __init__(self, storage: Store, tables: TableStore, indexes: IndexOps) -> None:
        self._storage = storage
        self._tables = tables
        self._indexes = indexes

    def defined(self) -> dict[str, dict[str, str]]:
        """Every table's indexes, as committed."""
        with self._storage.read() as txn:
            return self._indexes.all_specs(txn)

    def define(self, wanted: Mapping[str, Mapping[str, str]]) -> dict[str, int]:
        """Make the definitions exactly ``wanted`` (table → field → type): drop the
        indexes no longer wanted, back-fill the new ones from the rows already there,
        all in one write transaction. Per table, the entries built. ``InvalidArgument``
        naming up to 5 rows that lack or mistype a field: then nothing changes."""
        for table, specs in wanted.items():
            check_name("table", table)
            check_specs(table, specs)

        def apply(txn: Any) -> dict[str, int]:
            built: dict[str, int] = {}
            problems: list[str] = []
            current = self._indexes.all_specs(txn)
            for table in sorted(set(current) | set(wanted)):
                old, new = current.get(table, {}), dict(wanted.get(table, {}))
                if old == new:
                    continue
                for field, kind in old.items():
                    if new.get(field) != kind:
                        self._indexes.drop(txn, table, field)
                build = {f: k for f, k in new.items() if old.get(f) != k}
                built[table] = self._backfill(txn, table, build, problems) if build else 0
                self._indexes.set_specs(txn, table, new)
            if problems:
                shown = problems[:_SHOWN]
                more = (
                    f"\n… and {len(problems) - _SHOWN} more rows" if len(problems) > _SHOWN else ""
                )
                raise InvalidArgument(
                    "indexes cannot be built over rows that lack or mistype the field "
                    "(fix or delete them, then apply again):\n" + "\n".join(shown) + more
                )
            return built

        result: dict[str, int] = self._storage.write(apply)
        return result

    def _backfill(self, txn: Any, table: str, specs: Mapping[str, str], problems: list[str]) -> int:
        n = 0
        for key, value, _ in self._tables.items(txn, table, b"", None):
            try:
                found = entries(specs, table, key, value)
            except InvalidArgument as e:
                problems.append(str(e))
                continue
            for field, enc in found.items():
                self._indexes.add(txn, table, field, enc, key)
                n += 1
        return n
