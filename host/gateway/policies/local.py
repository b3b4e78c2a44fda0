"""A local ``nimbus invoke --http`` through the route's gateway policies, as served.

The app's ``[gateway]`` table is compiled into the same chains the server builds
(``chain.py``) and the request goes through one as an ASGI
request built from the command line: authentication, the rate limit and quota, the
request transform, the function, the response transform, CORS. What a local run
does with credentials and counters:

- credentials are sent as on the wire, with ``--header`` (``--header 'x-api-key:
  KEY'``, ``--header 'authorization: Bearer JWT'``); API keys are those of the data
  dir (created by ``nimbus keys create`` on a server over it), JWTs are checked
  against the policy's secret, key or JWKS, an authorizer function runs locally
  (its writes are never kept);
- rate limits and quotas are charged to the data dir's shared counters only with
  ``--commit``; a dry run charges a fresh, throwaway set, so it shows the headers
  and the answer of a first call and leaves the served app's allowances alone.

A refusal is shown as the caller would get it (the status and the error), with the
policy names and what to pass next.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from msgspec import Struct, field
from starlette.requests import Request
from starlette.responses import Response

from host.common.ids import new_id
from host.gateway.policies.chain import GatewayPolicies, Guard, RouteChain
from host.gateway.routing import Match, RouteTable
from host.services.counters import Counters
from host.services.interface import RateCounters

if TYPE_CHECKING:
    from host.manifest.app import Manifest
    from host.platform.platform import InvocationResult, Platform

#: runs a function of the app locally: (name, event) → its result
RunLocal = Callable[[str, dict[str, Any]], "InvocationResult"]

_HINTS = {
    "Unauthorized": "pass the credential with --header, e.g. --header 'x-api-key: KEY' (a key "
    "of this data dir: `nimbus keys create NAME` on a server over it) or --header "
    "'authorization: Bearer JWT'",
    "Forbidden": "the credential is known but not allowed on this route: check its routes, "
    "policies or scopes",
    "RateLimited": "a dry run starts from full allowances; with --commit the data dir's "
    "counters are charged, as on the server",
    "QuotaExceeded": "the caller's quota is used up for this period",
    "ServiceUnavailable": "the route's policies cannot be built here (a key file or a "
    "secret_env variable missing?): the 'gateway:' line above says why",
}


class Outcome(Struct):
    """A request through the chain: the answer as sent, and the function's run when
    the policies let it through (None when they refused first)."""

    status: int
    headers: dict[str, str]
    body: Any
    policies: tuple[str, ...]
    result: InvocationResult | None = None
    error: dict[str, Any] = field(default_factory=dict)

    @property
    def refused(self) -> bool:
        return self.result is None

    def hint(self) -> str:
        return _HINTS.get(str(self.error.get("kind", "")), "")

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "headers": self.headers, "body": self.body}


def through_policies(
    app: Manifest,
    platform: Platform,
    event: dict[str, Any],
    headers: dict[str, str],
    run: RunLocal,
    commit: bool,
) -> Outcome | None:
    """``event`` (an ``http`` event routed by the app) sent through its route's chain,
    the function run by ``run`` when the chain lets it through; None when the route
    applies no policy (the caller runs the function as is)."""
    routes = list(app.routes)
    found = RouteTable(routes).match(event["method"], event["path"])
    if not isinstance(found, Match) or not app.gateway.chain(found.route.policies):
        return None
    counters_dir = None if commit else Path(tempfile.mkdtemp(prefix="nimbus-counters-"))
    counters = platform.services.counters if counters_dir is None else Counters(counters_dir)
    try:
        return anyio.run(_serve, app, found, platform, counters, event, headers, run)
    finally:
        if counters_dir is not None:
            counters.close()
            shutil.rmtree(counters_dir, ignore_errors=True)


async def _serve(
    app: Manifest,
    found: Match,
    platform: Platform,
    counters: RateCounters,
    event: dict[str, Any],
    headers: dict[str, str],
    run: RunLocal,
) -> Outcome | None:
    policies = _policies(app, platform, counters, run)
    policies.compile(list(app.routes))
    chain = policies.chain(found.route)
    if chain is None:
        return None
    ran: list[InvocationResult] = []
    answer: dict[str, Any] = {}
    failure: list[BaseException] = []

    async def dispatch(request: Request, match: Match, rid: str, guard: Guard | None) -> Response:
        assert guard is not None
        try:
            result = run(match.route.function or "", guard.event(dict(event)))
        except BaseException as e:  # the function's own failure: shown as without policies
            failure.append(e)
            raise
        ran.append(result)
        answer.update(guard.response(result.response))
        return Response(b"", status_code=answer.get("status", 200))

    rid = new_id("req")
    response = await chain.serve(_request(event, headers), found, rid, dispatch)
    if failure:
        raise failure[0]
    sent = {k: v for k, v in response.headers.items() if k != "content-length"}
    names = chain.names if isinstance(chain, RouteChain) else ()
    if ran:
        merged = {**answer.get("headers", {}), **sent}
        return Outcome(answer.get("status", 200), merged, answer.get("body"), names, ran[0])
    error = json.loads(bytes(response.body)).get("error", {})
    return Outcome(response.status_code, sent, {"error": error}, names, None, error)


def _policies(
    app: Manifest, platform: Platform, counters: RateCounters, run: RunLocal
) -> GatewayPolicies:
    async def invoke(function: str, event: dict[str, Any], rid: str) -> dict[str, Any]:
        return run(function, event).response  # an authorizer, run locally

    keys = platform.services.api_keys
    return GatewayPolicies(lambda: app.gateway.to_dict(), keys, counters, invoke)


def _request(event: dict[str, Any], headers: dict[str, str]) -> Request:
    """The ASGI request the server would have received for ``event``."""
    body: bytes = event["body"]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": event["method"],
        "scheme": "http",
        "path": event["path"],
        "raw_path": event["path"].encode(),
        "query_string": event["raw_query"].encode(),
        "root_path": "",
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()],
        "client": ("127.0.0.1", 0),
        "server": ("localhost", 80),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(scope, receive)
