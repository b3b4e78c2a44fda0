"""Turning an app manifest into deployments: build every function, deploy, set routes.

``nimbus up`` runs this before it serves; it is also what a test calls to stand up an
app in-process. Building happens first for every function, so one that does not
compile leaves everything deployed before untouched. Table indexes come next, before
any function is deployed (new code may query them): one transaction makes the stored
definitions the manifest's, back-filling new indexes; rows that do not fit refuse it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from msgspec import Struct

from host.errors import InvalidArgument, ManifestError
from host.manifest.app import Manifest
from host.manifest.functions import FunctionSpec
from host.platform.platform import Platform
from host.toolchain.builder import build_function


class Applied(Struct, frozen=True):
    """What applying a manifest did to one function."""

    name: str
    version: int
    rebuilt: bool
    language: str


def build_app(manifest: Manifest) -> dict[str, tuple[bytes, bool, str]]:
    """Every function's module bytes, whether it was recompiled, and its language."""
    out: dict[str, tuple[bytes, bool, str]] = {}
    for name, spec in manifest.functions.items():
        out[name] = _module(spec)
    return out


def _module(spec: FunctionSpec) -> tuple[bytes, bool, str]:
    if spec.source is not None:
        result = build_function(spec.source, spec.name)
        return result.wasm.read_bytes(), result.rebuilt, result.language
    assert spec.wasm is not None
    return Path(spec.wasm).read_bytes(), False, "wasm"


def apply_manifest(
    platform: Platform,
    manifest: Manifest,
    on_step: Callable[[str], None] = lambda _: None,
) -> list[Applied]:
    """Build, then deploy every function of ``manifest`` and install its routes."""
    built = build_app(manifest)
    define_indexes(platform, manifest, on_step)
    applied = []
    for name, spec in manifest.functions.items():
        wasm, rebuilt, language = built[name]
        on_step(f"deploying {name}")
        dep = platform.deploy(spec, wasm)
        applied.append(Applied(name, dep.version, rebuilt, language))
    # policies before the routes that name them: a reader never sees a route without them
    platform.registry.set_app_config("gateway", manifest.gateway.to_dict())
    platform.registry.set_routes(list(manifest.routes))
    platform.registry.set_app_config("triggers", manifest.triggers_raw)
    platform.registry.set_app_config("workflows", manifest.workflows)
    platform.registry.set_app_config("billing", manifest.billing.to_dict())
    return applied


def define_indexes(
    platform: Platform, manifest: Manifest, on_step: Callable[[str], None] = lambda _: None
) -> dict[str, int]:
    """Make the data dir's table indexes the manifest's (``[tables.NAME] indexes``);
    per table changed, the entries built. ``ManifestError`` when existing rows do not
    fit a new index: then no index changes."""
    wanted = {name: t.indexes for name, t in manifest.tables.items() if t.indexes}
    if wanted != platform.services.indexes.defined():
        on_step("building table indexes")
    try:
        return platform.services.indexes.define(wanted)
    except InvalidArgument as e:
        raise ManifestError(f"{manifest.path}: [tables]: {e}") from None
