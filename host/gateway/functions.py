"""The function routes: an HTTP request in, the ``http`` event out, the response back.

``FunctionRoutes`` is a raw ASGI app (see ``asgi.py``): a route without gateway
policies, the common case, goes from the scope to the invoker and back to ``send``
without a Starlette object. A route with policies (or a workflow route) builds a
Starlette ``Request`` for its chain, which needs one anyway; both ways make the same
event from the same code. The request body is read as a stream and refused with 413
as soon as it passes the function's cap (or at once, from Content-Length).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from host.common.ids import new_id
from host.errors import InvalidRequest, NimbusError
from host.gateway.asgi import (
    REQUEST_ID,
    Answer,
    has_body,
    http_event,
    read_body,
    request_headers,
    request_path,
    response_headers,
    send_response,
)
from host.gateway.errors import error_response
from host.gateway.invoker import Invoker
from host.gateway.json_body import parse_json
from host.gateway.policies.chain import GatewayPolicies, Guard
from host.gateway.routing import Match, RouteTable
from host.platform.registry import Registry

WORKFLOW_INPUT_BYTES = 1024 * 1024


class FunctionRoutes:
    """The ASGI app behind every path outside ``/_admin`` and ``/_console``."""

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
        """The route table (and policy chains), compiled once per deployment generation."""
        generation = self._registry.generation()
        if generation != self._generation:
            routes = self._registry.routes()
            if self._policies is not None:
                self._policies.compile(routes)
            self._table = RouteTable(routes)
            self._generation = generation
        return self._table

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = request_headers(scope)
        request_id = headers.get(REQUEST_ID) or new_id("req")
        try:
            await self._serve(scope, receive, send, headers, request_id)
        except Exception as err:
            await error_response(err, request_id)(scope, receive, send)

    def direct(self, scope: Scope, body: bytes) -> Answer | ASGIApp | None:
        """The answer to a request for a route without policies whose function runs
        inline, given its whole body, without an ``await`` (``asgi.Direct``); None for
        every other request, before anything ran."""
        method: str = scope["method"]
        if method == "HEAD" or method == "OPTIONS":
            return None
        path = request_path(scope)
        found = self.table().match(method, path)
        if not isinstance(found, Match) or found.route.workflow:
            return None
        function = found.route.function
        policies = self._policies
        if policies is not None and policies.chain(found.route) is not None:
            return None
        try:  # one lookup for the whole request: its cap, its inline status, its run
            dep = self._registry.get(function)
        except NimbusError:
            return None  # answered the ASGI way, with its message
        spec = dep.spec
        # not (yet) run inline, or a body over the cap (refused the ASGI way, with its
        # message): the ASGI way
        if not self._invoker.runs_inline(function, spec) or len(body) > spec.max_request_bytes:
            return None
        headers = request_headers(scope)
        rid = headers.get(REQUEST_ID) or new_id("req")
        try:
            event = http_event(scope, headers, path, found.params, body)
            result = self._invoker.try_inline(function, event, rid, dep)
        except Exception as err:
            return error_response(err, rid)
        if result is None:  # it runs again in a thread, the ASGI way
            return None
        out = result.response
        status: int = out["status"]
        if not has_body(status):  # framed the ASGI way
            return _sent(status, out["headers"], rid)
        return status, response_headers(status, out["headers"], out["body"], rid), out["body"]

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str], rid: str
    ) -> None:
        method: str = scope["method"]
        path = request_path(scope)
        table = self.table()
        policies = self._policies
        if (
            method == "OPTIONS"
            and policies is not None
            and "access-control-request-method" in headers
        ):
            preflight = policies.preflight(table, Request(scope, receive), rid)
            if preflight is not None:
                return await preflight(scope, receive, send)
        found = table.match(method, path)
        if found is None:
            return await _plain(404, "no route matches this path", rid)(scope, receive, send)
        if isinstance(found, list):
            resp = _plain(405, f"method not allowed; allowed: {', '.join(found)}", rid)
            resp.headers["allow"] = ", ".join(found)
            return await resp(scope, receive, send)
        chain = policies.chain(found.route) if policies is not None else None
        if chain is None and not found.route.workflow:  # the fast path: no Starlette object
            function = found.route.function
            cap = self._registry.get(function).spec.max_request_bytes
            body = await read_body(receive, headers, cap)
            event = http_event(scope, headers, path, found.params, body)
            out = (await self._invoker.invoke(function, event, rid)).response
            return await send_response(send, out["status"], out["headers"], out["body"], rid)
        request = Request(scope, receive)
        if chain is not None:
            response = await chain.serve(request, found, rid, self._dispatch)
        else:
            response = await self._dispatch(request, found, rid, None)
        await response(scope, receive, send)

    async def _dispatch(
        self, request: Request, found: Match, request_id: str, guard: Guard | None
    ) -> Response:
        """Run the route's function (or start its workflow); ``guard`` is the route's
        policies' say on the event and the response."""
        if found.route.workflow:
            return await self._start(found, request, request_id, guard)
        cap = self._registry.get(found.route.function).spec.max_request_bytes
        event = await _request_event(request, found, cap)
        if guard is not None:
            event = guard.event(event)
        result = await self._invoker.invoke(found.route.function, event, request_id)
        out = result.response if guard is None else guard.response(result.response)
        return _http_response(out, request_id)

    async def _start(
        self, found: Match, request: Request, request_id: str, guard: Guard | None
    ) -> Response:
        """A workflow route: the JSON body (plus the path params) is the run's input;
        an ``idempotency-key`` header makes a retried request return the first run."""
        if self._start_workflow is None:
            raise InvalidRequest("this server does not run workflows")
        if guard is None:
            body = await read_body(request.receive, _headers(request), WORKFLOW_INPUT_BYTES)
        else:
            event = guard.event(await _request_event(request, found, WORKFLOW_INPUT_BYTES))
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


def _headers(request: Request) -> dict[str, str]:
    return request_headers(request.scope)


async def _request_event(request: Request, match: Match, cap: int) -> dict[str, Any]:
    """The event of a request that went through a policy chain (same as the fast path's)."""
    headers = _headers(request)
    body = await read_body(request.receive, headers, cap)
    return http_event(request.scope, headers, request_path(request.scope), match.params, body)


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


def _sent(status: int, headers: dict[str, str], request_id: str) -> ASGIApp:
    """An app that sends a response whose status has no body."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send_response(send, status, headers, b"", request_id)

    return app
