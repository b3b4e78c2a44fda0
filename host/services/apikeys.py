"""API keys for gateway routes: created, listed, revoked; only a hash is ever stored.

A key reads ``nk_<id>_<secret>``: the id (12 hex digits) is public and names the
record, the secret (32 random bytes, URL-safe) is shown once, at creation, and kept
only as its sha256 (a random 256-bit secret needs no slow hash). Records live in the
data dir's LMDB environment, so every worker process sees a new or revoked key.

The gateway caches verified keys and must notice a revocation on the next request,
from any process, without an LMDB transaction per request. So every change also
publishes its generation (unique: counted inside the write transaction) through a
``GenerationSignal`` (``signal.py``), after the commit; ``generation()`` reads it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from typing import Any

import msgpack
from msgspec import Struct

from host.errors import InvalidArgument, NotFound
from host.services.signal import GenerationSignal
from host.services.storage import Storage

_DB = b"apikeys"
_KEY = b"k/"
_GENERATION = b"generation"
PREFIX = "nk"
_SIGNAL_FILE = "apikeys.generation"
MAX_NAME = 128


class ApiKey(Struct, frozen=True):
    """One key's record (never its secret)."""

    id: str
    name: str
    created_ms: int
    #: 0: never expires
    expires_ms: int = 0
    #: 0: not revoked
    revoked_ms: int = 0
    #: policies and route paths the key may call (empty: any route that takes API keys)
    policies: tuple[str, ...] = ()
    routes: tuple[str, ...] = ()

    def expired(self, now_ms: int) -> bool:
        return bool(self.expires_ms) and now_ms >= self.expires_ms

    def allows(self, route_path: str, policies: tuple[str, ...]) -> bool:
        if self.routes and route_path not in self.routes:
            return False
        return not self.policies or bool(set(self.policies) & set(policies))

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "created_ms": self.created_ms,
            "expires_ms": self.expires_ms or None,
            "revoked_ms": self.revoked_ms or None,
            "policies": list(self.policies),
            "routes": list(self.routes),
        }


def split_key(token: str) -> tuple[str, str] | None:
    """``(id, secret)`` of a key's text, or None when it is not shaped like one."""
    prefix, sep, rest = token.partition("_")
    key_id, sep2, secret = rest.partition("_")
    if prefix != PREFIX or not sep or not sep2 or len(key_id) != 12 or not secret:
        return None
    return key_id, secret


class ApiKeys:
    """The API keys of one data dir (thread-safe; shared with other processes)."""

    def __init__(self, storage: Storage, now_ms: Callable[[], int] | None = None) -> None:
        self._storage = storage
        self._db = storage.db(_DB)
        self._now_ms = now_ms or (lambda: int(time.time() * 1000))
        self._signal = GenerationSignal(storage.path / _SIGNAL_FILE)

    def close(self) -> None:
        self._signal.close()

    def create(
        self,
        name: str,
        expires_in_s: float | None = None,
        policies: tuple[str, ...] = (),
        routes: tuple[str, ...] = (),
    ) -> tuple[ApiKey, str]:
        """A new key and its text (the only time the text exists outside the caller)."""
        key, secret, record = new_key(name, expires_in_s, policies, routes, self._now_ms())

        def write(txn: Any) -> int:
            txn.put(_KEY + key.id.encode(), msgpack.packb(record), db=self._db)
            return _bump(txn, self._db)

        self._publish(self._storage.write(write))
        return key, f"{PREFIX}_{key.id}_{secret}"

    def list(self) -> list[ApiKey]:
        out = []
        with self._storage.read() as txn:
            cur = txn.cursor(db=self._db)
            if cur.set_range(_KEY):
                for k, v in cur:
                    if not bytes(k).startswith(_KEY):
                        break
                    out.append(record_key(msgpack.unpackb(v)))
        return sorted(out, key=lambda k: k.created_ms)

    def revoke(self, key_id: str) -> ApiKey:
        """Mark the key revoked (kept, so ``ls`` shows it); NotFound if unknown."""
        now = self._now_ms()

        def write(txn: Any) -> tuple[dict[str, Any] | None, int]:
            raw = txn.get(_KEY + key_id.encode(), db=self._db)
            if raw is None:
                return None, 0
            record = dict(msgpack.unpackb(raw))
            if record.get("revoked_ms"):
                return record, 0
            record["revoked_ms"] = now
            txn.put(_KEY + key_id.encode(), msgpack.packb(record), db=self._db)
            return record, _bump(txn, self._db)

        record, generation = self._storage.write(write)
        if record is None:
            raise NotFound(f"no API key with id {key_id!r} (see `nimbus keys ls`)")
        if generation:
            self._publish(generation)
        return record_key(record)

    def lookup(self, token: str) -> ApiKey | None:
        """The key whose text is ``token`` (revoked or expired ones too), else None."""
        parts = split_key(token)
        if parts is None:
            return None
        with self._storage.read() as txn:
            raw = txn.get(_KEY + parts[0].encode(), db=self._db)
        return check_token(token, raw)

    def generation(self) -> int:
        """Changes whenever a key is created or revoked (by any process); read from
        shared memory, cheap enough for every request."""
        return self._signal.read()

    def _publish(self, generation: int) -> None:
        self._signal.publish(generation)


def new_key(
    name: str,
    expires_in_s: float | None,
    policies: tuple[str, ...],
    routes: tuple[str, ...],
    now: int,
) -> tuple[ApiKey, str, dict[str, Any]]:
    """A checked new key, its secret and the record to store (every backend's)."""
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
        raise InvalidArgument(f"an API key needs a name of 1 to {MAX_NAME} characters")
    if expires_in_s is not None and expires_in_s <= 0:
        raise InvalidArgument("an API key's expiry must be in the future")
    for r in routes:
        if not r.startswith("/"):
            raise InvalidArgument(f"a key's route is a route path starting with '/': {r!r}")
    key = ApiKey(
        id=secrets.token_hex(6),
        name=name.strip(),
        created_ms=now,
        expires_ms=now + int(expires_in_s * 1000) if expires_in_s else 0,
        policies=tuple(policies),
        routes=tuple(routes),
    )
    secret = secrets.token_urlsafe(32)
    return key, secret, {**key.to_dict(), "hash": _hash(secret)}


def check_token(token: str, raw: bytes | None) -> ApiKey | None:
    """The key stored as ``raw`` if ``token`` is its text (compared in constant time)."""
    parts = split_key(token)
    if parts is None or raw is None:
        return None
    record = msgpack.unpackb(raw)
    if not hmac.compare_digest(str(record.get("hash", "")), _hash(parts[1])):
        return None
    return record_key(record)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _bump(txn: Any, db: Any) -> int:
    raw = txn.get(_GENERATION, db=db)
    generation = (int(raw) if raw else 0) + 1
    txn.put(_GENERATION, str(generation).encode(), db=db)
    return generation


def record_key(record: dict[str, Any]) -> ApiKey:
    return ApiKey(
        id=str(record["id"]),
        name=str(record["name"]),
        created_ms=int(record["created_ms"]),
        expires_ms=int(record.get("expires_ms") or 0),
        revoked_ms=int(record.get("revoked_ms") or 0),
        policies=tuple(record.get("policies") or ()),
        routes=tuple(record.get("routes") or ()),
    )
