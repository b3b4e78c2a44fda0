"""The tables of an app that declare something: today, their secondary indexes.

``[tables.NAME]`` is optional: a function with a grant on a table can use it without
one. A table declares indexes when it wants ``kv_query`` (guest_sdk/ABI.md, "Table
indexes")::

    [tables.processed_orders]
    indexes = { processedAt = "int", customerId = "string" }   # int | string | bytes

Applying the manifest makes the stored definitions equal to these (indexes added are
back-filled, removed ones dropped; see ``host/platform/apply.py``).
"""

from __future__ import annotations

from typing import Any

from msgspec import Struct, field

from host.common.indexes import MAX_INDEXES, index_problem
from host.manifest.config_table import ConfigTable, quote_key
from host.manifest.grants import RESOURCE


class TableSpec(Struct, frozen=True):
    """One ``[tables.NAME]`` section: the table's indexes, field name → type."""

    name: str
    indexes: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"indexes": dict(self.indexes)}


def read_tables(t: ConfigTable) -> dict[str, TableSpec]:
    """Every ``[tables.NAME]`` section, checked (problems go to ``t``'s list)."""
    out: dict[str, TableSpec] = {}
    for name in list(t.data):
        section = t.table(name)
        if not RESOURCE.match(name):
            t.error(name, f"{name!r} is not a valid table name (letters, digits, '_', '.', '-')")
        indexes = section.str_map("indexes")
        for field_name, kind in indexes.items():
            problem = index_problem(field_name, kind)
            if problem:
                section.problems.add(f"{section.key('indexes')}.{quote_key(field_name)}", problem)
        if len(indexes) > MAX_INDEXES:
            section.error("indexes", f"at most {MAX_INDEXES} indexes per table")
        section.finish()
        out[name] = TableSpec(name, indexes)
    return out
