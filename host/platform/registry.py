"""What is deployed: functions, their versions and config, and the HTTP routes.

Deployments live in LMDB beside the managed services, and module bytes in a
content-addressed directory (``modules/<sha256>.wasm``), so a restarted server, or a
second worker on the same data dir, serves the same functions and versions without
the sources. Every change bumps a generation counter that readers compare cheaply to
notice deployments made by another process.
"""

from __future__ import annotations

import builtins
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

from host.common.files import atomic_write
from host.errors import FunctionNotFound
from host.manifest.functions import FunctionSpec, function_spec_from_dict
from host.manifest.routes import Route, route_from_dict
from host.manifest.triggers import Triggers, triggers_from_dict
from host.services.storage import Storage

_DB = b"registry"
_FN = b"fn/"
_ROUTES = b"routes"
_GENERATION = b"generation"
_APP = b"app/"


@dataclass(frozen=True)
class Deployment:
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

    def __init__(self, storage: Storage, modules_dir: Path) -> None:
        self._storage = storage
        self._db = storage.db(_DB)
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
        path = self._modules / f"{sha}.wasm"
        if not path.exists():
            atomic_write(path, wasm)
        key = _FN + spec.name.encode()
        config = spec.to_dict()

        def write(txn: Any) -> Deployment:
            raw = txn.get(key, db=self._db)
            if raw is not None:
                old = msgpack.unpackb(raw)
                if old["sha256"] == sha and old["config"] == config:
                    return _deployment(old)
                version = int(old["version"]) + 1
            else:
                version = 1
            record = {
                "name": spec.name,
                "version": version,
                "sha256": sha,
                "deployed_ms": int(time.time() * 1000),
                "config": config,
            }
            txn.put(key, msgpack.packb(record), db=self._db)
            _bump(txn, self._db)
            return _deployment(record)

        result: Deployment = self._storage.write(write)
        return result

    def get(self, name: str) -> Deployment:
        with self._storage.read() as txn:
            generation = _generation(txn, self._db)
            if generation != self._cache_generation:
                self._cache = {}
                self._cache_generation = generation
            dep = self._cache.get(name)
            if dep is not None:
                return dep
            raw = txn.get(_FN + name.encode(), db=self._db)
        if raw is None:
            raise FunctionNotFound(f"no function named {name!r} is deployed")
        dep = _deployment(msgpack.unpackb(raw))
        if self._cache_generation == generation:  # not reset by a newer reader meanwhile
            self._cache[name] = dep
        return dep

    def list(self) -> list[Deployment]:
        out = []
        with self._storage.read() as txn:
            cur = txn.cursor(db=self._db)
            if cur.set_range(_FN):
                for k, v in cur:
                    if not bytes(k).startswith(_FN):
                        break
                    out.append(_deployment(msgpack.unpackb(v)))
        return out

    def delete(self, name: str) -> None:
        key = _FN + name.encode()

        def write(txn: Any) -> bool:
            if not txn.delete(key, db=self._db):
                return False
            _bump(txn, self._db)
            return True

        if not self._storage.write(write):
            raise FunctionNotFound(f"no function named {name!r} is deployed")

    def wasm(self, dep: Deployment) -> bytes:
        return (self._modules / f"{dep.sha256}.wasm").read_bytes()

    # --- routes ----------------------------------------------------------------------

    def set_routes(self, routes: builtins.list[Route]) -> None:
        packed = msgpack.packb([r.to_dict() for r in routes])

        def write(txn: Any) -> None:
            if txn.get(_ROUTES, db=self._db) != packed:
                txn.put(_ROUTES, packed, db=self._db)
                _bump(txn, self._db)

        self._storage.write(write)

    def routes(self) -> builtins.list[Route]:
        with self._storage.read() as txn:
            raw = txn.get(_ROUTES, db=self._db)
        if raw is None:
            return []
        return [route_from_dict(d) for d in msgpack.unpackb(raw)]

    # --- triggers and workflows: stored as written in the manifest --------------------

    def set_app_config(self, name: str, config: dict[str, Any]) -> None:
        """Store a manifest section (``triggers``, ``workflows``) for every process."""
        key = _APP + name.encode()
        packed = msgpack.packb(config)

        def write(txn: Any) -> None:
            if txn.get(key, db=self._db) != packed:
                txn.put(key, packed, db=self._db)
                _bump(txn, self._db)

        self._storage.write(write)

    def app_config(self, name: str) -> dict[str, Any]:
        with self._storage.read() as txn:
            raw = txn.get(_APP + name.encode(), db=self._db)
        return {} if raw is None else dict(msgpack.unpackb(raw))

    def triggers(self) -> Triggers:
        return triggers_from_dict(self.app_config("triggers"), where="registry")

    def generation(self) -> int:
        """A number that changes whenever a deployment or the routes change."""
        with self._storage.read() as txn:
            return _generation(txn, self._db)


def _generation(txn: Any, db: Any) -> int:
    raw = txn.get(_GENERATION, db=db)
    return int(raw) if raw is not None else 0


def _bump(txn: Any, db: Any) -> None:
    txn.put(_GENERATION, str(_generation(txn, db) + 1).encode(), db=db)


def _deployment(record: dict[str, Any]) -> Deployment:
    config = record["config"]
    return Deployment(
        spec=function_spec_from_dict(record["name"], config, where="registry"),
        version=int(record["version"]),
        sha256=str(record["sha256"]),
        deployed_ms=int(record["deployed_ms"]),
    )
