"""The three ways a route authenticates its caller: API keys, JWTs, authorizer functions.

Each answers an ``Identity`` or raises ``Unauthorized`` (401, with the
``WWW-Authenticate`` challenge that says what to send) or ``Forbidden`` (403: known,
but not allowed here). Verified API keys and decoded JWTs are cached by their text
(keys until any key changes, JWTs until they expire), and authorizer decisions by
credential for the policy's TTL, so a policy route costs microseconds, not a hash or
a signature check per request.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from starlette.requests import Request

from host.errors import Forbidden, FunctionFailed, Unauthorized
from host.gateway.policies.identity import Identity
from host.manifest.gateway import ApiKeyAuth, AuthorizerAuth, JwtAuth
from host.services.apikeys import ApiKey
from host.services.interface import ApiKeyStore

if TYPE_CHECKING:
    import jwt

#: entries a cache keeps before it starts over (bounds memory under a flood of tokens)
CACHE_ENTRIES = 10_000

Invoke = Callable[[str, dict[str, Any], str], Awaitable[dict[str, Any]]]


class Authenticator(Protocol):
    """One route's authentication step."""

    async def authenticate(self, request: Request, params: dict[str, str], rid: str) -> Identity:
        """The caller's identity, or ``Unauthorized`` / ``Forbidden``."""
        ...


class KeyCache:
    """Verified API keys by their text, dropped whenever any key is created or revoked
    (by any process: the keys' generation is read on every lookup)."""

    def __init__(self, keys: ApiKeyStore) -> None:
        self.keys = keys
        self._generation = -1
        self._found: dict[str, ApiKey] = {}

    def lookup(self, token: str) -> ApiKey | None:
        generation = self.keys.generation()
        if generation != self._generation:
            self._found, self._generation = {}, generation
        key = self._found.get(token)
        if key is None:
            key = self.keys.lookup(token)
            if key is not None:
                if len(self._found) >= CACHE_ENTRIES:
                    self._found.clear()
                self._found[token] = key
        return key


class ApiKeyCheck:
    """``api_key``: a key from ``nimbus keys create`` in the policy's header."""

    def __init__(
        self, config: ApiKeyAuth, cache: KeyCache, route_path: str, policies: tuple[str, ...]
    ) -> None:
        self.header = config.header
        self.cache = cache
        self.route_path = route_path
        self.policies = policies
        self.challenge = f'ApiKey header="{config.header}"'
        self._identities: dict[str, Identity] = {}

    async def authenticate(self, request: Request, params: dict[str, str], rid: str) -> Identity:
        token = request.headers.get(self.header)
        if not token:
            raise Unauthorized(
                f"this route needs an API key in the '{self.header}' header "
                "(create one with `nimbus keys create NAME`)",
                self.challenge,
            )
        key = self.cache.lookup(token)
        if key is None:
            raise Unauthorized("the API key is not valid", self.challenge)
        if key.revoked_ms:
            raise Unauthorized(f"the API key {key.id} was revoked", self.challenge)
        if key.expired(int(time.time() * 1000)):
            raise Unauthorized(f"the API key {key.id} has expired", self.challenge)
        if not key.allows(self.route_path, self.policies):
            raise Forbidden(f"the API key {key.id} may not call {self.route_path}")
        identity = self._identities.get(key.id)
        if identity is None:
            if len(self._identities) >= CACHE_ENTRIES:
                self._identities.clear()
            identity = self._identities[key.id] = Identity("api_key", key.name, {}, key.id)
        return identity


class JwtCheck:
    """``jwt``: a bearer token verified with PyJWT (signature, exp, nbf, iss, aud)."""

    def __init__(self, config: JwtAuth) -> None:
        import jwt  # PyJWT loads cryptography (~0.1 s): only servers with a JWT route pay

        self.config = config
        self._key: Any = None
        self._jwks: jwt.PyJWKSet | None = None
        if config.jwks:
            self._jwks = jwt.PyJWKSet.from_dict(json.loads(Path(config.jwks).read_text()))
        elif config.public_key:
            self._key = Path(config.public_key).read_text()
        else:
            self._key = config.hmac_secret()
        self._require = ["exp", *config.required_claims]
        self._cache: dict[str, tuple[float, Identity]] = {}

    def _challenge(self, error: str = "", description: str = "") -> str:
        if not error:
            return 'Bearer realm="nimbus"'
        return f'Bearer realm="nimbus", error="{error}", error_description="{description}"'

    async def authenticate(self, request: Request, params: dict[str, str], rid: str) -> Identity:
        raw = request.headers.get(self.config.header)
        token = raw
        if raw and self.config.header == "authorization":
            scheme, _, token = raw.partition(" ")
            if scheme.lower() != "bearer":
                token = ""
        if not token:
            raise Unauthorized(
                f"this route needs a JWT: '{self.config.header}: Bearer <token>'",
                self._challenge(),
            )
        token = token.strip()
        now = time.time()
        cached = self._cache.get(token)
        if cached is not None and cached[0] + self.config.leeway_s > now:
            return cached[1]
        claims = self._decode(token)
        self._check_scopes(claims)
        identity = Identity("jwt", str(claims.get("sub", "")), claims)
        if len(self._cache) >= CACHE_ENTRIES:
            self._cache.clear()
        self._cache[token] = (float(claims["exp"]), identity)
        return identity

    def _decode(self, token: str) -> dict[str, Any]:
        import jwt

        c = self.config
        try:
            key = self._key
            if self._jwks is not None:
                key = self._jwk(token)
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=list(c.algorithms),
                audience=list(c.audience) or None,
                issuer=c.issuer or None,
                leeway=c.leeway_s,
                options={"require": self._require, "verify_aud": bool(c.audience)},
            )
        except jwt.ExpiredSignatureError:
            raise self._invalid("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise self._invalid("the token is not valid yet (nbf/iat in the future)") from None
        except jwt.InvalidAudienceError:
            raise self._invalid(f"the token's audience is not {', '.join(c.audience)}") from None
        except jwt.InvalidIssuerError:
            raise self._invalid(f"the token's issuer is not {c.issuer}") from None
        except jwt.MissingRequiredClaimError as e:
            raise self._invalid(f"the token has no '{e.claim}' claim") from None
        except jwt.PyJWTError as e:
            raise self._invalid(f"the token is not valid: {e}") from None
        return claims

    def _jwk(self, token: str) -> Any:
        import jwt

        assert self._jwks is not None
        kid = jwt.get_unverified_header(token).get("kid")
        keys = self._jwks.keys
        if kid is None and len(keys) == 1:
            return keys[0]
        for k in keys:
            if k.key_id == kid:
                return k
        raise jwt.InvalidKeyError(f"no key with kid {kid!r} in the JWKS")

    def _invalid(self, message: str) -> Unauthorized:
        return Unauthorized(message, self._challenge("invalid_token", message))

    def _check_scopes(self, claims: dict[str, Any]) -> None:
        if not self.config.scopes:
            return
        raw = claims.get("scope", claims.get("scp", ""))
        have = set(raw.split() if isinstance(raw, str) else raw if isinstance(raw, list) else [])
        missing = [s for s in self.config.scopes if s not in have]
        if missing:
            raise Forbidden(f"the token lacks the scope(s) {', '.join(missing)} this route needs")


class AuthorizerCheck:
    """``authorizer``: a Nimbus function decides, through the one invoke path; its
    decision is cached per credential for ``cache_ttl``."""

    def __init__(self, config: AuthorizerAuth, route_path: str, invoke: Invoke) -> None:
        self.config = config
        self.route_path = route_path
        self.invoke = invoke
        self._cache: dict[str, tuple[float, Identity | None]] = {}
        header = config.identity
        self.challenge = 'Bearer realm="nimbus"' if header == "authorization" else header

    async def authenticate(self, request: Request, params: dict[str, str], rid: str) -> Identity:
        credential = request.headers.get(self.config.identity)
        if not credential:
            raise Unauthorized(
                f"this route needs credentials in the '{self.config.identity}' header",
                self.challenge,
            )
        now = time.monotonic()
        cached = self._cache.get(credential)
        if cached is not None and cached[0] > now:
            identity = cached[1]
        else:
            identity = await self._decide(request, params, credential, rid)
            if self.config.cache_ttl_s > 0:
                if len(self._cache) >= CACHE_ENTRIES:
                    self._cache.clear()
                self._cache[credential] = (now + self.config.cache_ttl_s, identity)
        if identity is None:
            raise Forbidden("the authorizer denied this call")
        return identity

    async def _decide(
        self, request: Request, params: dict[str, str], credential: str, rid: str
    ) -> Identity | None:
        fn = self.config.function
        event = {
            "kind": "authorizer",
            "method": request.method,
            "path": request.url.path,
            "route": self.route_path,
            "params": params,
            "query": dict(request.query_params),
            "headers": dict(request.headers),
            "source_ip": request.client.host if request.client else "",
            "identity": credential,
        }
        response = await self.invoke(fn, event, f"{rid}.authz")
        out = response.get("output")
        if not isinstance(out, dict) or not isinstance(out.get("allow"), bool):
            raise FunctionFailed(
                f"authorizer {fn} returned no decision: its output must be "
                "{allow: bool, subject: str, context: map}"
            )
        if not out["allow"]:
            return None
        context = out.get("context")
        return Identity(
            "authorizer",
            str(out.get("subject") or ""),
            dict(context) if isinstance(context, dict) else {},
        )
