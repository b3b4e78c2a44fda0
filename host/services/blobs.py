"""Blob buckets: objects with a content type and user metadata, read whole or by range.

An object's bytes are stored in 1 MiB chunks (their own database), its metadata in
another. Why chunks rather than one value: LMDB keeps a value larger than a page in
one run of contiguous overflow pages, so a 64 MiB value needs 16 384 free pages in a
row, which a fragmented free list rarely has (the file grows instead) and which a
range read would copy whole; with 1 MiB chunks a range read touches only the chunks
it needs and freed space is reused. The largest object is ``max_object_bytes``
(``MAX_OBJECT_BYTES``, 64 MiB, unless the platform sets another); a bigger one is
refused with ``TooLarge`` when staged, before anything is written.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from typing import Any

import msgpack
from msgspec import Struct, field

from host.errors import TooLarge
from host.services.keys import scoped, unscoped
from host.services.storage import Storage

CHUNK_BYTES = 1024 * 1024
MAX_OBJECT_BYTES = 64 * 1024 * 1024
_INDEX = struct.Struct(">I")


class BlobInfo(Struct, frozen=True):
    """What ``head`` returns: everything about an object but its bytes."""

    key: bytes
    size: int
    content_type: str
    etag: str
    modified_ms: int
    metadata: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "content_type": self.content_type,
            "metadata": self.metadata,
            "etag": self.etag,
            "modified_ms": self.modified_ms,
        }


def make_info(
    key: bytes, data: bytes, content_type: str, metadata: dict[str, str], now_ms: int
) -> BlobInfo:
    return BlobInfo(
        key, len(data), content_type, hashlib.sha256(data).hexdigest(), now_ms, metadata
    )


def check_size(size: int, cap: int) -> None:
    if size > cap:
        raise TooLarge(f"an object is at most {cap} bytes; this one is {size}")


class Blobs:
    """Buckets of objects in two LMDB databases (metadata, chunks)."""

    def __init__(self, storage: Storage, max_object_bytes: int = MAX_OBJECT_BYTES) -> None:
        self.meta = storage.db(b"blob_meta")
        self.chunks = storage.db(b"blob_chunks")
        self.max_object_bytes = max_object_bytes

    def head(self, txn: Any, bucket: str, key: bytes) -> BlobInfo | None:
        raw = txn.get(scoped(bucket, key), db=self.meta)
        return None if raw is None else _info(key, raw)

    def get(
        self, txn: Any, bucket: str, key: bytes, start: int = 0, end: int | None = None
    ) -> tuple[bytes, BlobInfo] | None:
        """The bytes ``start:end`` of an object (end exclusive, clamped) and its info."""
        info = self.head(txn, bucket, key)
        if info is None:
            return None
        end = info.size if end is None else min(end, info.size)
        start = min(max(start, 0), end)
        parts = []
        base = scoped(bucket, key) + b"\x00"
        for index in range(start // CHUNK_BYTES, (end + CHUNK_BYTES - 1) // CHUNK_BYTES):
            chunk = txn.get(base + _INDEX.pack(index), db=self.chunks) or b""
            lo = max(start - index * CHUNK_BYTES, 0)
            hi = min(end - index * CHUNK_BYTES, CHUNK_BYTES)
            parts.append(chunk[lo:hi])
        return b"".join(parts), info

    def put(self, txn: Any, bucket: str, info: BlobInfo, data: bytes) -> None:
        check_size(len(data), self.max_object_bytes)
        self.delete(txn, bucket, info.key)
        base = scoped(bucket, info.key) + b"\x00"
        for index in range(0, (len(data) + CHUNK_BYTES - 1) // CHUNK_BYTES):
            piece = data[index * CHUNK_BYTES : (index + 1) * CHUNK_BYTES]
            txn.put(base + _INDEX.pack(index), piece, db=self.chunks)
        record = msgpack.packb(
            [info.size, info.content_type, info.metadata, info.etag, info.modified_ms]
        )
        txn.put(scoped(bucket, info.key), record, db=self.meta)

    def delete(self, txn: Any, bucket: str, key: bytes) -> bool:
        info = self.head(txn, bucket, key)
        if info is None:
            return False
        base = scoped(bucket, key) + b"\x00"
        for index in range((info.size + CHUNK_BYTES - 1) // CHUNK_BYTES):
            txn.delete(base + _INDEX.pack(index), db=self.chunks)
        txn.delete(scoped(bucket, key), db=self.meta)
        return True

    def infos(self, txn: Any, bucket: str, start: bytes) -> Iterator[BlobInfo]:
        """Every object from key ``start`` on, in key order."""
        stop = scoped(bucket)[:-1] + b"\x01"
        cur = txn.cursor(db=self.meta)
        if not cur.set_range(scoped(bucket, start)):
            return
        for full, raw in cur:
            if full >= stop:
                return
            yield _info(unscoped(bucket, full), raw)


def _info(key: bytes, raw: bytes) -> BlobInfo:
    size, content_type, metadata, etag, modified_ms = msgpack.unpackb(raw)
    return BlobInfo(key, size, content_type, etag, modified_ms, metadata)
