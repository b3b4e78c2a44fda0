"""Where the gateway plugs the console in, without paying for it at start-up.

The console (Jinja2, its pages, its gzipped assets) is built on its first request,
so a host that nobody opens the console on starts as fast as one without it, and a
crashed worker restarts as fast as before.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

if TYPE_CHECKING:
    from host.gateway.admin import AdminApi

PREFIX = "/_console"


class LazyConsole:
    """An ASGI app that builds the console app the first time it is called."""

    def __init__(self, admin: Callable[[], AdminApi], token: str) -> None:
        self._admin = admin
        self._token = token
        self._app: ASGIApp | None = None
        self._lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None:
            with self._lock:
                if self._app is None:
                    from host.gateway.console.app import console_app

                    self._app = console_app(self._admin(), self._token)
        await self._app(scope, receive, send)


def console_routes(admin: Callable[[], AdminApi], token: str) -> list[BaseRoute]:
    """What the gateway mounts: the console under ``/_console/``, and ``/_console``
    itself sent there (a bare prefix would otherwise fall through to the functions)."""

    async def to_console(request: Request) -> Response:
        return RedirectResponse(PREFIX + "/", status_code=307)

    return [Route(PREFIX, to_console), Mount(PREFIX, app=LazyConsole(admin, token))]
