"""Backups a host can serve as they are: the database and the modules it names.

A data dir is the LMDB environment (``db/``, with the usage rows in ``db/usage``), the
deployed modules by content hash (``modules/<sha256>.wasm``), the compiled-module cache
(``cache/``, rebuilt on demand), the admin token and the key that seals the secrets
(``secrets.key``). ``backup`` copies the environment and the usage rows, each from one
read snapshot (while writers go on), then, reading that copy, the module of every
function it deploys, each checked against its hash; the token and the secrets key go
along (a backup is as secret as the data dir: without the key its secrets cannot be
read). It is written under a temporary name and renamed at the end, so a directory
with the backup's name is always complete. ``nimbus serve --data BACKUP`` serves it
as is; ``restore`` copies a backup into a new data dir, checking it first.

Leases held at the time of the copy belong to processes serving the original data
dir: a host started on the backup finds them dead (``services/hosts.py``) and takes
them back at once, so every queued message is delivered.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from host.errors import InvalidRequest
from host.platform.registry import Registry
from host.services.services import Services

T = TypeVar("T")

#: parts of a data dir that are not copied file by file (``cache/`` is rebuilt)
_DIRS = ("db", "modules", "cache")


def backup(data_dir: Path, dest: Path) -> list[str]:
    """Write a servable copy of ``data_dir`` to the new directory ``dest``; the names of
    the functions whose modules it holds."""
    db = data_dir / "db"
    if not (db / "data.mdb").exists():
        raise InvalidRequest(f"{data_dir} is not a Nimbus data dir (no db/data.mdb)")

    def write(partial: Path) -> list[str]:
        partial.mkdir()
        services = Services(db)
        try:
            services.backup(partial / "db")
        finally:
            services.close()
        names = _copy_modules(partial, data_dir / "modules")
        for item in data_dir.iterdir():  # the admin token, and any file beside
            if item.is_file() and item.name not in _DIRS and not item.name.startswith("."):
                shutil.copy2(item, partial / item.name)
        return names

    return _write_new(dest, write)


def restore(source: Path, data_dir: Path) -> list[str]:
    """Copy the backup ``source`` into the new data dir ``data_dir``, after checking
    that every deployed function's module is there and intact."""
    if not (source / "db" / "data.mdb").exists():
        raise InvalidRequest(f"{source} is not a Nimbus backup (no db/data.mdb)")

    def write(partial: Path) -> list[str]:
        names = verify(source)
        shutil.copytree(source, partial, ignore=shutil.ignore_patterns("lock.mdb", "cache"))
        return names

    return _write_new(data_dir, write)


def _write_new(dest: Path, write: Callable[[Path], T]) -> T:
    """``write`` a directory under a temporary name beside ``dest``, then rename it to
    ``dest`` (which must not exist, or be empty): ``dest`` is never seen half written."""
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise InvalidRequest(f"{dest} exists and is not empty; give a new directory")
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.parent / f".{dest.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        result = write(partial)
        if dest.exists():
            dest.rmdir()  # checked empty above; fails loudly if something appeared since
        partial.rename(dest)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return result


def verify(root: Path) -> list[str]:
    """The functions deployed in the data dir or backup ``root``, each module checked
    against its hash; ``InvalidRequest`` naming the first that is missing or damaged."""
    return _copy_modules(root, None)


def _copy_modules(root: Path, source: Path | None) -> list[str]:
    """Check (and, given ``source``, first copy from it) the module of every function
    the database under ``root`` deploys into ``root/modules``."""
    services = Services(root / "db")
    try:
        deployments = Registry(services.deployments, root / "modules").list()
    finally:
        services.close()
    for dep in deployments:
        target = root / "modules" / f"{dep.sha256}.wasm"
        if source is not None:
            origin = source / f"{dep.sha256}.wasm"
            if not origin.exists():
                raise InvalidRequest(
                    f"function {dep.name}: module {origin} is missing from the data dir; "
                    "redeploy it, then back up again"
                )
            shutil.copyfile(origin, target)
        try:
            digest = hashlib.sha256(target.read_bytes()).hexdigest()
        except FileNotFoundError:
            raise InvalidRequest(f"function {dep.name}: module {target} is missing") from None
        if digest != dep.sha256:
            raise InvalidRequest(
                f"function {dep.name}: module {target} is damaged (sha256 {digest[:12]}…, "
                f"expected {dep.sha256[:12]}…)"
            )
    return sorted(d.name for d in deployments)
