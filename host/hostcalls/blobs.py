"""The bucket imports: ``blob_put``, ``blob_get``, ``blob_head``, ``blob_delete``,
``blob_list``."""

from __future__ import annotations

from typing import Any

from host.errors import InvalidArgument
from host.hostcalls import fields as f
from host.hostcalls.context import ServiceAccess
from host.hostcalls.wire import SMALL_REQUEST_BYTES, Operation
from host.services.blobs import MAX_OBJECT_BYTES
from host.services.keys import check_key


def blob_put(a: ServiceAccess, req: dict[str, Any]) -> Any:
    bucket = f.name(req, "bucket")
    a.check("buckets", bucket, write=True)
    data = req.get("data")
    if not isinstance(data, bytes):
        raise InvalidArgument("'data' must be bytes (msgpack bin)")
    content_type = req.get("content_type") or "application/octet-stream"
    metadata = req.get("metadata") or {}
    if not isinstance(content_type, str) or not isinstance(metadata, dict):
        raise InvalidArgument("'content_type' must be a string and 'metadata' a map")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise InvalidArgument("'metadata' must map strings to strings")
    key = check_key(req.get("key"))
    meta_bytes = sum(len(k) + len(v) for k, v in metadata.items())
    a.charge(len(key) + len(data) + len(content_type) + meta_bytes)
    info = a.effects.blob_put(bucket, key, data, content_type, metadata, a.traceparent())
    return {"size": info.size, "etag": info.etag}


def blob_get(a: ServiceAccess, req: dict[str, Any]) -> Any:
    bucket = f.name(req, "bucket")
    a.check("buckets", bucket, write=False)
    found = a.effects.blob_get(
        bucket, check_key(req.get("key")), f.opt_int(req, "start", 0) or 0, f.opt_int(req, "end")
    )
    if found is None:
        return None
    data, info = found
    return {"data": data, **info.to_dict()}


def blob_head(a: ServiceAccess, req: dict[str, Any]) -> Any:
    bucket = f.name(req, "bucket")
    a.check("buckets", bucket, write=False)
    info = a.effects.blob_head(bucket, check_key(req.get("key")))
    return None if info is None else info.to_dict()


def blob_delete(a: ServiceAccess, req: dict[str, Any]) -> Any:
    bucket = f.name(req, "bucket")
    a.check("buckets", bucket, write=True)
    key = check_key(req.get("key"))
    a.charge(len(key))
    return {"deleted": a.effects.blob_delete(bucket, key, a.traceparent())}


def blob_list(a: ServiceAccess, req: dict[str, Any]) -> Any:
    bucket = f.name(req, "bucket")
    a.check("buckets", bucket, write=False)
    prefix = f.opt_bytes(req, "prefix") or b""
    start = f.opt_bytes(req, "cursor") or b""
    infos, cursor = a.effects.blob_list(bucket, prefix, start, f.limit(req))
    items = [
        {"key": i.key, "size": i.size, "etag": i.etag, "modified_ms": i.modified_ms} for i in infos
    ]
    return {"items": items, "cursor": cursor}


OPERATIONS = (
    Operation("blob_put", blob_put, MAX_OBJECT_BYTES + SMALL_REQUEST_BYTES),
    Operation("blob_get", blob_get),
    Operation("blob_head", blob_head),
    Operation("blob_delete", blob_delete),
    Operation("blob_list", blob_list),
)
