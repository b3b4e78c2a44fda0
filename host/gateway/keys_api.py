"""The admin API of gateway API keys: create (the key's text is shown once), list, revoke.

``POST /_admin/keys`` takes ``{"name": …, "expires": "30d", "policies": [...],
"routes": [...]}`` (all but ``name`` optional) and answers the record with the key's
text under ``api_key``; nothing can show that text again. ``GET /_admin/keys`` lists
the records (never a secret or its hash); ``DELETE /_admin/keys/{id}`` revokes one.
"""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from host.common.units import parse_duration
from host.errors import InvalidRequest
from host.gateway.json_body import parse_json
from host.services.interface import ApiKeyStore


class KeysApi:
    """Routes under ``/_admin/keys``."""

    def __init__(self, keys: ApiKeyStore) -> None:
        self.keys = keys

    def routes(self, guard: Any) -> list[Route]:
        return [
            Route("/keys", guard(self.list), methods=["GET"]),
            Route("/keys", guard(self.create), methods=["POST"]),
            Route("/keys/{key_id}", guard(self.revoke), methods=["DELETE"]),
        ]

    async def list(self, request: Request) -> Response:
        keys = await anyio.to_thread.run_sync(self.keys.list)
        return JSONResponse({"keys": [k.to_dict() for k in keys]})

    async def create(self, request: Request) -> Response:
        raw = await request.body()
        body = parse_json(raw, "the JSON body {'name': …}") if raw else {}
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            raise InvalidRequest("expected a JSON object with a 'name' (a string)")
        expires = body.get("expires")
        try:
            expires_s = parse_duration(expires) if expires is not None else None
        except ValueError as e:
            raise InvalidRequest(f"'expires': {e}") from None
        policies, routes = _names(body, "policies"), _names(body, "routes")
        key, text = await anyio.to_thread.run_sync(
            lambda: self.keys.create(body["name"], expires_s, policies, routes)
        )
        return JSONResponse({**key.to_dict(), "api_key": text}, status_code=201)

    async def revoke(self, request: Request) -> Response:
        key_id = request.path_params["key_id"]
        key = await anyio.to_thread.run_sync(lambda: self.keys.revoke(key_id))
        return JSONResponse(key.to_dict())


def _names(body: dict[str, Any], field: str) -> tuple[str, ...]:
    value = body.get(field) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidRequest(f"'{field}' must be a list of strings")
    return tuple(value)
