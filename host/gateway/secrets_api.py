"""The admin API of secrets: list names and dates, set (or rotate) one, remove one.

``PUT /_admin/secrets/{name}`` takes the value as the raw request body, so it never
appears in a URL or a log line; no endpoint ever answers a value.
"""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from host.errors import InvalidRequest
from host.services.secrets import MAX_SECRET_BYTES, Secrets

SECRETS_OPENAPI: dict[str, Any] = {
    "/_admin/secrets": {
        "get": {
            "summary": "Secret names with their creation and update times (never values)",
            "responses": {"200": {"description": "the secrets"}},
        }
    },
    "/_admin/secrets/{name}": {
        "parameters": [
            {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
        ],
        "put": {
            "summary": "Set or rotate a secret; the request body is the value",
            "requestBody": {"content": {"application/octet-stream": {"schema": {}}}},
            "responses": {"200": {"description": "name and dates"}},
        },
        "delete": {"summary": "Remove a secret", "responses": {"204": {"description": "removed"}}},
    },
}


class SecretsApi:
    """Routes under ``/_admin/secrets``."""

    def __init__(self, secrets: Secrets) -> None:
        self.secrets = secrets

    def routes(self, guard: Any) -> list[Route]:
        return [
            Route("/secrets", guard(self.list), methods=["GET"]),
            Route("/secrets/{name}", guard(self.put), methods=["PUT"]),
            Route("/secrets/{name}", guard(self.delete), methods=["DELETE"]),
        ]

    async def list(self, request: Request) -> Response:
        items = await anyio.to_thread.run_sync(self.secrets.list)
        return JSONResponse({"secrets": [i.to_dict() for i in items]})

    async def put(self, request: Request) -> Response:
        name = request.path_params["name"]
        value = await request.body()
        if not value:
            raise InvalidRequest("the request body is the secret's value; it is empty")
        if len(value) > MAX_SECRET_BYTES:
            raise InvalidRequest(f"a secret is at most {MAX_SECRET_BYTES} bytes")
        info = await anyio.to_thread.run_sync(lambda: self.secrets.set(name, value))
        return JSONResponse(info.to_dict())

    async def delete(self, request: Request) -> Response:
        name = request.path_params["name"]
        await anyio.to_thread.run_sync(lambda: self.secrets.delete(name))
        return Response(status_code=204)
