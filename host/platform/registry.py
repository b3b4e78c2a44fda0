"""What is deployed: functions, their versions and config, and the HTTP routes.

Deployment records live in the services' store (``DeploymentStore``), and module bytes in a
content-addressed directory (``modules/<sha256>.wasm``), so a restarted server, or a
second worker on the same data dir, serves the same functions and versions without
the sources. Every change bumps a generation counter that readers compare cheaply to
notice deployments made by another process.
"""

from __future__ import annotations

import builtins
import hashlib
import time
from pathlib import Path
from typing import Any

from msgspec import Struct

from host.common.files import atomic_write
from host.errors import FunctionNotFound
from host.manifest.functions import FunctionSpec, function_spec_from_dict
from host.manifest.routes import Route, route_from_dict
from host.manifest.triggers import Triggers, triggers_from_dict
from host.services.faults import storage_fault
from host.services.interface import DeploymentStore


class Deployment(Struct, frozen=True):
    """One deployed version of a function."""

    spec: FunctionSpec
    version: int
    sha256: str
    deployed_ms: int

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def key(self) -> str:
        return f"{self.spec.name}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "sha256": self.sha256,
            "deployed_ms": self.deployed_ms,
            "config": self.spec.to_dict(),
        }


class Registry:
    """Deployments and routes, shared by every process on one data dir."""

    def __init__(self, store: DeploymentStore, modules_dir: Path) -> None:
        self._store = store
        self._modules = modules_dir
        self._modules.mkdir(parents=True, exist_ok=True)
        # deployments decoded once per generation: get() is on every request's path
        self._cache: dict[str, Deployment] = {}
        self._cache_generation = -1

    # --- functions -------------------------------------------------------------------

    def put(self, spec: FunctionSpec, wasm: bytes) -> Deployment:
        """Store ``wasm`` and make it ``spec.name``'s serving version (a new version
        unless module and config are unchanged)."""
        sha = hashlib.sha256(wasm).hexdigest()
        self._keep(sha, wasm)
        self._store.put_module(sha, wasm)  # where other hosts fetch it (a shared store)
        now = int(time.time() * 1000)
        return _deployment(self._store.put_function(spec.name, sha, spec.to_dict(), now))

    def get(self, name: str) -> Deployment:
        generation = self._store.generation()
        if generation == self._cache_generation:
            dep = self._cache.get(name)
            if dep is not None:
                return dep
        generation, record = self._store.function(name)
        if record is None:
            raise FunctionNotFound(f"no function named {name!r} is deployed")
        dep = _deployment(record)
        if generation != self._cache_generation:
            self._cache = {}
            self._cache_generation = generation
        self._cache[name] = dep
        return dep

    def list(self) -> list[Deployment]:
        return [_deployment(r) for r in self._store.functions()]

    def delete(self, name: str) -> None:
        if not self._store.delete_function(name):
            raise FunctionNotFound(f"no function named {name!r} is deployed")

    def wasm(self, dep: Deployment, limit: int | None = None) -> bytes:
        """The module's bytes; with ``limit``, only its first ``limit`` bytes (the rest
        is not read, once the module is here)."""
        try:
            with self._path(dep.sha256).open("rb") as f:
                return f.read(-1 if limit is None else limit)
        except FileNotFoundError:
            wasm = self._fetch(dep.sha256)
            return wasm if limit is None else wasm[:limit]

    def wasm_size(self, dep: Deployment) -> int:
        """The module's size in bytes, without reading it (once it is here)."""
        path = self._path(dep.sha256)
        if not path.exists():
            self._fetch(dep.sha256)
        return path.stat().st_size

    def _path(self, sha: str) -> Path:
        return self._modules / f"{sha}.wasm"

    def _keep(self, sha: str, wasm: bytes) -> None:
        path = self._path(sha)
        if not path.exists():
            try:
                atomic_write(path, wasm)
            except OSError as e:
                raise storage_fault(self._modules, e, "deployment") from e

    def _fetch(self, sha: str) -> bytes:
        """A module deployed through another host: from the shared store, kept here."""
        wasm = self._store.module(sha)
        if wasm is None or hashlib.sha256(wasm).hexdigest() != sha:
            raise FunctionNotFound(f"module {sha} is neither in {self._modules} nor in the store")
        self._keep(sha, wasm)
        return wasm

    # --- routes ----------------------------------------------------------------------

    def set_routes(self, routes: builtins.list[Route]) -> None:
        self._store.set_routes([r.to_dict() for r in routes])

    def routes(self) -> builtins.list[Route]:
        return [route_from_dict(d) for d in self._store.routes()]

    # --- triggers and workflows: stored as written in the manifest --------------------

    def set_app_config(self, name: str, config: dict[str, Any]) -> None:
        """Store a manifest section (``triggers``, ``workflows``) for every process."""
        self._store.set_app_config(name, config)

    def app_config(self, name: str) -> dict[str, Any]:
        return self._store.app_config(name)

    def triggers(self) -> Triggers:
        return triggers_from_dict(self.app_config("triggers"), where="registry")

    def generation(self) -> int:
        """A number that changes whenever a deployment or the routes change."""
        return self._store.generation()


def _deployment(record: dict[str, Any]) -> Deployment:
    config = record["config"]
    return Deployment(
        spec=function_spec_from_dict(record["name"], config, where="registry"),
        version=int(record["version"]),
        sha256=str(record["sha256"]),
        deployed_ms=int(record["deployed_ms"]),
    )
