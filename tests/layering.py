"""The layering rule of ``docs/ARCHITECTURE.md``, read from its tables and checked
against the imports of a source tree (``ast``, no import is executed).

A module's *part* is the first folder under the package (``host/services/kv.py`` is
``services``), or the module's own name for a file at the top (``host/server.py`` is
``server``; ``host/__init__.py`` is ``host``).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

_ROW = re.compile(r"^\|\s*`([\w.]+)`\s*\|(.*)\|\s*$")
_NAME = re.compile(r"`([\w.]+)`")


@dataclass(frozen=True)
class Rules:
    """What each part may import, and the packages only some parts may import."""

    parts: dict[str, frozenset[str]]
    packages: dict[str, frozenset[str]]


def _table(text: str, tag: str) -> dict[str, frozenset[str]]:
    start, end = f"<!-- layering:{tag} -->", f"<!-- /layering:{tag} -->"
    if start not in text or end not in text:
        raise ValueError(f"the document has no {start} … {end} table")
    body = text.split(start, 1)[1].split(end, 1)[0]
    rows: dict[str, frozenset[str]] = {}
    for line in body.splitlines():
        m = _ROW.match(line.strip())
        if m:
            rows[m.group(1)] = frozenset(_NAME.findall(m.group(2)))
    if not rows:
        raise ValueError(f"the {tag} table of the document has no rows")
    return rows


def parse_rules(markdown: str) -> Rules:
    """The two tables (``layering:parts`` and ``layering:packages``) of the document."""
    return Rules(_table(markdown, "parts"), _table(markdown, "packages"))


def part_of(path: Path, root: Path) -> str:
    rel = path.relative_to(root)
    if len(rel.parts) == 1:
        return root.name if rel.stem == "__init__" else rel.stem
    return rel.parts[0]


def _imports(tree: ast.AST, package: str) -> list[tuple[int, str]]:
    """``(line, dotted name)`` of every absolute import; ``from pkg import x`` yields
    ``pkg.x`` (x may be a module)."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == package:
                out += [(node.lineno, f"{package}.{a.name}") for a in node.names]
            else:
                out.append((node.lineno, node.module))
    return out


def violations(root: Path, rules: Rules) -> list[str]:
    """Every import under package directory ``root`` that breaks ``rules``."""
    package = root.name
    found: list[str] = []
    for path in sorted(root.rglob("*.py")):
        part = part_of(path, root)
        where = path.relative_to(root.parent)
        if part not in rules.parts:
            found.append(f"{where}: part {part!r} has no row in the layering table")
            continue
        allowed = rules.parts[part]
        for line, name in _imports(ast.parse(path.read_text(), str(path)), package):
            top, _, rest = name.partition(".")
            if top == package:
                target = rest.split(".")[0] or package
                if target != part and target not in allowed:
                    found.append(
                        f"{where}:{line}: {part} imports {name} ({target} is not "
                        f"below {part} in the layering table)"
                    )
            elif top in rules.packages and part not in rules.packages[top]:
                only = ", ".join(sorted(rules.packages[top]))
                found.append(f"{where}:{line}: {part} imports {top}, which only {only} may")
    return found


#: what a module outside services/ must not hold: a transaction or an LMDB handle
LEAKS = (
    re.compile(r"\btxn\b"),
    re.compile(r"\bstorage\.(read|write|snapshot|db)\("),
    re.compile(r"\b(import|from) lmdb\b"),
    re.compile(r"\bhost\.services\.storage\b"),
    re.compile(r"\.env\.begin\("),
)


def transaction_leaks(root: Path, inside: str = "services") -> list[str]:
    """Lines of modules outside ``root/inside`` that hold a transaction or LMDB handle."""
    found: list[str] = []
    for path in sorted(root.rglob("*.py")):
        if part_of(path, root) == inside:
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if any(p.search(line) for p in LEAKS):
                found.append(f"{path.relative_to(root.parent)}:{n}: {line.strip()}")
    return found
