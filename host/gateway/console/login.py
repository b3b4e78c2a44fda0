"""Logging in and out of the console.

The login form posts the admin token once; a right token gets a fresh session and
its cookie (HttpOnly, SameSite=Strict, Secure over HTTPS), a wrong one a 401 and the
form again. The form is guarded by a double-submit token (a cookie and a hidden
field that must match), so another site cannot log a browser in to its own session.
Logout deletes the session server-side, so its cookie is dead even if kept.
"""

from __future__ import annotations

import hmac
import secrets

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from host.gateway.console.sessions import (
    COOKIE,
    LOGIN_COOKIE,
    SESSION_TTL_MS,
    Session,
    SessionStore,
)
from host.gateway.console.web import SECURITY_HEADERS, Web


class LoginPages:
    """``/login`` (GET form, POST token) and ``/logout`` (POST)."""

    def __init__(self, web: Web, sessions: SessionStore) -> None:
        self.web = web
        self.sessions = sessions

    def routes(self) -> list[Route]:
        return [
            Route("/login", self.form, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.web.action(self.logout), methods=["POST"]),
        ]

    async def form(self, request: Request) -> Response:
        if self.web.session_of(request) is not None:
            return RedirectResponse(self.web.prefix + "/", status_code=303)
        return self._form(request, 200, "")

    def _form(self, request: Request, status: int, error: str) -> Response:
        nonce = secrets.token_urlsafe(24)
        response = self.web.render(
            request, "login.html", None, status_code=status, error=error, login_csrf=nonce
        )
        response.set_cookie(
            LOGIN_COOKIE,
            nonce,
            max_age=3600,
            path=self.web.prefix,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        response.headers.update(SECURITY_HEADERS)
        return response

    async def login(self, request: Request) -> Response:
        async with request.form() as form:
            token = form.get("token")
            presented = form.get("csrf")
        expected = request.cookies.get(LOGIN_COOKIE, "")
        if (
            not isinstance(presented, str)
            or not expected
            or not hmac.compare_digest(presented, expected)
        ):
            return self._form(
                request, 403, "the login form expired or was sent from elsewhere: try again"
            )
        if not isinstance(token, str) or not token.strip():
            return self._form(request, 400, "enter the admin token")
        if not self.sessions.check_token(token):
            return self._form(
                request,
                401,
                "that is not the admin token (it is in <data dir>/admin_token, "
                "or NIMBUS_ADMIN_TOKEN)",
            )
        session = self.sessions.create()
        response = RedirectResponse(self.web.prefix + "/", status_code=303)
        response.set_cookie(
            COOKIE,
            session.id,
            max_age=SESSION_TTL_MS // 1000,
            path=self.web.prefix,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        response.delete_cookie(LOGIN_COOKIE, path=self.web.prefix)
        return response

    async def logout(self, request: Request, session: Session) -> Response:
        self.sessions.end(session.id)
        response = RedirectResponse(self.web.prefix + "/login", status_code=303)
        response.delete_cookie(COOKIE, path=self.web.prefix, httponly=True, samesite="strict")
        return response
