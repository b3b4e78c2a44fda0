"""What every console page shares: the session check, CSRF, templates, headers.

``page`` wraps a GET endpoint: without a live session it redirects to the login
form. ``action`` wraps a state-changing endpoint: it also needs the session's CSRF
token, from the ``X-CSRF-Token`` header (htmx sends it on every request) or a
``csrf`` form field, and refuses the request with 403 otherwise. Errors raised by a
page are shown as a page (or an htmx fragment) with the message and the status the
admin API would have answered.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from host.common.ids import new_id
from host.errors import NimbusError
from host.gateway.console.assets import Assets
from host.gateway.console.sessions import COOKIE, Session, SessionStore
from host.gateway.errors import error_response, status_for

Handler = Callable[[Request, Session], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]

HERE = Path(__file__).resolve().parent
CSRF_HEADER = "x-csrf-token"
#: no inline script runs: data reaches the scripts through data-* attributes
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'self'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


class Web:
    """Templates and the guards of the console, bound to one session store."""

    def __init__(self, sessions: SessionStore, prefix: str = "/_console") -> None:
        self.sessions = sessions
        self.prefix = prefix
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        env = self.templates.env
        env.globals["prefix"] = prefix
        self.assets = Assets(HERE / "static", prefix)
        env.globals["asset"] = self.assets.url
        env.filters["when"] = _when
        env.filters["age"] = _age
        env.filters["ms"] = _ms
        env.filters["pretty"] = _pretty
        env.filters["pretty_text"] = _pretty_text
        env.filters["size"] = _size
        env.filters["pct"] = lambda v: "–" if v is None else f"{100 * v:.1f}%"

    def session_of(self, request: Request) -> Session | None:
        return self.sessions.get(request.cookies.get(COOKIE))

    def page(self, handler: Handler) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            session = self.session_of(request)
            if session is None:
                if request.headers.get("hx-request"):
                    return Response("session ended", 401, {"hx-redirect": self.prefix + "/login"})
                return RedirectResponse(f"{self.prefix}/login", status_code=303)
            return await self._run(handler, request, session)

        return endpoint

    def action(self, handler: Handler) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            session = self.session_of(request)
            if session is None:
                return self._refuse(request, 401, "not logged in: open the console and log in")
            presented = request.headers.get(CSRF_HEADER)
            if presented is None and request.headers.get("content-type", "").startswith(
                ("application/x-www-form-urlencoded", "multipart/form-data")
            ):
                async with request.form() as form:
                    field = form.get("csrf")
                    presented = field if isinstance(field, str) else None
            if not session.csrf_ok(presented):
                return self._refuse(
                    request, 403, "missing or wrong CSRF token: reload the page and try again"
                )
            return await self._run(handler, request, session)

        return endpoint

    async def _run(self, handler: Handler, request: Request, session: Session) -> Response:
        try:
            response = await handler(request, session)
        except NimbusError as err:
            response = self._refuse(request, status_for(err), str(err), session)
        except Exception as err:
            response = error_response(err, new_id("req"))
        response.headers.update(SECURITY_HEADERS)
        return response

    def _refuse(
        self, request: Request, status: int, message: str, session: Session | None = None
    ) -> Response:
        template = "_error.html" if request.headers.get("hx-request") else "error.html"
        response = self.render(request, template, session, status_code=status, message=message)
        response.headers.update(SECURITY_HEADERS)
        return response

    def render(
        self,
        request: Request,
        template: str,
        session: Session | None,
        /,
        status_code: int = 200,
        **context: Any,
    ) -> Response:
        context.setdefault("csrf", session.csrf if session else "")
        context.setdefault("logged_in", session is not None)
        return self.templates.TemplateResponse(request, template, context, status_code=status_code)


def _when(ms: int | float | None) -> str:
    if ms is None:
        return "–"
    t = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    return t.strftime("%Y-%m-%d %H:%M:%S") + f".{int(ms) % 1000:03d}"


def _age(ms: int | float | None, now_ms: int | None = None) -> str:
    if ms is None:
        return "–"
    now = now_ms if now_ms is not None else int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    s = max(0, (now - int(ms)) // 1000)
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    return f"{s // 3600} h"


def _ms(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.2f} ms" if value < 100 else f"{value:.0f} ms"


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:g} {unit}"
        value = round(value / 1024, 1)
    return f"{value:g} GiB"


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _pretty_text(text: str) -> str:
    """JSON text indented (as it is, when it is not JSON: a preview cut short)."""
    try:
        return _pretty(json.loads(text))
    except ValueError:
        return text
