"""The admin API's view of blob buckets: list, get, put and delete objects.

Writes go through the same staged effects as a guest's, so an object written by an
operator produces the same storage event as one written by a function.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from host.common.jsonable import jsonable
from host.errors import NotFound
from host.gateway.query import cursor_of, limit_of
from host.services.interface import ServiceSet
from host.services.keys import check_key, check_name
from host.telemetry.tracing import TraceparentOf, untraced


class BucketsApi:
    """Routes under ``/_admin/buckets``."""

    def __init__(
        self, services: ServiceSet, source: str, traceparent: TraceparentOf = untraced
    ) -> None:
        self.services = services
        self.source = source
        #: what a put or delete's storage event carries (the admin request's span)
        self._traceparent = traceparent

    def routes(self, guard: Any) -> list[Route]:
        objects = "/buckets/{bucket}/objects"
        return [
            Route(objects, guard(self.list), methods=["GET"]),
            Route(objects + "/{key:path}", guard(self.get), methods=["GET"]),
            Route(objects + "/{key:path}", guard(self.put), methods=["PUT"]),
            Route(objects + "/{key:path}", guard(self.delete), methods=["DELETE"]),
        ]

    async def list(self, request: Request) -> Response:
        q = request.query_params
        page = self.list_objects(
            request.path_params["bucket"], q.get("prefix", ""), q.get("cursor"), limit_of(q, 100)
        )
        return JSONResponse(page)

    def list_objects(
        self, bucket: str, prefix: str, cursor: str | None, limit: int
    ) -> dict[str, Any]:
        """One page of ``bucket``'s objects under ``prefix``: items and the next cursor."""
        bucket = check_name("bucket", bucket)
        start = cursor_of(cursor) if cursor else b""
        with self.services.begin(self.source) as effects:
            infos, nxt = effects.blob_list(bucket, prefix.encode(), start, min(limit, 1000))
        return {
            "items": [{"key": jsonable(i.key), **i.to_dict()} for i in infos],
            "cursor": nxt.hex() if nxt is not None else None,
        }

    async def get(self, request: Request) -> Response:
        bucket, key = _bucket_key(request)
        with self.services.begin(self.source) as effects:
            found = effects.blob_get(bucket, key)
        if found is None:
            raise NotFound(f"bucket {bucket} has no object {key.decode(errors='replace')!r}")
        data, info = found
        return Response(data, media_type=info.content_type, headers={"etag": info.etag})

    async def put(self, request: Request) -> Response:
        bucket, key = _bucket_key(request)
        data = await request.body()
        content_type = request.headers.get("content-type", "application/octet-stream")
        effects = self.services.begin(self.source)
        info = effects.blob_put(bucket, key, data, content_type, {}, self._traceparent())
        effects.commit()
        return JSONResponse({"size": info.size, "etag": info.etag}, status_code=201)

    async def delete(self, request: Request) -> Response:
        bucket, key = _bucket_key(request)
        effects = self.services.begin(self.source)
        deleted = effects.blob_delete(bucket, key, self._traceparent())
        effects.commit()
        return JSONResponse({"deleted": deleted})


def _bucket_key(request: Request) -> tuple[str, bytes]:
    bucket = check_name("bucket", request.path_params["bucket"])
    return bucket, check_key(request.path_params["key"])
