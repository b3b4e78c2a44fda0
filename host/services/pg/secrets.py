"""Secrets on PostgreSQL: the sealed records in ``secrets``, shared by every host.

Values are sealed exactly as on LMDB (``secrets.py``); the key never enters the
database. Every host must therefore hold the same key file: ``--secrets-key`` (or
``NIMBUS_SECRETS_KEY_FILE``) names it (the data dir's ``secrets.key`` otherwise). The
database keeps a check
value of the key (a SHA-256 of it under a fixed label, which reveals nothing of a
256-bit random key) so that a host holding another key is refused with a message
saying what to set, instead of failing to open each value, or worse, sealing new
values under a key the other hosts do not have.

The key is created by a host only while the database has no check value yet (no
host has sealed anything): one host, or the first of several, then works with no
set-up, and every later host must be given a copy of that file. Choosing
"always require a configured key" would refuse the one-host case for no safety
gained: the check value makes a second, different key impossible either way.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from host.errors import ServiceUnavailable
from host.services.pg.store import PgStore, Tx
from host.services.secrets import KEY_FILE_SETTING, Secrets, load_or_create_key

T = TypeVar("T")
log = logging.getLogger("nimbus.secrets")

_LABEL = b"nimbus secrets key check v1\0"


def key_check(key: bytes) -> bytes:
    """What the database keeps to recognise the key (never the key)."""
    return hashlib.sha256(_LABEL + key).digest()


class PgSecrets(Secrets):
    """The secrets of one database, sealed under the key file every host shares."""

    def __init__(self, store: PgStore, key_path: Path) -> None:  # no LMDB database
        self._pg = store
        self._key_path = key_path
        self._sealer = None
        self._lock = threading.Lock()
        self._warn_at_start()

    def _warn_at_start(self) -> None:
        """Say at start, not only at the first secret read, that this host cannot open
        the database's secrets (the key is still loaded lazily: a host whose functions
        read no secret runs without it)."""
        with self._pg.connection() as conn:
            row = conn.execute("SELECT key_check FROM secrets_key").fetchone()
        if row is None:
            return
        try:
            ours = key_check(self._key_path.read_bytes())
        except OSError:
            ours = None
        if ours != bytes(row[0]):
            log.warning(
                "secrets in this database are sealed with a key this host does not have "
                "(%s is %s): name a copy of the key file the other hosts use with %s",
                self._key_path,
                "missing" if ours is None else "another key",
                KEY_FILE_SETTING,
            )

    def _load_key(self) -> bytes:
        with self._pg.connection() as conn:
            row = conn.execute("SELECT key_check FROM secrets_key").fetchone()
        stored = bytes(row[0]) if row else None
        if stored is None or self._key_path.exists():
            key = load_or_create_key(self._key_path)
        else:
            raise ServiceUnavailable(
                f"the secrets in this database were sealed by another host's key, and "
                f"{self._key_path} does not exist: copy that host's key file here, or name "
                f"a copy of it with {KEY_FILE_SETTING} (every host of a PostgreSQL store needs "
                "the same key file)"
            )
        if stored is None:
            with self._pg.connection() as conn:
                conn.execute(
                    "INSERT INTO secrets_key (one, key_check) VALUES (true, %s)"
                    " ON CONFLICT (one) DO NOTHING",
                    (key_check(key),),
                )
                row = conn.execute("SELECT key_check FROM secrets_key").fetchone()
            if row is None:
                raise ServiceUnavailable("the secrets key check could not be stored; retry")
            stored = bytes(row[0])
        if stored != key_check(key):
            raise ServiceUnavailable(
                f"this host's secrets key ({self._key_path}) is not the key the database's "
                f"secrets are sealed with: name a copy of the key file the other hosts use "
                f"with {KEY_FILE_SETTING} (the same file on every host)"
            )
        return key

    def _put(self, name: str, record: Callable[[bytes | None], tuple[bytes, T]]) -> T:
        def put(txn: Tx) -> T:
            row = txn.execute(
                "SELECT record FROM secrets WHERE name = %s FOR UPDATE", (name,)
            ).fetchone()
            raw, out = record(bytes(row[0]) if row else None)
            txn.execute(
                "INSERT INTO secrets (name, record) VALUES (%s, %s)"
                " ON CONFLICT (name) DO UPDATE SET record = excluded.record",
                (name, raw),
            )
            return out

        return self._pg.write(put)

    def _get(self, name: str) -> bytes | None:
        with self._pg.connection() as conn:
            row = conn.execute("SELECT record FROM secrets WHERE name = %s", (name,)).fetchone()
        return bytes(row[0]) if row else None

    def _records(self) -> list[tuple[str, bytes]]:
        with self._pg.connection() as conn:
            rows = conn.execute("SELECT name, record FROM secrets ORDER BY name").fetchall()
        return [(str(n), bytes(r)) for n, r in rows]

    def _delete(self, name: str) -> bool:
        with self._pg.connection() as conn:
            cur = conn.execute("DELETE FROM secrets WHERE name = %s", (name,))
        return bool(cur.rowcount)
