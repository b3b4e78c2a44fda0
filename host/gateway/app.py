"""The Starlette application: the admin API under ``/_admin``, functions everywhere else."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol

import anyio.to_thread
from starlette.applications import Starlette
from starlette.routing import Mount, Route

from host.gateway.admin import AdminApi
from host.gateway.auth import AdminAuth, load_or_create_token
from host.gateway.console.mount import console_routes
from host.gateway.functions import FunctionRoutes
from host.gateway.invoker import Invoker
from host.gateway.policies.chain import GatewayPolicies
from host.gateway.schedules_api import ScheduleSource
from host.orchestrator.runner import WorkflowRunner
from host.platform.platform import Platform

ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class Background(Protocol):
    """Something that runs beside the gateway (the triggers) for the app's lifetime."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


def create_app(
    platform: Platform,
    workflows: WorkflowRunner,
    schedules: ScheduleSource,
    admin_token: str | None = None,
    background: Sequence[Background] = (),
) -> Starlette:
    """The gateway for ``platform``, over the workflows and schedules the process
    assembly (``host/server.py``) built; the admin token defaults to the data dir's."""
    token = admin_token or load_or_create_token(platform.data_dir)
    invoker = Invoker(platform)
    admin = AdminApi(platform, invoker, AdminAuth(token), workflows, schedules)

    async def invoke(function: str, event: dict[str, Any], request_id: str) -> dict[str, Any]:
        return (await invoker.invoke(function, event, request_id)).response

    policies = GatewayPolicies(
        lambda: platform.registry.app_config("gateway"),
        platform.services.api_keys,
        platform.services.counters,
        invoke,
    )
    functions = FunctionRoutes(platform.registry, invoker, workflows.start_run, policies)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # the first thread hop imports anyio's backend (~25 ms): pay it before the
        # first request, not in it
        await anyio.to_thread.run_sync(lambda: None)
        for b in background:
            b.start()
        yield
        for b in background:
            b.stop()
        platform.close()

    app = Starlette(
        routes=[
            Mount("/_admin", routes=admin.routes()),
            *console_routes(admin, token),
            Route("/{path:path}", functions.handle, methods=ALL_METHODS),
        ],
        lifespan=lifespan,
    )
    app.state.platform = platform
    return app
