"""CORS for one route, with Starlette's ``CORSMiddleware`` semantics.

The gateway answers a preflight (``OPTIONS`` with ``Origin`` and
``Access-Control-Request-Method``) itself, without invoking the function, and adds the
``Access-Control-*`` headers to the actual response, error responses included (so a
browser can read why a call failed). The rules are Starlette's own object, used per
route instead of as an app-wide middleware.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from host.manifest.gateway import Cors


async def _unused(scope: Scope, receive: Receive, send: Send) -> None:  # pragma: no cover
    raise RuntimeError("a route's CORS rules are used without an inner app")


class CorsRule:
    """A route's CORS rules: preflight answers and response headers."""

    def __init__(self, config: Cors) -> None:
        self._mw = CORSMiddleware(
            _unused,
            allow_origins=config.origins,
            allow_methods=config.methods,
            allow_headers=config.headers,
            allow_credentials=config.credentials,
            expose_headers=config.expose_headers,
            max_age=config.max_age_s,
        )

    def preflight(self, headers: Headers) -> Response:
        """200 with the allowed origin, methods and headers, or 400 saying what is not."""
        return self._mw.preflight_response(request_headers=headers)

    def decorate(self, response: Response, origin: str) -> None:
        """The actual response's CORS headers for a request from ``origin``."""
        mw = self._mw
        headers = response.headers
        headers.update(mw.simple_headers)
        if (mw.allow_all_origins and mw.allow_credentials) or (
            not mw.allow_all_origins and mw.is_allowed_origin(origin=origin)
        ):
            mw.allow_explicit_origin(headers, origin)
        else:
            headers["vary"] = ", ".join([*headers.getlist("vary"), "Origin"])
