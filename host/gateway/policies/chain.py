"""A route's policies compiled into one chain, once per deployment generation.

``GatewayPolicies.compile`` runs when the route table is rebuilt (the registry's
generation changed): it reads the stored ``[gateway]`` table and builds a
``RouteChain`` for every route that applies a policy. A route without policies has no
chain, and ``chain()`` answers None for it with one dict lookup: the fast path pays
nothing else. A chain runs, in order: authentication, the rate limit and quota, the
request transform, the function (or workflow), the response transform; the CORS and
RateLimit headers go on every answer, errors included.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from host.errors import NimbusError, ServiceUnavailable
from host.gateway.errors import error_response
from host.gateway.policies.authn import (
    ApiKeyCheck,
    Authenticator,
    AuthorizerCheck,
    Invoke,
    JwtCheck,
    KeyCache,
)
from host.gateway.policies.cors import CorsRule
from host.gateway.policies.identity import Identity
from host.gateway.policies.limits import Limiter
from host.gateway.policies.transforms import transform_event, transform_response
from host.gateway.routing import Match, RouteTable
from host.manifest.gateway import GatewayConfig, Policy, gateway_from_dict
from host.manifest.routes import Route
from host.services.interface import ApiKeyStore, RateCounters

log = logging.getLogger("nimbus.gateway")


class Guard:
    """What a chain changes in one call: the event going in, the response coming out."""

    __slots__ = ("chain", "identity")

    def __init__(self, chain: RouteChain, identity: Identity | None) -> None:
        self.chain = chain
        self.identity = identity

    def event(self, event: dict[str, Any]) -> dict[str, Any]:
        if self.identity is not None:
            event["auth"] = self.identity.to_event()
        t = self.chain.request
        return event if t is None else transform_event(t, event)

    def response(self, response: dict[str, Any]) -> dict[str, Any]:
        t = self.chain.response
        return response if t is None else transform_response(t, response)


Dispatch = Callable[[Request, Match, str, Guard | None], Awaitable[Response]]


class RouteChain:
    """The compiled policies of one route."""

    def __init__(
        self,
        route: Route,
        policies: list[Policy],
        keys: KeyCache,
        counters: RateCounters,
        invoke: Invoke,
    ) -> None:
        self.route = route
        self.names = tuple(p.name for p in policies)

        def part(name: str) -> tuple[Any, str]:
            for p in policies:
                if getattr(p, name) is not None:
                    return getattr(p, name), p.name
            return None, ""

        self.auth: Authenticator | None = None
        if (a := part("api_key")[0]) is not None:
            self.auth = ApiKeyCheck(a, keys, route.path, self.names)
        elif (j := part("jwt")[0]) is not None:
            self.auth = JwtCheck(j)
        elif (z := part("authorizer")[0]) is not None:
            self.auth = AuthorizerCheck(z, route.path, invoke)
        rate, rate_name = part("rate_limit")
        quota, quota_name = part("quota")
        self.limiter = None
        if rate is not None or quota is not None:
            route_key = f"{','.join(route.methods)} {route.path}"
            self.limiter = Limiter(counters, route_key, rate, rate_name, quota, quota_name)
        cors = part("cors")[0]
        self.cors = CorsRule(cors) if cors is not None else None
        self.request = part("request")[0]
        self.response = part("response")[0]

    async def serve(self, request: Request, found: Match, rid: str, dispatch: Dispatch) -> Response:
        extra: dict[str, str] = {}
        try:
            identity = None
            if self.auth is not None:
                identity = await self.auth.authenticate(request, found.params, rid)
            if self.limiter is not None:
                extra = self.limiter.charge(request, identity)
            response = await dispatch(request, found, rid, Guard(self, identity))
        except Exception as err:
            response = error_response(err, rid)
        if extra:
            response.headers.update(extra)
        origin = request.headers.get("origin")
        if self.cors is not None and origin is not None:
            self.cors.decorate(response, origin)
        return response


class _Broken:
    """A route whose policies cannot be built: it fails closed. The reason (a file
    path, a missing variable) is in the server's log, not in answers to callers."""

    def __init__(self, reason: str) -> None:
        log.error("gateway: %s", reason)
        self.cors = None

    async def serve(self, request: Request, found: Match, rid: str, dispatch: Dispatch) -> Response:
        message = "this route's gateway policies cannot be loaded; the server's log says why"
        return error_response(ServiceUnavailable(message), rid)


class GatewayPolicies:
    """Every route's chain for the current deployment generation (one per process)."""

    def __init__(
        self,
        read_config: Callable[[], dict[str, Any]],
        keys: ApiKeyStore,
        counters: RateCounters,
        invoke: Invoke,
    ) -> None:
        self._read_config = read_config
        self._keys = KeyCache(keys)
        self._counters = counters
        self._invoke = invoke
        self._chains: dict[int, RouteChain | _Broken] = {}
        self._cors = False

    def compile(self, routes: list[Route]) -> None:
        """Build the chains of ``routes`` (the objects the route table matches)."""
        chains: dict[int, RouteChain | _Broken] = {}
        try:
            config = gateway_from_dict(self._read_config(), where="stored [gateway]")
        except NimbusError as e:
            log.error("gateway policies cannot be loaded: %s", e)
            config, broken = GatewayConfig(), str(e)
        else:
            broken = ""
        for route in routes:
            names = route.policies if route.policies is not None else config.default_policies
            if broken and names:
                chains[id(route)] = _Broken(
                    f"the policies of {route.path} cannot be loaded: {broken}"
                )
                continue
            missing = [n for n in names if n not in config.policies]
            if missing:
                chains[id(route)] = _Broken(f"{route.path} names unknown policies: {missing}")
                continue
            policies = config.chain(route.policies)
            if not policies:
                continue
            try:
                chains[id(route)] = RouteChain(
                    route, policies, self._keys, self._counters, self._invoke
                )
            except Exception as e:  # a key file gone or changed since the deploy
                chains[id(route)] = _Broken(f"the policies of {route.path} cannot be built: {e}")
        self._chains = chains
        self._cors = any(getattr(c, "cors", None) is not None for c in chains.values())

    def chain(self, route: Route) -> RouteChain | _Broken | None:
        """The route's chain; None for a route without policies."""
        return self._chains.get(id(route)) if self._chains else None

    def preflight(self, table: RouteTable, request: Request, rid: str) -> Response | None:
        """The answer to a CORS preflight for a route with a CORS policy, else None."""
        if not self._cors:
            return None
        found = table.match(request.headers["access-control-request-method"], request.url.path)
        if not isinstance(found, Match):
            return None
        chain = self.chain(found.route)
        if chain is None or chain.cors is None:
            return None
        response = chain.cors.preflight(request.headers)
        response.headers["x-request-id"] = rid
        return response
