"""Adding a function, with its routes and triggers, to an app's nimbus.toml.

``nimbus new`` edits a file the user wrote, so every byte already there stays as it
was: comments, blank lines, key order, arrays of tables split across the file. The
new tables are built and rendered by tomlkit (quoting and escaping are its job) and
go at the end of the document, where TOML allows another ``[[routes]]`` or
``[functions.NAME]`` whatever came before. (tomlkit's own insertion into a parsed
document regroups an array of tables that the file splits, moving the user's lines;
hence the append.) The result is parsed again by tomlkit and validated as a whole
manifest before it replaces the file, so a collision or a clash is reported and
nothing is written.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import tomlkit
from msgspec import Struct, field
from tomlkit.exceptions import TOMLKitError

from host.errors import ManifestError
from host.manifest.app import Manifest, parse_manifest
from host.manifest.grants import RESOURCE

NEW_MANIFEST = """\
# The app manifest: one file says everything about an app, grants included.
# Every key is described in host/manifest/app.py; `nimbus new NAME --lang zig|c|python`
# adds a function with its route or trigger at the end of this file.

[app]
name = {name}
"""


class Addition(Struct, frozen=True):
    """A function to add: its ``[functions.NAME]`` keys, routes and triggers by kind."""

    name: str
    function: dict[str, Any]
    #: a comment for a key of the function's table (e.g. which entry file it builds)
    notes: dict[str, str] = field(default_factory=dict)
    routes: list[dict[str, Any]] = field(default_factory=list)
    triggers: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def new_manifest_text(app_name: str) -> str:
    """The text of a fresh nimbus.toml for an app called ``app_name``."""
    return NEW_MANIFEST.format(name=tomlkit.string(app_name).as_string())


def render(addition: Addition, comment: str) -> str:
    """The addition as TOML text, headed by a ``comment`` line."""
    doc = tomlkit.document()
    doc.add(tomlkit.comment(comment))
    functions = tomlkit.table(is_super_table=True)
    fn = tomlkit.table()
    for key, value in addition.function.items():
        fn.add(key, value)
        if key in addition.notes:
            fn[key].comment(addition.notes[key])
    functions.add(addition.name, fn)
    doc.add("functions", functions)
    if addition.routes:
        doc.add("routes", _aot(addition.routes))
    if addition.triggers:
        triggers = tomlkit.table(is_super_table=True)
        for kind, items in addition.triggers.items():
            triggers.add(kind, _aot(items))
        doc.add("triggers", triggers)
    return tomlkit.dumps(doc)


def _aot(items: list[dict[str, Any]]) -> Any:
    aot = tomlkit.aot()
    for item in items:
        t = tomlkit.table()
        for key, value in item.items():
            t.add(key, value)
        aot.append(t)
    return aot


def add_function(path: Path, addition: Addition, comment: str) -> Manifest:
    """Append ``addition`` to the manifest at ``path`` (created when absent) and return
    the validated result. Raises ``ManifestError`` (the file untouched) when the
    function exists already, a route collides, or the file was invalid before."""
    text = path.read_text() if path.exists() else new_manifest_text(_app_name(path))
    current = _parse(text, path)
    if addition.name in (current.get("functions") or {}):
        raise ManifestError(
            f"{path}: a function named {addition.name!r} exists already "
            f"([functions.{addition.name}]); pick another name or remove it first"
        )
    result = text.rstrip("\n") + "\n\n" + render(addition, comment)
    manifest = parse_manifest(_parse(result, path), path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(result)
    os.replace(tmp, path)
    return manifest


def _app_name(path: Path) -> str:
    """The directory's name, when it is a valid app name."""
    name = path.resolve().parent.name
    return name if RESOURCE.match(name) else "app"


def _parse(text: str, path: Path) -> dict[str, Any]:
    """The document as plain data; tomlkit must accept it too, since it rendered the
    addition and a later edit will read it again."""
    try:
        tomlkit.parse(text)
        return tomllib.loads(text)
    except (TOMLKitError, tomllib.TOMLDecodeError) as e:
        raise ManifestError(
            f"{path}: not valid TOML: {e}; fix it before adding a function"
        ) from None
