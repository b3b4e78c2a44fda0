"""Blob buckets on real LMDB: put with type and metadata, whole and ranged reads across
chunks, head, delete, listing by prefix in pages, and the size cap."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from host.errors import TooLarge
from host.services.blobs import CHUNK_BYTES, BlobInfo
from host.services.services import Services
from tests.conftest import open_services

CAP = 3 * CHUNK_BYTES


@pytest.fixture
def services(backend: str, tmp_path: Path) -> Iterator[Services]:
    s = open_services(backend, tmp_path / "db", map_size=1 << 20, max_object_bytes=CAP)
    yield s
    s.close()


def put(s: Services, key: bytes, data: bytes, content_type: str = "application/x") -> BlobInfo:
    e = s.begin("test")
    info = e.blob_put("b", key, data, content_type, {"owner": "ann"})
    assert e.commit()
    return info


def listing(s: Services, prefix: bytes, limit: int) -> list[bytes]:
    keys: list[bytes] = []
    cursor: bytes | None = b""
    while cursor is not None:
        with s.begin("test") as e:
            infos, cursor = e.blob_list("b", prefix, cursor, limit)
        assert len(infos) <= limit
        keys += [i.key for i in infos]
    return keys


def test_put_head_get_delete(services: Services) -> None:
    before = int(time.time() * 1000)
    info = put(services, b"a/1.txt", b"hello", "text/plain")
    assert info.etag == hashlib.sha256(b"hello").hexdigest() and info.size == 5
    with services.begin("test") as e:
        head = e.blob_head("b", b"a/1.txt")
        found = e.blob_get("b", b"a/1.txt")
    assert head is not None and found is not None
    assert (head.size, head.content_type, head.metadata) == (5, "text/plain", {"owner": "ann"})
    assert head.etag == info.etag and head.modified_ms >= before
    assert found == (b"hello", head)
    e = services.begin("test")
    assert e.blob_delete("b", b"a/1.txt") is True
    assert e.blob_delete("b", b"nothing") is False
    e.commit()
    with services.begin("test") as e:
        assert e.blob_head("b", b"a/1.txt") is None and e.blob_get("b", b"a/1.txt") is None


def test_large_object_in_chunks_and_ranges(services: Services) -> None:
    data = os.urandom(2 * CHUNK_BYTES + 12345)
    put(services, b"big", data)
    with services.begin("test") as e:
        whole = e.blob_get("b", b"big")
        assert whole is not None and whole[0] == data
        for start, end in [
            (0, 10),
            (CHUNK_BYTES - 5, CHUNK_BYTES + 5),  # across a chunk boundary
            (CHUNK_BYTES, 2 * CHUNK_BYTES),  # exactly one chunk
            (10, 2 * CHUNK_BYTES + 100),  # three chunks
            (len(data) - 3, len(data) + 1000),  # end clamped
            (len(data) + 5, len(data) + 10),  # past the end: empty
        ]:
            part = e.blob_get("b", b"big", start, end)
            assert part is not None and part[0] == data[start:end], (start, end)


def test_replacing_a_large_object_with_a_small_one_leaves_no_stale_chunks(
    services: Services,
) -> None:
    put(services, b"k", os.urandom(2 * CHUNK_BYTES + 1))
    put(services, b"k", b"small")
    with services.storage.read() as txn:
        if hasattr(txn, "cursor"):  # LMDB
            chunks = [k for k, _ in txn.cursor(db=services.blobs.chunks)]
        else:
            chunks = txn.execute("SELECT idx FROM blob_chunks").fetchall()
        found = services.blobs.get(txn, "b", b"k")
    assert len(chunks) == 1 and found is not None and found[0] == b"small"


def test_an_object_over_the_cap_is_refused_whole(services: Services) -> None:
    put(services, b"exact", b"x" * CAP)  # the cap itself is allowed
    e = services.begin("test")
    e.kv_put("t", b"k", b"\x01")
    with pytest.raises(TooLarge, match=f"at most {CAP} bytes"):
        e.blob_put("b", b"over", b"x" * (CAP + 1), "application/x", {})
    assert e.blob_head("b", b"over") is None  # nothing staged
    e.discard()
    with services.storage.read() as txn:
        assert services.blobs.head(txn, "b", b"over") is None


def test_list_by_prefix_in_pages(services: Services) -> None:
    keys = [b"img/a.png", b"img/b.png", b"img/c/d.png", b"imgs", b"doc/x", b"img0"]
    for k in keys:
        put(services, k, k)
    assert listing(services, b"img/", 2) == [b"img/a.png", b"img/b.png", b"img/c/d.png"]
    assert listing(services, b"", 4) == sorted(keys)
    with services.begin("test") as e:
        infos, cursor = e.blob_list("b", b"img", b"", 2)
    assert [i.key for i in infos] == [b"img/a.png", b"img/b.png"] and cursor == b"img/c/d.png"


def test_buckets_are_separate(services: Services) -> None:
    e = services.begin("test")
    e.blob_put("one", b"k", b"1", "text/plain", {})
    e.blob_put("one.two", b"k", b"2", "text/plain", {})
    e.commit()
    with services.begin("test") as e:
        assert [i.key for i in e.blob_list("one", b"", b"", 10)[0]] == [b"k"]
        found = e.blob_get("one.two", b"k")
        assert found is not None and found[0] == b"2"
