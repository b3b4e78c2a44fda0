"""The gateway's ASGI app: the admin API under ``/_admin/``, the console under
``/_console``, functions everywhere else.

The admin API and the console are a Starlette app; a function path goes straight to
``FunctionRoutes`` (raw ASGI) without passing Starlette's middleware and router, which
cost more than a small function's whole run.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Protocol

from starlette.applications import Starlette
from starlette.datastructures import State
from starlette.routing import Mount, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from host.gateway.asgi import Answer, Direct
from host.gateway.auth import AdminAuth, load_or_create_token
from host.gateway.console.mount import console_routes
from host.gateway.functions import FunctionRoutes
from host.gateway.invoker import Invoker
from host.gateway.policies.chain import GatewayPolicies
from host.platform.platform import Platform

if TYPE_CHECKING:
    from host.gateway.admin import AdminApi
    from host.gateway.schedules_api import ScheduleSource
    from host.orchestrator.runner import WorkflowRunner

log = logging.getLogger("nimbus.gateway")

ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
#: how long after start-up the background work begins (the triggers' and workflows'
#: threads, the metrics, keep-warm: ``_start_background``), so that a request waiting
#: at start is answered first; the Python functions load at once, on a thread of their
#: own (``Platform.load_python``)
BACKGROUND_AFTER_S = 0.05
#: the paths Starlette serves (everything else is a function path)
_STARLETTE_PREFIXES = ("/_admin/", "/_console/")
_STARLETTE_PATHS = frozenset({"/_console"})


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
) -> Gateway:
    """The gateway for ``platform``, over the workflows and schedules the process
    assembly (``host/server.py``) built; the admin token defaults to the data dir's."""
    token = admin_token or load_or_create_token(platform.data_dir)
    invoker = Invoker(platform)
    started = threading.Event()

    def build_admin() -> AdminApi:
        from host.gateway.admin import AdminApi

        return AdminApi(
            platform, invoker, AdminAuth(token), workflows, schedules, ready=started.is_set
        )

    admin = LazyAdmin(build_admin)

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
        python = threading.Thread(
            target=_load_python, args=(platform,), name="nimbus-python", daemon=True
        )
        python.start()  # at once: a Python request at start waits for this load
        starter = threading.Thread(
            target=_start_background,
            args=(platform, background, started),
            name="nimbus-start",
            daemon=True,
        )
        later = asyncio.get_running_loop().call_later(BACKGROUND_AFTER_S, starter.start)
        yield
        later.cancel()
        python.join()
        if starter.ident is not None:
            starter.join()
        for b in background:
            b.stop()
        invoker.close()
        platform.close()

    traced = _traced(platform)
    app = Starlette(
        routes=[
            Mount("/_admin", app=traced(admin)),
            *console_routes(admin.get, token),
            # a path the prefixes above send here that no admin route takes
            Mount("", app=functions),
        ],
        lifespan=lifespan,
    )
    app.state.platform = platform
    # traced, a request goes the ASGI way, through its span
    direct = functions.direct if platform.tracing.tracer is None else None
    return Gateway(app, traced(functions), direct)


def _traced(platform: Platform) -> Callable[[ASGIApp], ASGIApp]:
    """An app wrapped in a span per request when tracing is on; with it off, the app
    itself (not even a pass-through layer)."""
    tracing = platform.tracing
    if tracing.tracer is None:
        return lambda app: app
    from host.gateway.tracing import TracingMiddleware  # (OpenTelemetry loads on use)

    return lambda app: TracingMiddleware(app, tracing)


def _load_python(platform: Platform) -> None:
    try:
        platform.load_python()
    except Exception:
        log.exception("loading the Python functions failed; they load on first use")


def _start_background(
    platform: Platform, background: Sequence[Background], started: threading.Event
) -> None:
    """What a server does once it serves, off the request path; ``started`` is set when
    done (``/_admin/ready`` answers 200), whatever failed."""
    try:
        for b in background:
            try:
                b.start()
            except Exception:
                log.exception("starting %s failed", type(b).__name__)
        try:
            platform.prepare()
        except Exception:
            log.exception("preparing the deployed functions failed; they load on first use")
        # what start-up made (modules, the app, the loaded functions) lives as long as
        # the process: moved out of the collector's generations, so a full collection
        # under load scans only what requests made
        gc.collect()
        gc.freeze()
    finally:
        started.set()


class LazyAdmin:
    """The admin API, built (and its modules imported) on its first request: a server
    starts serving functions without paying for the admin API's imports."""

    def __init__(self, build: Callable[[], AdminApi]) -> None:
        self._build = build
        self._admin: AdminApi | None = None
        self._router: Router | None = None
        self._lock = threading.Lock()

    def get(self) -> AdminApi:
        with self._lock:
            if self._admin is None:
                self._admin = self._build()
            return self._admin

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._router is None:
            self._router = Router(routes=self.get().routes())
        await self._router(scope, receive, send)


class Gateway:
    """The ASGI entry point: function paths to ``FunctionRoutes``, the rest (the admin
    API, the console, the lifespan) to the Starlette app."""

    def __init__(self, app: Starlette, functions: ASGIApp, direct: Direct | None = None) -> None:
        self.app = app
        self.functions = functions
        self._direct = direct

    @property
    def state(self) -> State:
        return self.app.state

    def direct(self, scope: Scope, body: bytes) -> Answer | ASGIApp | None:
        """A function route's answer without an ``await`` (``asgi.Direct``; the server's
        protocol asks it first, host/server.py); None for every other request."""
        if self._direct is None or not _is_function_path(scope["path"]):
            return None
        return self._direct(scope, body)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _is_function_path(scope["path"]):
            return await self.functions(scope, receive, send)
        await self.app(scope, receive, send)


def _is_function_path(path: str) -> bool:
    """A path the function routes take (every other is the admin API's or the console's)."""
    return not path.startswith(_STARLETTE_PREFIXES) and path not in _STARLETTE_PATHS
