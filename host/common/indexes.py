"""The vocabulary of table indexes that the manifest and the services agree on.

An index is named by the top-level field of a table's values that it orders by, and
has one of three types (``int``, ``string``, ``bytes``). The manifest checks a
``[tables.NAME] indexes`` table against these rules, and the services check the same
rules again before they store a definition (they trust no caller).
"""

from __future__ import annotations

import re

#: the types an indexed field may have, as written in nimbus.toml
INDEX_TYPES = ("int", "string", "bytes")
#: an index (field) name
INDEX_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
#: indexes one table may have (each costs a read and a write per put of the table)
MAX_INDEXES = 16
#: the largest indexed ``string`` or ``bytes`` value, in bytes (an LMDB key is 511
#: bytes at most: table name 128 + index name 64 + separators + this)
MAX_INDEXED_BYTES = 256


def index_problem(name: object, kind: object) -> str | None:
    """What is wrong with one index declaration, or None."""
    if not isinstance(name, str) or not INDEX_NAME.match(name):
        return (
            f"index name {name!r} is invalid: it is a top-level field of the values, "
            "letters, digits and '_' (at most 64, not starting with a digit)"
        )
    if kind not in INDEX_TYPES:
        return f"index {name!r} has type {kind!r}: expected one of {', '.join(INDEX_TYPES)}"
    return None
