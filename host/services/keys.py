"""How service keys are laid out in LMDB, and the names services accept.

A record of a named table, bucket or queue lives under ``name + NUL + key``: names
cannot hold NUL, so one name's records form one contiguous, bytewise-ordered range.
"""

from __future__ import annotations

import re

from host.errors import InvalidArgument

SEP = b"\x00"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
MAX_KEY_BYTES = 480  # LMDB's key limit is 511 bytes, minus the name and separator


_valid_names: set[str] = set()


def check_name(kind: str, name: object) -> str:
    if name in _valid_names:  # on every service call: remember the names seen valid
        return str(name)
    if not isinstance(name, str) or not NAME.match(name):
        raise InvalidArgument(
            f"{kind} name {name!r} is invalid: use letters, digits, '_', '.', '-' "
            "(at most 128, starting with a letter or digit)"
        )
    if len(_valid_names) < 10_000:
        _valid_names.add(name)
    return name


def check_key(key: object) -> bytes:
    """A key as bytes: ``bytes`` as is, ``str`` as UTF-8; at most ``MAX_KEY_BYTES``."""
    if isinstance(key, str):
        key = key.encode()
    if not isinstance(key, bytes):
        raise InvalidArgument(f"a key must be bytes or a string, got {type(key).__name__}")
    if not key:
        raise InvalidArgument("a key cannot be empty")
    if len(key) > MAX_KEY_BYTES:
        raise InvalidArgument(f"a key is at most {MAX_KEY_BYTES} bytes, got {len(key)}")
    return key


def scoped(name: str, key: bytes = b"") -> bytes:
    return name.encode() + SEP + key


def unscoped(name: str, full: bytes) -> bytes:
    return full[len(name) + 1 :]


def successor(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with ``prefix`` (None: no end)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])
