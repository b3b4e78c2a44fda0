"""Secrets: named values kept encrypted in LMDB, readable only by the functions granted them.

Each value is sealed with AES-256-GCM (``cryptography``) under a key kept in the data
dir's ``secrets.key``, or the file ``NIMBUS_SECRETS_KEY_FILE`` names (32 random bytes,
created with mode 0600 on first use), with a
fresh 96-bit nonce per write and the secret's name as associated data, so a sealed
value copied under another name does not open. The LMDB file therefore never holds a
plaintext value, and a backup of the data without the key file reveals nothing.

Values are read from the store on every ``get`` (no cache): a rotation (``set`` of a
new value) is what the next invocation of any process on the data dir sees.
"""

from __future__ import annotations

import builtins
import logging
import os
import re
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import msgpack
from msgspec import Struct

from host.errors import InvalidArgument, NotFound, ServiceUnavailable
from host.services.storage import Storage

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

log = logging.getLogger("nimbus.secrets")

KEY_FILE = "secrets.key"
#: names the key file instead of the data dir's (the same file on every host of a
#: PostgreSQL store)
KEY_FILE_ENV = "NIMBUS_SECRETS_KEY_FILE"
#: how an error names the ways to choose the key file (``--secrets-key`` sets the variable)
KEY_FILE_SETTING = f"--secrets-key (or {KEY_FILE_ENV})"
T = TypeVar("T")
#: a secret's name (the same rule as the manifest's ``secrets``: host/manifest/outbound.py)
SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
#: the largest secret value
MAX_SECRET_BYTES = 64 * 1024


class SecretInfo(Struct, frozen=True):
    """What may be shown about a secret: its name and dates, never its value."""

    name: str
    created_ms: int
    updated_ms: int

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "created_ms": self.created_ms, "updated_ms": self.updated_ms}


def load_or_create_key(path: Path) -> bytes:
    """The 32-byte key in ``path``, created (mode 0600, exclusively) when absent."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "wb") as f:
            f.write(AESGCM.generate_key(bit_length=256))
            f.flush()
            os.fsync(f.fileno())
    for _ in range(100):  # another process may be between its create and its write
        key = path.read_bytes()
        if len(key) == 32:
            break
        time.sleep(0.01)
    else:
        raise ServiceUnavailable(f"{path} does not hold a 32-byte key; restore it from backup")
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        log.warning("%s is readable by other users; chmod 600 it", path)
    return key


def check_secret_name(name: object) -> str:
    if not isinstance(name, str) or not SECRET_NAME.match(name):
        raise InvalidArgument(
            f"{name!r} is not a secret name: letters, digits and '_', not starting with a "
            "digit, at most 128 (e.g. PAYMENT_API_KEY)"
        )
    return name


class Secrets:
    """The secrets of one data dir (thread- and process-safe through LMDB)."""

    def __init__(self, storage: Storage, key_path: Path) -> None:
        self._storage = storage
        self._key_path = key_path
        self._db = storage.db(b"secrets")
        self._sealer: AESGCM | None = None
        self._lock = threading.Lock()

    @property
    def _aead(self) -> AESGCM:
        """The cipher, made on first use: a data dir whose functions use no secrets
        gets no key file, and a process that reads none does not import the crypto."""
        if self._sealer is None:
            with self._lock:
                if self._sealer is None:
                    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

                    self._sealer = AESGCM(self._load_key())
        return self._sealer

    def _load_key(self) -> bytes:
        return load_or_create_key(self._key_path)

    def set(self, name: str, value: bytes) -> SecretInfo:
        """Store (or rotate) ``name``; the next invocation reads the new value."""
        check_secret_name(name)
        if len(value) > MAX_SECRET_BYTES:
            raise InvalidArgument(f"a secret is at most {MAX_SECRET_BYTES} bytes")
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, value, name.encode())
        now = int(time.time() * 1000)

        def record(old: bytes | None) -> tuple[bytes, SecretInfo]:
            created = msgpack.unpackb(old)["created_ms"] if old is not None else now
            new = {"nonce": nonce, "sealed": sealed, "created_ms": created, "updated_ms": now}
            return msgpack.packb(new, use_bin_type=True), SecretInfo(name, created, now)

        return self._put(name, record)

    def get(self, name: str) -> bytes | None:
        """The value of ``name``, or None when it is not set."""
        raw = self._get(name)
        if raw is None:
            return None
        record = msgpack.unpackb(raw)
        from cryptography.exceptions import InvalidTag

        try:
            value: bytes = self._aead.decrypt(record["nonce"], record["sealed"], name.encode())
        except InvalidTag:
            raise ServiceUnavailable(
                f"secret {name} cannot be decrypted with this host's key ({self._key_path}); "
                f"set it again, or restore the key file (or name it with {KEY_FILE_SETTING})"
            ) from None
        return value

    def list(self) -> list[SecretInfo]:
        out = []
        for name, raw in self._records():
            record = msgpack.unpackb(raw)
            out.append(SecretInfo(name, record["created_ms"], record["updated_ms"]))
        return out

    def delete(self, name: str) -> None:
        check_secret_name(name)
        if not self._delete(name):
            raise NotFound(f"no secret named {name!r}; `nimbus secrets ls` lists them")

    # the storage of sealed records (what another backend replaces)

    def _put(self, name: str, record: Callable[[bytes | None], tuple[bytes, T]]) -> T:
        """Write ``record(old)``'s bytes under ``name`` in one transaction."""

        def put(txn: Any) -> T:
            raw, out = record(txn.get(name.encode(), db=self._db))
            txn.put(name.encode(), raw, db=self._db)
            return out

        return self._storage.write(put)

    def _get(self, name: str) -> bytes | None:
        with self._storage.read() as txn:
            raw = txn.get(name.encode(), db=self._db)
        return None if raw is None else bytes(raw)

    def _records(self) -> builtins.list[tuple[str, bytes]]:
        with self._storage.read() as txn:
            return [(bytes(k).decode(), bytes(v)) for k, v in txn.cursor(db=self._db)]

    def _delete(self, name: str) -> bool:
        return bool(self._storage.write(lambda txn: txn.delete(name.encode(), db=self._db)))
