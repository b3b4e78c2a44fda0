"""Which services backend a host uses: the store setting, read once at start.

``lmdb`` (the default) or an empty setting: the data dir's own LMDB environment.
``postgresql://…`` (or ``postgres://…``): a PostgreSQL database shared by every
host pointed at it. The setting comes from ``nimbus up --store``, ``NIMBUS_STORE``
or ``[app] store`` (in that order, the CLI decides); this module only opens it.
"""

from __future__ import annotations

from pathlib import Path

from host.errors import ManifestError
from host.services.blobs import MAX_OBJECT_BYTES
from host.services.interface import ServiceSet
from host.services.services import Services

SCHEMES = ("postgresql://", "postgres://")
#: the environment variable naming the store (what the CLI and workers read)
STORE_ENV = "NIMBUS_STORE"


def check_store(store: str) -> str:
    """``store`` if it names a backend Nimbus knows; a clear error otherwise."""
    if store in ("", "lmdb") or store.startswith(SCHEMES):
        return store
    raise ManifestError(
        f"store {store!r} is not known: use 'lmdb' (the default, the data dir) or a "
        "PostgreSQL URL such as postgresql://user@db.example:5432/nimbus"
    )


def is_shared(store: str) -> bool:
    """Whether ``store`` is shared by several hosts (a database, not the data dir)."""
    return store.startswith(SCHEMES)


def open_services(
    store: str,
    path: Path,
    map_size: int = 64 * 1024 * 1024,
    max_object_bytes: int = MAX_OBJECT_BYTES,
    schema: str = "",
) -> ServiceSet:
    """The services of ``store`` for a host whose data dir's ``db`` folder is ``path``."""
    if is_shared(check_store(store)):
        from host.services.pg.services import PgServices

        return PgServices(store, path, schema=schema, max_object_bytes=max_object_bytes)
    return Services(path, map_size=map_size, max_object_bytes=max_object_bytes)
