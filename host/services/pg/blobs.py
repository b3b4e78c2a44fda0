"""Blob buckets on PostgreSQL: the ``BlobStore`` of ``blobs.py``.

An object's metadata is one row of ``blob_meta``; its bytes are 1 MiB rows of
``blob_chunks`` (``CHUNK_BYTES``, as on LMDB), so a range read fetches only the
chunks it needs and no value nears PostgreSQL's 1 GB field limit. The same cap
(``max_object_bytes``) is checked before anything is written.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgpack

from host.services.blobs import CHUNK_BYTES, MAX_OBJECT_BYTES, BlobInfo, check_size
from host.services.pg.store import Tx
from host.services.pg.tables import key_lock

_COLUMNS = "key, size, content_type, metadata, etag, modified_ms"
#: objects listed per round trip
LIST_PAGE = 128


class PgBlobs:
    """Buckets in ``blob_meta`` and ``blob_chunks``."""

    def __init__(self, max_object_bytes: int = MAX_OBJECT_BYTES) -> None:
        self.max_object_bytes = max_object_bytes

    def head(self, txn: Tx, bucket: str, key: bytes) -> BlobInfo | None:
        if txn.writing:
            txn.lock(key_lock("blob", bucket, key))
        row = txn.execute(
            f"SELECT {_COLUMNS} FROM blob_meta WHERE bucket = %s AND key = %s", (bucket, key)
        ).fetchone()
        return None if row is None else _info(row)

    def get(
        self, txn: Tx, bucket: str, key: bytes, start: int = 0, end: int | None = None
    ) -> tuple[bytes, BlobInfo] | None:
        """The bytes ``start:end`` of an object (end exclusive, clamped) and its info."""
        info = self.head(txn, bucket, key)
        if info is None:
            return None
        end = info.size if end is None else min(end, info.size)
        start = min(max(start, 0), end)
        first, last = start // CHUNK_BYTES, (end + CHUNK_BYTES - 1) // CHUNK_BYTES
        rows = txn.execute(
            "SELECT idx, data FROM blob_chunks WHERE bucket = %s AND key = %s"
            " AND idx >= %s AND idx < %s ORDER BY idx",
            (bucket, key, first, last),
        ).fetchall()
        chunks = {int(i): bytes(d) for i, d in rows}
        parts = []
        for index in range(first, last):
            chunk = chunks.get(index, b"")
            lo = max(start - index * CHUNK_BYTES, 0)
            hi = min(end - index * CHUNK_BYTES, CHUNK_BYTES)
            parts.append(chunk[lo:hi])
        return b"".join(parts), info

    def put(self, txn: Tx, bucket: str, info: BlobInfo, data: bytes) -> None:
        check_size(len(data), self.max_object_bytes)
        self.delete(txn, bucket, info.key)
        for index in range(0, (len(data) + CHUNK_BYTES - 1) // CHUNK_BYTES):
            piece = data[index * CHUNK_BYTES : (index + 1) * CHUNK_BYTES]
            txn.execute(
                "INSERT INTO blob_chunks (bucket, key, idx, data) VALUES (%s, %s, %s, %s)",
                (bucket, info.key, index, piece),
            )
        txn.execute(
            f"INSERT INTO blob_meta (bucket, {_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (
                bucket,
                info.key,
                info.size,
                info.content_type,
                msgpack.packb(info.metadata),
                info.etag,
                info.modified_ms,
            ),
        )

    def delete(self, txn: Tx, bucket: str, key: bytes) -> bool:
        if txn.writing:
            txn.lock(key_lock("blob", bucket, key))
        txn.execute("DELETE FROM blob_chunks WHERE bucket = %s AND key = %s", (bucket, key))
        gone = txn.execute(
            "DELETE FROM blob_meta WHERE bucket = %s AND key = %s", (bucket, key)
        ).rowcount
        return bool(gone)

    def infos(self, txn: Tx, bucket: str, start: bytes) -> Iterator[BlobInfo]:
        """Every object from key ``start`` on, in key order (a page per round trip)."""
        op = ">="
        while True:
            rows = txn.execute(
                f"SELECT {_COLUMNS} FROM blob_meta WHERE bucket = %s AND key {op} %s"
                " ORDER BY key LIMIT %s",
                (bucket, start, LIST_PAGE),
            ).fetchall()
            for row in rows:
                yield _info(row)
            if len(rows) < LIST_PAGE:
                return
            start, op = bytes(rows[-1][0]), ">"


def _info(row: Any) -> BlobInfo:
    key, size, content_type, metadata, etag, modified_ms = row
    return BlobInfo(
        bytes(key), int(size), content_type, etag, int(modified_ms), msgpack.unpackb(metadata)
    )
