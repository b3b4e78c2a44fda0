"""The console's static files, read and gzipped once, served from memory.

A first load must be light and quick even on a busy host: every file under
``static/`` is compressed at start-up (no per-request gzip, no file I/O), and pages
link to it as ``/static/PATH?v=HASH`` so a browser may cache it for good (a changed
file gets a new URL).
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
from pathlib import Path

from msgspec import Struct
from starlette.requests import Request
from starlette.responses import Response

IMMUTABLE = "public, max-age=31536000, immutable"


class Asset(Struct, frozen=True):
    """One static file: its bytes, gzipped bytes, media type and content hash."""

    data: bytes
    gzipped: bytes
    media_type: str
    etag: str


class Assets:
    """Every file under ``root``, by its path relative to it."""

    def __init__(self, root: Path, prefix: str) -> None:
        self._prefix = prefix
        self._files: dict[str, Asset] = {}
        for path in sorted(root.rglob("*")):
            if path.is_file():
                data = path.read_bytes()
                media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
                if media.startswith("text/") or media.endswith("javascript"):
                    media += "; charset=utf-8"
                digest = hashlib.sha256(data).hexdigest()[:16]
                asset = Asset(data, gzip.compress(data, 9, mtime=0), media, digest)
                self._files[path.relative_to(root).as_posix()] = asset

    def url(self, path: str) -> str:
        """The URL of ``path`` with its content hash (KeyError: no such file)."""
        return f"{self._prefix}/static/{path}?v={self._files[path].etag}"

    async def serve(self, request: Request) -> Response:
        asset = self._files.get(request.path_params["path"])
        if asset is None:
            return Response("no such file", 404, media_type="text/plain")
        headers = {"etag": f'"{asset.etag}"', "cache-control": IMMUTABLE, "vary": "accept-encoding"}
        if request.headers.get("if-none-match") == headers["etag"]:
            return Response(status_code=304, headers=headers)
        if "gzip" in request.headers.get("accept-encoding", ""):
            headers["content-encoding"] = "gzip"
            return Response(asset.gzipped, media_type=asset.media_type, headers=headers)
        return Response(asset.data, media_type=asset.media_type, headers=headers)
