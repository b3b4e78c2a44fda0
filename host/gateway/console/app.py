"""The console as one ASGI app, mounted by the gateway at ``/_console``.

It reads through the admin API's own accessors (``AdminApi``, ``TablesApi``,
``BucketsApi``, ``QueuesApi``, the workflow runner), so it needs the admin token only
to log a browser in. Responses
are gzipped; the vendored scripts (htmx, uPlot) are served from ``static/`` with
their licences, so serving the console needs no build step and no network.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.routing import Route

from host.gateway.admin import AdminApi
from host.gateway.buckets_api import BucketsApi
from host.gateway.console.context import Context
from host.gateway.console.data import DataPages
from host.gateway.console.functions import FunctionPages
from host.gateway.console.invocations import InvocationPages
from host.gateway.console.login import LoginPages
from host.gateway.console.mount import PREFIX
from host.gateway.console.overview import OverviewPages
from host.gateway.console.queues import QueuePages
from host.gateway.console.sessions import SessionStore
from host.gateway.console.usage import UsagePages
from host.gateway.console.web import Web
from host.gateway.console.workflows import WorkflowPages
from host.gateway.data_api import ADMIN_SOURCE, dead_letter_of
from host.gateway.queues_api import QueuesApi
from host.gateway.tables_api import TablesApi


def console_app(admin: AdminApi, token: str) -> Starlette:
    """The console of ``admin``'s platform; ``token`` is the admin token."""
    sessions = SessionStore(admin.platform.services.console_sessions, token)
    web = Web(sessions, PREFIX)
    services = admin.platform.services
    ctx = Context(
        web,
        admin,
        TablesApi(services, ADMIN_SOURCE),
        BucketsApi(services, ADMIN_SOURCE),
        QueuesApi(services, ADMIN_SOURCE, dead_letter_of(admin.platform)),
    )
    pages = (
        OverviewPages,
        FunctionPages,
        InvocationPages,
        QueuePages,
        WorkflowPages,
        DataPages,
        UsagePages,
    )
    routes = [
        *LoginPages(web, sessions).routes(),
        *(route for cls in pages for route in cls(ctx).routes()),
        Route("/static/{path:path}", web.assets.serve, methods=["GET", "HEAD"]),
    ]
    return Starlette(routes=routes, middleware=[Middleware(GZipMiddleware, minimum_size=500)])
