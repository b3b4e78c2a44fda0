"""The admin API under ``/_admin``: deploy, list, get, delete, invoke, routes, health.

Every endpoint but ``health``, ``ready`` and the OpenAPI document needs the bearer token. A
deploy is multipart: the ``module`` file (.wasm) and an optional ``config`` field
(JSON, the same keys as a ``[functions.NAME]`` table of nimbus.toml). The module is
validated and compiled before the registry switches to it, so a bad upload leaves the
running version serving.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from host.common.ids import new_id
from host.common.jsonable import jsonable
from host.errors import InvalidRequest, ManifestError, PayloadTooLarge
from host.gateway.auth import AdminAuth
from host.gateway.data_api import data_routes
from host.gateway.errors import error_response
from host.gateway.invoker import Invoker
from host.gateway.json_body import parse_json
from host.gateway.keys_api import KeysApi
from host.gateway.logs_api import LogsApi
from host.gateway.metrics_api import MetricsApi
from host.gateway.openapi import OPENAPI
from host.gateway.schedules_api import ScheduleSource
from host.gateway.secrets_api import SecretsApi
from host.gateway.usage_api import UsageApi
from host.gateway.workflow_api import WorkflowApi
from host.manifest.functions import MAX_MODULE_BYTES, function_spec_from_dict
from host.manifest.routes import Route as AppRoute
from host.manifest.routes import routes_from_list
from host.orchestrator.runner import WorkflowRunner
from host.platform.platform import Platform
from host.platform.registry import Deployment

#: what a deploy form may hold besides the module (its config, the part headers)
FORM_OVERHEAD_BYTES = 1024 * 1024


async def _capped(request: Request, cap: int) -> Request:
    """The request with its body read, refused with 413 as soon as it passes ``cap``
    bytes (from Content-Length, or while it streams in): Starlette's form parser
    spools a file part of any size to disk, and ``max_part_size`` does not apply to
    file parts."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise PayloadTooLarge(f"the deploy is {declared} bytes; at most {cap} are accepted")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > cap:
            raise PayloadTooLarge(f"the deploy is over {cap} bytes, the most accepted")
    data = bytes(body)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": data, "more_body": False}

    return Request(request.scope, receive)


class AdminApi:
    """Starlette routes of the admin API, bound to one platform."""

    def __init__(
        self,
        platform: Platform,
        invoker: Invoker,
        auth: AdminAuth,
        workflows: WorkflowRunner,
        schedules: ScheduleSource,
        ready: Callable[[], bool] = lambda: True,
    ) -> None:
        self.platform = platform
        #: whether the server's start-up work is done (its Python functions prepared)
        self.ready = ready
        self.invoker = invoker
        self.auth = auth
        self.workflows = workflows
        self.schedules = schedules

    def routes(self) -> list[Route]:
        guarded = self._guarded
        return [
            Route("/health", self.health, methods=["GET"]),
            Route("/ready", self.readiness, methods=["GET"]),
            Route("/openapi.json", self.openapi, methods=["GET"]),
            Route("/functions", guarded(self.list_functions), methods=["GET"]),
            Route("/functions/{name}", guarded(self.get_function), methods=["GET"]),
            Route("/functions/{name}", guarded(self.deploy), methods=["PUT"]),
            Route("/functions/{name}", guarded(self.delete_function), methods=["DELETE"]),
            Route("/functions/{name}/invoke", guarded(self.invoke), methods=["POST"]),
            Route("/routes", guarded(self.get_routes), methods=["GET"]),
            Route("/routes", guarded(self.put_routes), methods=["PUT"]),
            Route("/invocations", guarded(self.invocations), methods=["GET"]),
            *data_routes(self.platform, self.schedules, guarded),
            *WorkflowApi(self.workflows).routes(guarded),
            *KeysApi(self.platform.services.api_keys).routes(guarded),
            *SecretsApi(self.platform.secrets).routes(guarded),
            *UsageApi(self.platform).routes(guarded),
            *MetricsApi(self.platform).routes(guarded),
            *LogsApi(self.platform).routes(guarded),
        ]

    def _guarded(self, endpoint: Any) -> Any:
        async def wrapper(request: Request) -> Response:
            request_id = request.headers.get("x-request-id") or new_id("req")
            try:
                self.auth.check(request.headers.get("authorization"))
                response: Response = await endpoint(request)
            except Exception as err:
                return error_response(err, request_id)
            response.headers["x-request-id"] = request_id
            return response

        return wrapper

    async def readiness(self, request: Request) -> Response:
        """200 once the server's start-up work is done, 503 before (a readiness probe:
        a balancer then sends Python functions' traffic only to a prepared host)."""
        ready = self.ready()
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    async def health(self, request: Request) -> Response:
        return JSONResponse(
            {
                "status": "ok",
                "ready": self.ready(),
                "functions": len(self.platform.registry.list()),
                "pid": os.getpid(),
            }
        )

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(OPENAPI)

    async def list_functions(self, request: Request) -> Response:
        return JSONResponse({"functions": self.functions()})

    async def get_function(self, request: Request) -> Response:
        return JSONResponse(self.function(request.path_params["name"]))

    def functions(self) -> list[dict[str, Any]]:
        """Every deployment as the API shows it: version, config, routes."""
        routes = self.platform.registry.routes()
        return [self._described(dep, routes) for dep in self.platform.registry.list()]

    def function(self, name: str) -> dict[str, Any]:
        return self._described(self.platform.registry.get(name), self.platform.registry.routes())

    def _described(self, dep: Deployment, routes: list[AppRoute]) -> dict[str, Any]:
        """A deployment with its routes, and its state in this worker: loaded in the
        warm pool or not (cold), invocations in flight."""
        d = dep.to_dict()
        d["routes"] = [r.to_dict() for r in routes if r.function == dep.name]
        d["warm"] = dep.key in self.platform.pool
        d["in_flight"] = self.platform.in_flight(dep.name)
        return d

    async def deploy(self, request: Request) -> Response:
        name = request.path_params["name"]
        form_request = await _capped(request, MAX_MODULE_BYTES + FORM_OVERHEAD_BYTES)
        async with form_request.form(max_part_size=MAX_MODULE_BYTES) as form:
            module = form.get("module")
            if module is None or isinstance(module, str):
                raise InvalidRequest("the deploy form needs a 'module' file part (the .wasm)")
            wasm = await module.read()
            if len(wasm) > MAX_MODULE_BYTES:
                raise PayloadTooLarge(
                    f"module is {len(wasm)} bytes; a deploy accepts at most {MAX_MODULE_BYTES}"
                )
            raw_config = form.get("config")
        config: dict[str, Any] = {}
        if raw_config is not None:
            loaded = parse_json(raw_config if isinstance(raw_config, str) else "", "'config'")
            if not isinstance(loaded, dict):
                raise InvalidRequest("'config' must be a JSON object")
            config = loaded
        config.setdefault("wasm", f"{name}.wasm")
        spec = function_spec_from_dict(name, config, where="deploy config")
        dep = await self._run(lambda: self.platform.deploy(spec, wasm))
        return JSONResponse(dep.to_dict(), status_code=201)

    async def delete_function(self, request: Request) -> Response:
        name = request.path_params["name"]
        self.platform.remove(name)
        return Response(status_code=204)

    async def invoke(self, request: Request) -> Response:
        name = request.path_params["name"]
        raw = await request.body()
        value = parse_json(raw, "the invoke body") if raw else None
        request_id = request.headers.get("x-request-id") or new_id("req")
        return JSONResponse(await self.invoke_value(name, value, request_id))

    async def invoke_value(self, name: str, value: Any, request_id: str) -> dict[str, Any]:
        """Invoke ``name`` with ``value`` (an event envelope if it has a ``kind``, else the
        ``input`` of an ``invoke`` event): the response, logs and how it ran."""
        event = (
            value
            if isinstance(value, dict) and "kind" in value
            else {
                "kind": "invoke",
                "input": value,
            }
        )
        result = await self.invoker.invoke(name, event, request_id)
        return {
            "request_id": result.request_id,
            "function": result.function,
            "version": result.version,
            "cold": result.cold,
            "duration_ms": round(result.duration_ms, 3),
            "response": jsonable(result.response),
            "logs": [{"level": ln.level, "message": ln.message} for ln in result.logs],
        }

    async def get_routes(self, request: Request) -> Response:
        return JSONResponse({"routes": [r.to_dict() for r in self.platform.registry.routes()]})

    async def put_routes(self, request: Request) -> Response:
        body = parse_json(await request.body(), "the routes body")
        try:
            raw_routes = body["routes"]
        except (KeyError, TypeError) as e:
            raise InvalidRequest(f"expected a JSON body {{'routes': [...]}}: {e}") from None
        names = {d.name for d in self.platform.registry.list()}
        routes = routes_from_list(raw_routes, where="PUT /_admin/routes")
        missing = sorted({r.function for r in routes if r.function} - names)
        if missing:
            raise ManifestError(f"routes name functions that are not deployed: {missing}")
        workflows = set(self.platform.registry.app_config("workflows"))
        unknown = sorted({r.workflow for r in routes if r.workflow} - workflows)
        if unknown:
            raise ManifestError(f"routes name workflows that are not deployed: {unknown}")
        policies = set(self.platform.registry.app_config("gateway").get("policies") or {})
        undefined = sorted({p for r in routes for p in r.policies or ()} - policies)
        if undefined:
            raise ManifestError(f"routes name policies that are not deployed: {undefined}")
        self.platform.registry.set_routes(routes)
        return await self.get_routes(request)

    async def invocations(self, request: Request) -> Response:
        function = request.query_params.get("function")
        limit = int(request.query_params.get("limit", "100"))
        records = self.platform.telemetry.recent(function, limit)
        return JSONResponse({"invocations": [r.to_dict() for r in records]})

    async def _run(self, fn: Any) -> Any:
        return await anyio.to_thread.run_sync(fn)
