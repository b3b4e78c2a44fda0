"""Typed reads from a parsed TOML (or JSON) table that collect every mistake.

The manifest is validated by reading each table through a ``ConfigTable``: it answers
typed values with defaults, notes what is wrong under the full key path
(``functions.hello.timeout``), and at ``finish()`` reports the keys nobody asked for.
All mistakes land in one ``Problems`` list, raised at the end as a single
``ManifestError``, so a user fixes a file in one go instead of one error per run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from host.common.units import parse_duration, parse_size
from host.errors import ManifestError

T = TypeVar("T")


class Problems:
    """The mistakes found in one document (a file, or a config named by ``origin``)."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.items: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.items.append(
            f"{self.origin}: {where}: {message}" if where else f"{self.origin}: {message}"
        )

    def raise_if_any(self) -> None:
        if len(self.items) == 1:
            raise ManifestError(self.items[0])
        if self.items:
            raise ManifestError(f"{len(self.items)} problems:\n" + "\n".join(self.items))


class ConfigTable:
    """One table of the document, read key by key; remembers which keys were used."""

    def __init__(self, data: Any, where: str, problems: Problems) -> None:
        self.where, self.problems = where, problems
        if not isinstance(data, dict):
            problems.add(where, f"expected a table, got {_show(data)}")
            data = {}
        self.data: dict[str, Any] = data
        self.used: set[str] = set()

    def key(self, k: str) -> str:
        """The full key path of ``k`` in this table, for messages."""
        return f"{self.where}.{quote_key(k)}" if self.where else quote_key(k)

    def error(self, k: str, message: str) -> None:
        self.problems.add(self.key(k), message)

    def has(self, k: str) -> bool:
        return k in self.data

    def raw(self, k: str) -> Any:
        self.used.add(k)
        return self.data.get(k)

    def string(self, k: str, default: str | None = None, required: bool = False) -> str | None:
        v: object = self.raw(k)
        if v is None:
            if required:
                self.error(k, "is required (a string)")
            return default
        if not isinstance(v, str):
            self.error(k, f"expected a string, got {_show(v)}")
            return default
        if required and not v:
            self.error(k, "must not be empty")
        return v

    def integer(self, k: str, default: int, minimum: int = 0) -> int:
        v = self.raw(k)
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            self.error(k, f"expected an integer >= {minimum}, got {_show(v)}")
            return default
        return v

    def number(self, k: str, default: float, minimum: float = 0.0) -> float:
        v = self.raw(k)
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, int | float) or not v >= minimum:
            self.error(k, f"expected a number >= {minimum:g}, got {_show(v)}")
            return default
        return float(v)

    def duration(self, k: str, default: float, positive: bool = False) -> float:
        return self._parsed(k, default, parse_duration, positive, "a duration above zero")

    def size(self, k: str, default: int, positive: bool = False) -> int:
        return self._parsed(k, default, parse_size, positive, "a size above zero")

    def _parsed(
        self, k: str, default: T, parse: Callable[[object], T], positive: bool, what: str
    ) -> T:
        v = self.raw(k)
        if v is None:
            return default
        try:
            value = parse(v)
        except ValueError as e:
            self.error(k, str(e))
            return default
        if positive and not value:
            self.error(k, f"expected {what}, got {_show(v)}")
            return default
        return value

    def str_map(self, k: str) -> dict[str, str]:
        """A table of strings (``env = { KEY = "value" }``); ``{}`` when absent."""
        v = self.raw(k)
        if v is None:
            return {}
        if not isinstance(v, dict):
            self.error(k, f"expected a table of strings, got {_show(v)}")
            return {}
        out: dict[str, str] = {}
        for name, value in v.items():
            if isinstance(value, str):
                out[name] = value
            else:
                self.problems.add(
                    f"{self.key(k)}.{quote_key(name)}", f"expected a string, got {_show(value)}"
                )
        return out

    def table(self, k: str) -> ConfigTable:
        """The sub-table ``k`` (empty when absent)."""
        v = self.raw(k)
        return ConfigTable({} if v is None else v, self.key(k), self.problems)

    def tables(self, k: str, toml_hint: str) -> list[ConfigTable]:
        """An array of tables (``[[routes]]``); ``toml_hint`` shows how one is written."""
        v = self.raw(k)
        if v is None:
            return []
        if not isinstance(v, list):
            self.error(k, f"expected an array of tables ({toml_hint}), got {_show(v)}")
            return []
        return [ConfigTable(item, f"{self.key(k)}[{i}]", self.problems) for i, item in enumerate(v)]

    def finish(self) -> None:
        """Report every key that was never read: a typo or an unsupported option."""
        unknown = sorted(set(self.data) - self.used)
        known = ", ".join(sorted(self.used))
        for k in unknown:
            import difflib  # an error's suggestion: not imported to serve

            near = difflib.get_close_matches(k, self.used, n=1)
            hint = f"did you mean {near[0]!r}? " if near else ""
            self.error(
                k, f"unknown key ({hint}expected one of: {known})" if known else "unknown key"
            )


def quote_key(k: str) -> str:
    """A key as TOML would need it written in a dotted path."""
    bare = k and all(c.isascii() and (c.isalnum() or c in "_-") for c in k)
    return k if bare else f'"{k}"'


def _show(v: Any) -> str:
    """A value for a message: its repr and, for non-scalars, its TOML type."""
    names = {dict: "a table", list: "an array", bool: "a boolean"}
    kind = names.get(type(v))
    return f"{kind} {v!r}" if kind else repr(v)
