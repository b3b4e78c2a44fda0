"""The ``[gateway]`` of an app manifest: named policies that routes apply.

A policy is a table of optional parts, each a table of its own::

    [gateway]
    default_policies = ["cors"]      # applied to every route that has no `policies`

    [gateway.policies.NAME]
    api_key = { header = "x-api-key" }
    jwt = { algorithms = ["RS256"], public_key = "keys/jwt.pem",   # or jwks = "jwks.json",
            issuer = "https://id.example", audience = "shop",      #   or secret / secret_env
            leeway = "30s", required_claims = ["email"], scopes = ["orders:write"] }
    authorizer = { function = "authz", identity = "authorization", cache_ttl = "5m" }
    rate_limit = { rate = 10, per = "1s", burst = 20, key = "ip" }  # key: ip|api_key|subject
    quota = { day = 1000, month = 20000 }                     # per API key (or subject)
    cors = { origins = ["https://shop.example"], methods = ["GET", "POST"],
             headers = ["content-type"], expose_headers = [], credentials = false,
             max_age = "10m" }
    request = { ... }  response = { ... }                     # see manifest/transforms.py

A route takes ``policies = ["NAME", ...]`` (replacing the defaults; ``[]`` opts out).
Its chain is the union of its policies' parts, in order; two policies may not both
authenticate, nor both set the same part. Files (PEM, JWKS) are resolved against the
manifest's directory and checked at load; the stored form (``to_dict``) holds absolute
paths, so every worker reads the same files. The gateway compiles a route's chain once
per deployment generation (``host/gateway/policies/``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from msgspec import Struct, field

from host.manifest.config_table import ConfigTable, Problems
from host.manifest.grants import RESOURCE
from host.manifest.transforms import (
    RequestTransform,
    ResponseTransform,
    read_request_transform,
    read_response_transform,
    strings,
)

AUTH_PARTS = ("api_key", "jwt", "authorizer")
PARTS = (*AUTH_PARTS, "rate_limit", "quota", "cors", "request", "response")
RATE_KEYS = ("ip", "api_key", "subject")
JWT_ALGORITHMS = ("HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384")
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


class ApiKeyAuth(Struct, frozen=True):
    """Callers present a key made with ``nimbus keys create`` in a header."""

    header: str = "x-api-key"


class JwtAuth(Struct, frozen=True):
    """Callers present a JWT (``Authorization: Bearer …``) checked with PyJWT."""

    algorithms: tuple[str, ...]
    secret: str = ""
    secret_env: str = ""
    #: absolute paths (resolved against the manifest) of a PEM public key or a JWKS file
    public_key: str = ""
    jwks: str = ""
    issuer: str = ""
    audience: tuple[str, ...] = ()
    leeway_s: float = 0.0
    required_claims: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    header: str = "authorization"

    def hmac_secret(self) -> str:
        return os.environ.get(self.secret_env, "") if self.secret_env else self.secret


class AuthorizerAuth(Struct, frozen=True):
    """A Nimbus function decides, from an ``authorizer`` event, whether a call may pass."""

    function: str
    #: the header whose value is the credential (and the decision cache's key)
    identity: str = "authorization"
    cache_ttl_s: float = 300.0


class RateLimit(Struct, frozen=True):
    """A token bucket: ``rate`` tokens per ``per_s`` seconds, at most ``burst`` kept."""

    rate: float
    per_s: float = 1.0
    burst: int = 0
    key: str = "ip"

    @property
    def capacity(self) -> int:
        return self.burst or max(1, int(self.rate))


class Quota(Struct, frozen=True):
    """Calls allowed per caller (API key, else subject) per UTC day and month."""

    day: int = 0
    month: int = 0


class Cors(Struct, frozen=True):
    """Cross-origin rules; the gateway answers preflights itself."""

    origins: tuple[str, ...] = ("*",)
    methods: tuple[str, ...] = _METHODS
    headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    credentials: bool = False
    max_age_s: int = 600


class Policy(Struct, frozen=True):
    """One named policy: any of the parts, unset ones None."""

    name: str
    api_key: ApiKeyAuth | None = None
    jwt: JwtAuth | None = None
    authorizer: AuthorizerAuth | None = None
    rate_limit: RateLimit | None = None
    quota: Quota | None = None
    cors: Cors | None = None
    request: RequestTransform | None = None
    response: ResponseTransform | None = None


class GatewayConfig(Struct, frozen=True):
    """The ``[gateway]`` table, checked; ``raw`` is its stored form."""

    policies: dict[str, Policy] = field(default_factory=dict)
    default_policies: tuple[str, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict)

    def chain(self, names: tuple[str, ...] | None) -> list[Policy]:
        """The policies a route with ``policies = names`` (None: not given) applies."""
        chosen = self.default_policies if names is None else names
        return [self.policies[n] for n in chosen if n in self.policies]

    def to_dict(self) -> dict[str, Any]:
        return self.raw


def gateway_from_dict(data: dict[str, Any], where: str = "gateway") -> GatewayConfig:
    """The stored form (``to_dict()``) read back with the same rules."""
    problems = Problems(where)
    config = read_gateway(ConfigTable(data, "", problems), Path("/"))
    problems.raise_if_any()
    return config


def read_gateway(t: ConfigTable, base: Path) -> GatewayConfig:
    """``[gateway]``; relative file paths start at ``base`` (the manifest's directory)."""
    raw: dict[str, Any] = {}
    policies_table = t.table("policies")
    policies: dict[str, Policy] = {}
    raw_policies: dict[str, Any] = {}
    for name in list(policies_table.data):
        where = policies_table.table(name)
        if not RESOURCE.match(name):
            policies_table.error(name, "a policy name uses letters, digits, '_', '.', '-'")
        policy, stored = _read_policy(name, where, base)
        policies[name] = policy
        raw_policies[name] = stored
    policies_table.finish()
    defaults = strings(t, "default_policies")
    for n in defaults:
        if n not in policies:
            t.error("default_policies", unknown_policy(n, policies))
    t.finish()
    if raw_policies:
        raw["policies"] = raw_policies
    if defaults:
        raw["default_policies"] = list(defaults)
    check_chain(defaults, policies, t.problems, t.key("default_policies"))
    return GatewayConfig(policies, defaults, raw)


def unknown_policy(name: str, policies: dict[str, Policy]) -> str:
    known = ", ".join(sorted(policies)) or "none are defined under [gateway.policies]"
    return f"names no policy: {name!r} (policies: {known})"


def check_chain(
    names: tuple[str, ...], policies: dict[str, Policy], problems: Problems, where: str
) -> None:
    """Two policies of one chain may not both authenticate or set the same part."""
    owner: dict[str, str] = {}
    for n in names:
        p = policies.get(n)
        if p is None:
            continue
        for part in PARTS:
            if getattr(p, part) is None:
                continue
            slot = "authentication" if part in AUTH_PARTS else part
            if slot in owner and owner[slot] != n:
                problems.add(
                    where,
                    f"policies {owner[slot]!r} and {n!r} both set {slot}; a route takes one",
                )
            owner.setdefault(slot, n)
        authenticated = any(getattr(policies.get(m), a, None) for m in names for a in AUTH_PARTS)
        if p.quota is not None and not authenticated:
            problems.add(where, f"policy {n!r} sets a quota, which needs an authenticated caller")
        rate_key = p.rate_limit.key if p.rate_limit is not None else "ip"
        if rate_key == "subject" and not authenticated:
            problems.add(where, f"policy {n!r} limits by subject, which needs authentication")
        if rate_key == "api_key" and not any(
            getattr(policies.get(m), "api_key", None) for m in names
        ):
            problems.add(where, f"policy {n!r} limits by API key, which needs an api_key policy")


def _read_policy(name: str, t: ConfigTable, base: Path) -> tuple[Policy, dict[str, Any]]:
    stored: dict[str, Any] = {k: v for k, v in t.data.items() if k in PARTS}
    parts: dict[str, Any] = {}
    if t.has("api_key"):
        a = t.table("api_key")
        parts["api_key"] = ApiKeyAuth(header=_header(a, "header", "x-api-key"))
        a.finish()
    if t.has("jwt"):
        parts["jwt"], stored["jwt"] = _read_jwt(t.table("jwt"), base)
    if t.has("authorizer"):
        a = t.table("authorizer")
        parts["authorizer"] = AuthorizerAuth(
            function=a.string("function", required=True) or "",
            identity=_header(a, "identity", "authorization"),
            cache_ttl_s=a.duration("cache_ttl", 300.0),
        )
        a.finish()
    if t.has("rate_limit"):
        parts["rate_limit"] = _read_rate_limit(t.table("rate_limit"))
    if t.has("quota"):
        q = t.table("quota")
        parts["quota"] = Quota(day=q.integer("day", 0), month=q.integer("month", 0))
        if not q.data.get("day") and not q.data.get("month"):
            q.problems.add(q.where, "a quota sets 'day' or 'month' (calls per UTC day/month)")
        q.finish()
    if t.has("cors"):
        parts["cors"] = _read_cors(t.table("cors"))
    if t.has("request"):
        parts["request"] = read_request_transform(t.table("request"))
    if t.has("response"):
        parts["response"] = read_response_transform(t.table("response"))
    t.used.update(PARTS)
    t.finish()
    if not parts:
        t.problems.add(t.where, f"a policy sets at least one of: {', '.join(PARTS)}")
    return Policy(name, **parts), stored


def _read_jwt(t: ConfigTable, base: Path) -> tuple[JwtAuth, dict[str, Any]]:
    stored = dict(t.data)
    algorithms = strings(t, "algorithms") or ("HS256",)
    for alg in algorithms:
        if alg not in JWT_ALGORITHMS:
            t.error("algorithms", f"unsupported algorithm {alg!r} (one of {JWT_ALGORITHMS})")
    symmetric = all(a.startswith("HS") for a in algorithms)
    asymmetric = not any(a.startswith("HS") for a in algorithms)
    if not symmetric and not asymmetric:
        t.error("algorithms", "mixes HMAC (HS*) and public-key algorithms; use one family")
    secret = t.string("secret", "") or ""
    secret_env = t.string("secret_env", "") or ""
    public_key = _file(t, "public_key", base, _check_pem)
    jwks = _file(t, "jwks", base, _check_jwks)
    for k, path in (("public_key", public_key), ("jwks", jwks)):
        if path:
            stored[k] = path
    given = [k for k, v in (("secret", secret), ("secret_env", secret_env)) if v]
    given += [k for k in ("public_key", "jwks") if t.has(k)]
    if len(given) != 1:
        t.problems.add(
            t.where,
            "a jwt policy takes exactly one of: secret, secret_env (HS*), public_key, jwks "
            f"(RS*/ES*); got {', '.join(given) or 'none'}",
        )
    elif symmetric and given[0] not in ("secret", "secret_env"):
        t.error(given[0], "HS* algorithms verify with 'secret' or 'secret_env'")
    elif asymmetric and given[0] in ("secret", "secret_env"):
        t.error(given[0], "RS*/ES* algorithms verify with 'public_key' or 'jwks'")
    if secret_env and not os.environ.get(secret_env):
        t.error("secret_env", f"environment variable {secret_env} is not set")
    audience = t.data.get("audience")
    audiences = (audience,) if isinstance(audience, str) else strings(t, "audience")
    t.used.add("audience")
    jwt = JwtAuth(
        algorithms=algorithms,
        secret=secret,
        secret_env=secret_env,
        public_key=public_key,
        jwks=jwks,
        issuer=t.string("issuer", "") or "",
        audience=audiences,
        leeway_s=t.duration("leeway", 0.0),
        required_claims=strings(t, "required_claims"),
        scopes=strings(t, "scopes"),
        header=_header(t, "header", "authorization"),
    )
    t.finish()
    return jwt, stored


def _file(t: ConfigTable, k: str, base: Path, check: Any) -> str:
    name = t.string(k, "") or ""
    if not name:
        return ""
    path = (base / name).resolve()
    try:
        text = path.read_text()
    except OSError as e:
        t.error(k, f"cannot read {path}: {e.strerror or e}")
        return ""
    problem = check(text)
    if problem:
        t.error(k, f"{path}: {problem}")
    return str(path)


def _check_pem(text: str) -> str:
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        load_pem_public_key(text.encode())
    except (ValueError, TypeError) as e:
        return f"not a PEM public key ({e})"
    return ""


def _check_jwks(text: str) -> str:
    import jwt

    try:
        jwt.PyJWKSet.from_dict(json.loads(text))
    except (ValueError, jwt.PyJWTError) as e:
        return f"not a JWKS document ({e})"
    return ""


def _read_rate_limit(t: ConfigTable) -> RateLimit:
    if not t.has("rate"):
        t.problems.add(t.where, "a rate limit needs 'rate' (requests per 'per')")
    rate = t.number("rate", 1.0)
    if rate <= 0:
        t.error("rate", "expected a number above zero")
        rate = 1.0
    per = t.duration("per", 1.0, positive=True)
    burst = t.integer("burst", 0)
    key = t.string("key", "ip") or "ip"
    if key not in RATE_KEYS:
        t.error("key", f"expected one of {', '.join(RATE_KEYS)}, got {key!r}")
    t.finish()
    return RateLimit(rate=rate, per_s=per, burst=burst, key=key)


def _read_cors(t: ConfigTable) -> Cors:
    origins = strings(t, "origins") or ("*",)
    for o in origins:
        if o != "*" and not (o.startswith("http://") or o.startswith("https://")):
            t.error("origins", f"{o!r}: an origin is '*' or 'https://host[:port]'")
    methods = tuple(m.upper() for m in strings(t, "methods")) or _METHODS
    for m in methods:
        if m not in (*_METHODS, "*"):
            t.error("methods", f"unknown method {m!r}")
    credentials = t.raw("credentials")
    if credentials is not None and not isinstance(credentials, bool):
        t.error("credentials", f"expected true or false, got {credentials!r}")
        credentials = False
    cors = Cors(
        origins=origins,
        methods=methods,
        headers=tuple(h.lower() for h in strings(t, "headers")),
        expose_headers=tuple(h.lower() for h in strings(t, "expose_headers")),
        credentials=bool(credentials),
        max_age_s=int(t.duration("max_age", 600.0)),
    )
    if cors.credentials and "*" in cors.origins:
        t.error("credentials", "credentials cannot be allowed for every origin ('*'); list them")
    t.finish()
    return cors


def _header(t: ConfigTable, k: str, default: str) -> str:
    name = (t.string(k, default) or default).lower()
    if not name or not all(c.isalnum() or c in "-_" for c in name):
        t.error(k, f"expected a header name, got {name!r}")
    return name
