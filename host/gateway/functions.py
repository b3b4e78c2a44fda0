"""The function routes: an HTTP request in, the ``http`` event out, the response back.

The request body is read as a stream and refused with 413 as soon as it passes the
function's cap (or at once, from Content-Length), before it is buffered whole.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response

from host.common.ids import new_id
from host.errors import InvalidRequest, PayloadTooLarge
from host.gateway.errors import error_response
from host.gateway.invoker import Invoker
from host.gateway.json_body import parse_json
from host.gateway.policies.chain import GatewayPolicies, Guard
from host.gateway.routing import Match, RouteTable
from host.platform.registry import Registry

REQUEST_ID = "x-request-id"
WORKFLOW_INPUT_BYTES = 1024 * 1024


class FunctionRoutes:
    """The ASGI endpoint behind every path outside ``/_admin``."""

    def __init__(
        self,
        registry: Registry,
        invoker: Invoker,
        start_workflow: Callable[[str, Any, str | None], dict[str, Any]] | None = None,
        policies: GatewayPolicies | None = None,
    ) -> None:
        self._registry = registry
        self._invoker = invoker
        self._start_workflow = start_workflow
        self._policies = policies
        self._generation = -1
        self._table = RouteTable([])

    def table(self) -> RouteTable:
        generation = self._registry.generation()
        if generation != self._generation:
            routes = self._registry.routes()
            if self._policies is not None:
                self._policies.compile(routes)
            self._table = RouteTable(routes)
            self._generation = generation
        return self._table

    async def handle(self, request: Request) -> Response:
        request_id = request.headers.get(REQUEST_ID) or new_id("req")
        try:
            if (
                request.method == "OPTIONS"
                and self._policies is not None
                and "access-control-request-method" in request.headers
            ):
                preflight = self._policies.preflight(self.table(), request, request_id)
                if preflight is not None:
                    return preflight
            found = self.table().match(request.method, request.url.path)
            if found is None:
                return _plain(404, "no route matches this path", request_id)
            if isinstance(found, list):
                resp = _plain(405, f"method not allowed; allowed: {', '.join(found)}", request_id)
                resp.headers["allow"] = ", ".join(found)
                return resp
            chain = self._policies.chain(found.route) if self._policies is not None else None
            if chain is not None:
                return await chain.serve(request, found, request_id, self._dispatch)
            return await self._dispatch(request, found, request_id, None)
        except Exception as err:
            return error_response(err, request_id)

    async def _dispatch(
        self, request: Request, found: Match, request_id: str, guard: Guard | None
    ) -> Response:
        """Run the route's function (or start its workflow); ``guard`` is the route's
        policies' say on the event and the response."""
        if found.route.workflow:
            return await self._start(found, request, request_id, guard)
        cap = self._registry.get(found.route.function).spec.max_request_bytes
        event = await _http_event(request, found, cap)
        if guard is None:
            result = await self._invoker.invoke(found.route.function, event, request_id)
            return _http_response(result.response, request_id)
        result = await self._invoker.invoke(found.route.function, guard.event(event), request_id)
        return _http_response(guard.response(result.response), request_id)

    async def _start(
        self, found: Match, request: Request, request_id: str, guard: Guard | None
    ) -> Response:
        """A workflow route: the JSON body (plus the path params) is the run's input;
        an ``idempotency-key`` header makes a retried request return the first run."""
        if self._start_workflow is None:
            raise InvalidRequest("this server does not run workflows")
        if guard is None:
            body = await _read_body(request, WORKFLOW_INPUT_BYTES)
        else:
            event = guard.event(await _http_event(request, found, WORKFLOW_INPUT_BYTES))
            body = event["body"]
        value = parse_json(body, "a workflow route's JSON body") if body else {}
        if isinstance(value, dict) and found.params:
            value = {**found.params, **value}
        key = request.headers.get("idempotency-key")
        start = self._start_workflow
        run = await anyio.to_thread.run_sync(lambda: start(found.route.workflow, value, key))
        payload = {"run_id": run["id"], "workflow": run["workflow"], "status": run["status"]}
        return Response(
            json.dumps(payload),
            status_code=202,
            media_type="application/json",
            headers={REQUEST_ID: request_id, "location": f"/_admin/runs/{run['id']}"},
        )


async def _http_event(request: Request, match: Match, cap: int) -> dict[str, Any]:
    body = await _read_body(request, cap)
    headers: dict[str, str] = {}
    for k, v in request.headers.items():
        headers[k] = f"{headers[k]},{v}" if k in headers else v
    query: dict[str, str] = {}
    for k, v in request.query_params.multi_items():
        query[k] = f"{query[k]},{v}" if k in query else v
    return {
        "kind": "http",
        "method": request.method,
        "path": request.url.path,
        "params": match.params,
        "query": query,
        "raw_query": request.url.query,
        "headers": headers,
        "body": body,
    }


async def _read_body(request: Request, cap: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise PayloadTooLarge(f"request body is {declared} bytes; this route accepts at most {cap}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise PayloadTooLarge(f"request body is over {cap} bytes, this route's limit")
        chunks.append(chunk)
    return b"".join(chunks)


def _http_response(response: dict[str, Any], request_id: str) -> Response:
    """The HTTP response for a function's response, which the runtime checked and
    converted before the invocation committed (host/runtime/response.py): status,
    headers and the exact body bytes. The server sets content-length itself."""
    headers = dict(response["headers"])
    headers[REQUEST_ID] = request_id
    return Response(response["body"], status_code=response["status"], headers=headers)


def _plain(status: int, message: str, request_id: str) -> Response:
    body = {
        "error": {
            "kind": "RouteNotFound" if status == 404 else "MethodNotAllowed",
            "message": message,
            "request_id": request_id,
        }
    }
    return Response(
        json.dumps(body),
        status_code=status,
        headers={"content-type": "application/json", REQUEST_ID: request_id},
    )
