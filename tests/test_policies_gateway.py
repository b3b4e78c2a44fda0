"""Gateway policies on a real server (``nimbus up`` on loopback): API keys, JWT,
authorizer functions, rate limits and quotas, transforms and CORS, each on a real
request to a real function (``mirror_zig`` answers with the event it got)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.conftest import Server, free_port

Build = Callable[[str], Path]
TOKEN = "policy-token"
HS_SECRET = "a-test-secret-that-is-long-enough-for-hs256"

APP = """
[functions.mirror]
wasm = "{mirror}"

[functions.corsfn]
wasm = "{mirror}"

[functions.authz]
wasm = "{authz}"

[functions.authz-zig]
wasm = "{authz_zig}"

[gateway.policies.key]
api_key = {{}}

[gateway.policies.hs.jwt]
algorithms = ["HS256"]
secret = "{secret}"
issuer = "https://id.test"
audience = "nimbus-tests"

[gateway.policies.rs.jwt]
algorithms = ["RS256"]
public_key = "rsa.pem"
scopes = ["orders:read"]
required_claims = ["email"]
leeway = "60s"

[gateway.policies.es]
jwt = {{ algorithms = ["ES256"], jwks = "jwks.json" }}

[gateway.policies.authz]
authorizer = {{ function = "authz", cache_ttl = "4s" }}

[gateway.policies.authz-zig]
authorizer = {{ function = "authz-zig", identity = "x-token", cache_ttl = "0s" }}

[gateway.policies.limited]
rate_limit = {{ rate = 1, per = "1h", burst = 3, key = "ip" }}

[gateway.policies.plan]
quota = {{ day = 2 }}

[gateway.policies.reshape.request]
set_headers = {{ x-source = "gateway" }}
remove_headers = ["x-secret"]
rename_headers = {{ x-old = "x-new" }}
path = "/internal/orders/{{id}}"
query_to_body = ["page"]
params_to_body = {{ id = "orderId" }}

[gateway.policies.reshape.request.body]
customer = "$.body.customer.name"
items = "$.body.lines"
source = "api"
literal = "$$.body"

[gateway.policies.wrapped.response]
set_headers = {{ cache-control = "no-store" }}
remove_headers = ["x-auth-kind"]
status = {{ "200" = 203 }}
pick = "/query"
wrap = "data"

[gateway.policies.browser.cors]
origins = ["https://shop.example"]
methods = ["GET", "POST"]
headers = ["x-api-key", "content-type"]
expose_headers = ["x-request-id"]
credentials = true
max_age = "10m"

[[routes]]
method = "GET"
path = "/open"
function = "mirror"

[[routes]]
method = "GET"
path = "/k/{{x}}"
function = "mirror"
policies = ["key"]

[[routes]]
method = "GET"
path = "/jwt/hs"
function = "mirror"
policies = ["hs"]

[[routes]]
method = "GET"
path = "/jwt/rs"
function = "mirror"
policies = ["rs"]

[[routes]]
method = "GET"
path = "/jwt/es"
function = "mirror"
policies = ["es"]

[[routes]]
method = "GET"
path = "/authz"
function = "mirror"
policies = ["authz"]

[[routes]]
method = "GET"
path = "/authz-zig"
function = "mirror"
policies = ["authz-zig"]

[[routes]]
method = "GET"
path = "/limited"
function = "mirror"
policies = ["limited"]

[[routes]]
method = "GET"
path = "/plan"
function = "mirror"
policies = ["key", "plan"]

[[routes]]
method = "POST"
path = "/t/{{id}}"
function = "mirror"
policies = ["reshape"]

[[routes]]
method = "GET"
path = "/wrapped"
function = "mirror"
policies = ["wrapped"]

[[routes]]
method = ["GET", "POST"]
path = "/cors/{{x}}"
function = "corsfn"
policies = ["browser", "key"]
"""


class Keys:
    """The signing keys of the test app, generated here with ``cryptography``."""

    def __init__(self, app: Path) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (app / "rsa.pem").write_bytes(
            self.rsa.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        self.ec = ec.generate_private_key(ec.SECP256R1())
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.ec.public_key()))
        jwk.update({"kid": "k1", "use": "sig", "alg": "ES256"})
        (app / "jwks.json").write_text(json.dumps({"keys": [jwk]}))


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, build: Build) -> Iterator[tuple[Server, Keys]]:
    root = tmp_path_factory.mktemp("policies")
    app_dir = root / "app"
    app_dir.mkdir()
    keys = Keys(app_dir)
    (app_dir / "nimbus.toml").write_text(
        APP.format(
            mirror=build("mirror_zig"),
            authz=build("authorizer_c"),
            authz_zig=build("authorizer_zig"),
            secret=HS_SECRET,
        )
    )
    env = {**os.environ, "NIMBUS_ADMIN_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"}
    server = Server(["up", str(app_dir), "--data", str(root / "data")], free_port(), env)
    server.wait_ready()
    yield server, keys
    server.stop()


def admin(server: Server) -> httpx.Client:
    return httpx.Client(
        base_url=server.url + "/_admin", headers={"authorization": f"Bearer {TOKEN}"}
    )


def create_key(server: Server, name: str, **extra: Any) -> dict[str, Any]:
    with admin(server) as a:
        r = a.post("/keys", json={"name": name, **extra})
    assert r.status_code == 201, r.text
    key: dict[str, Any] = r.json()
    return key


def error(r: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = r.json()["error"]
    assert body["request_id"] == r.headers["x-request-id"]
    return body


def invocations(server: Server, function: str) -> int:
    with admin(server) as a:
        return len(
            a.get("/invocations", params={"function": function, "limit": 1000}).json()[
                "invocations"
            ]
        )


# --- API keys -----------------------------------------------------------------------


def test_a_route_without_policies_needs_nothing(app: tuple[Server, Keys]) -> None:
    server, _ = app
    r = httpx.get(server.url + "/open")
    assert r.status_code == 200
    assert "auth" not in r.json()


def test_api_key_valid_missing_wrong_revoked(app: tuple[Server, Keys]) -> None:
    server, _ = app
    url = server.url + "/k/one"
    missing = httpx.get(url)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'ApiKey header="x-api-key"'
    assert error(missing)["kind"] == "Unauthorized"

    key = create_key(server, "ci")
    ok = httpx.get(url, headers={"x-api-key": key["api_key"]})
    assert ok.status_code == 200, ok.text
    assert ok.json()["auth"] == {
        "kind": "api_key",
        "subject": "ci",
        "claims": {},
        "key_id": key["id"],
    }
    assert ok.headers["x-subject"] == "ci"  # the Zig SDK's typed accessor

    wrong_secret = key["api_key"][:-4] + ("aaaa" if not key["api_key"].endswith("aaaa") else "bbbb")
    for bad in (wrong_secret, "nk_000000000000_nothing", "not-a-key"):
        r = httpx.get(url, headers={"x-api-key": bad})
        assert r.status_code == 401, bad
        assert error(r)["message"] == "the API key is not valid"

    with admin(server) as a:
        listed = a.get("/keys").json()["keys"]
        assert key["id"] in [k["id"] for k in listed]
        assert all("api_key" not in k and "hash" not in k for k in listed)
        assert a.delete(f"/keys/{key['id']}").json()["revoked_ms"]
    revoked = httpx.get(url, headers={"x-api-key": key["api_key"]})
    assert revoked.status_code == 401
    assert "revoked" in error(revoked)["message"]


def test_api_key_expired_and_restricted_to_other_routes(app: tuple[Server, Keys]) -> None:
    server, _ = app
    short = create_key(server, "short", expires="3s")
    assert httpx.get(server.url + "/k/x", headers={"x-api-key": short["api_key"]}).is_success
    time.sleep(3.2)
    expired = httpx.get(server.url + "/k/x", headers={"x-api-key": short["api_key"]})
    assert expired.status_code == 401
    assert "expired" in error(expired)["message"]

    elsewhere = create_key(server, "elsewhere", routes=["/plan"])
    r = httpx.get(server.url + "/k/x", headers={"x-api-key": elsewhere["api_key"]})
    assert r.status_code == 403
    assert error(r)["kind"] == "Forbidden"


def test_admin_routes_show_policies_and_refuse_unknown_ones(app: tuple[Server, Keys]) -> None:
    server, _ = app
    with admin(server) as a:
        routes = a.get("/routes").json()["routes"]
        assert {"methods": ["GET"], "path": "/plan", "function": "mirror"} | {
            "policies": ["key", "plan"]
        } in routes
        assert "policies" not in next(r for r in routes if r["path"] == "/open")
        ghost = [{"method": "GET", "path": "/g", "function": "mirror", "policies": ["ghost"]}]
        r = a.put("/routes", json={"routes": ghost})
        assert r.status_code == 400
        assert "ghost" in r.json()["error"]["message"]
        assert a.get("/routes").json()["routes"] == routes


# --- JWT ----------------------------------------------------------------------------


def hs(claims: dict[str, Any]) -> dict[str, str]:
    token = jwt.encode(claims, HS_SECRET, algorithm="HS256")
    return {"authorization": f"Bearer {token}"}


def test_jwt_hs256_checks_issuer_audience_expiry_and_not_before(
    app: tuple[Server, Keys],
) -> None:
    server, _ = app
    url = server.url + "/jwt/hs"
    now = int(time.time())
    good = {"sub": "u-1", "iss": "https://id.test", "aud": "nimbus-tests", "exp": now + 60}
    r = httpx.get(url, headers=hs(good))
    assert r.status_code == 200, r.text
    auth = r.json()["auth"]
    assert (auth["kind"], auth["subject"], auth["claims"]["iss"]) == ("jwt", "u-1", good["iss"])
    assert httpx.get(url, headers=hs(good)).status_code == 200  # from the cache

    missing = httpx.get(url)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    cases = {
        "audience": {**good, "aud": "someone-else"},
        "issuer": {**good, "iss": "https://evil.test"},
        "expired": {**good, "exp": now - 30},
        "not valid yet": {**good, "nbf": now + 600},
        "'exp'": {k: v for k, v in good.items() if k != "exp"},
    }
    for words, claims in cases.items():
        r = httpx.get(url, headers=hs(claims))
        assert r.status_code == 401, (words, r.text)
        assert words in error(r)["message"], (words, r.text)
        assert 'error="invalid_token"' in r.headers["www-authenticate"]
    forged = jwt.encode(good, "another-secret-that-is-long-enough-too", algorithm="HS256")
    r = httpx.get(url, headers={"authorization": f"Bearer {forged}"})
    assert r.status_code == 401


def test_jwt_rs256_with_a_pem_key_and_scopes(app: tuple[Server, Keys]) -> None:
    server, keys = app
    url = server.url + "/jwt/rs"
    now = int(time.time())
    claims = {"sub": "ada", "email": "ada@x", "scope": "orders:read profile", "exp": now + 60}
    token = jwt.encode(claims, keys.rsa, algorithm="RS256")
    r = httpx.get(url, headers={"authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    assert r.json()["auth"]["subject"] == "ada"

    no_scope = jwt.encode({**claims, "scope": "profile"}, keys.rsa, algorithm="RS256")
    r = httpx.get(url, headers={"authorization": f"Bearer {no_scope}"})
    assert r.status_code == 403
    assert "orders:read" in error(r)["message"]

    no_email = jwt.encode({"sub": "ada", "exp": now + 60}, keys.rsa, algorithm="RS256")
    r = httpx.get(url, headers={"authorization": f"Bearer {no_email}"})
    assert r.status_code == 401
    assert "'email'" in error(r)["message"]

    # within the 60 s leeway an expired token still passes; past it, not
    late = jwt.encode({**claims, "exp": now - 5}, keys.rsa, algorithm="RS256")
    assert httpx.get(url, headers={"authorization": f"Bearer {late}"}).status_code == 200
    later = jwt.encode({**claims, "exp": now - 120}, keys.rsa, algorithm="RS256")
    assert httpx.get(url, headers={"authorization": f"Bearer {later}"}).status_code == 401

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims, other, algorithm="RS256")
    assert httpx.get(url, headers={"authorization": f"Bearer {forged}"}).status_code == 401


def test_jwt_es256_from_a_jwks_file(app: tuple[Server, Keys]) -> None:
    server, keys = app
    claims = {"sub": "svc", "exp": int(time.time()) + 60}
    token = jwt.encode(claims, keys.ec, algorithm="ES256", headers={"kid": "k1"})
    r = httpx.get(server.url + "/jwt/es", headers={"authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    assert r.json()["auth"]["subject"] == "svc"
    unknown = jwt.encode(claims, keys.ec, algorithm="ES256", headers={"kid": "k9"})
    r = httpx.get(server.url + "/jwt/es", headers={"authorization": f"Bearer {unknown}"})
    assert r.status_code == 401


# --- authorizer functions -------------------------------------------------------------


def test_authorizer_allows_one_subject_denies_another_and_caches(
    app: tuple[Server, Keys],
) -> None:
    server, _ = app
    url = server.url + "/authz"
    assert httpx.get(url).status_code == 401
    assert invocations(server, "authz") == 0  # no credential: not even asked

    alice = httpx.get(url, headers={"authorization": "Bearer alice"})
    assert alice.status_code == 200, alice.text
    assert alice.json()["auth"] == {
        "kind": "authorizer",
        "subject": "alice",
        "claims": {"role": "admin"},
        "key_id": None,
    }
    bob = httpx.get(url, headers={"authorization": "Bearer bob"})
    assert bob.status_code == 403
    assert error(bob)["kind"] == "Forbidden"
    assert invocations(server, "authz") == 2

    # within the TTL (4 s) both decisions come from the cache
    assert httpx.get(url, headers={"authorization": "Bearer alice"}).status_code == 200
    assert httpx.get(url, headers={"authorization": "Bearer bob"}).status_code == 403
    assert invocations(server, "authz") == 2
    time.sleep(4.2)
    assert httpx.get(url, headers={"authorization": "Bearer alice"}).status_code == 200
    assert invocations(server, "authz") == 3


def test_authorizer_in_zig_with_its_own_identity_header_and_no_cache(
    app: tuple[Server, Keys],
) -> None:
    server, _ = app
    url = server.url + "/authz-zig"
    missing = httpx.get(url, headers={"authorization": "Bearer alice"})
    assert missing.status_code == 401
    assert "'x-token'" in error(missing)["message"]
    alice = httpx.get(url, headers={"x-token": "Bearer alice"})
    assert alice.status_code == 200, alice.text
    assert alice.json()["auth"]["claims"] == {"team": "zig"}
    assert httpx.get(url, headers={"x-token": "Bearer eve"}).status_code == 403
    assert httpx.get(url, headers={"x-token": "Bearer alice"}).status_code == 200
    assert invocations(server, "authz-zig") == 3  # cache_ttl = "0s": asked every time


# --- rate limits and quotas ---------------------------------------------------------


def test_rate_limit_answers_429_after_the_burst(app: tuple[Server, Keys]) -> None:
    server, _ = app
    url = server.url + "/limited"
    answers = [httpx.get(url) for _ in range(5)]
    assert [r.status_code for r in answers] == [200, 200, 200, 429, 429]
    first = answers[0]
    assert first.headers["ratelimit-policy"] == '"limited";q=3;w=10800'
    assert first.headers["ratelimit"].startswith('"limited";r=2;t=')
    refused = answers[3]
    assert error(refused)["kind"] == "RateLimited"
    retry = int(refused.headers["retry-after"])
    assert 3000 < retry <= 3600  # one token per hour
    assert refused.headers["ratelimit"] == f'"limited";r=0;t={retry}'
    assert refused.headers["ratelimit-policy"] == '"limited";q=3;w=10800'


def test_daily_quota_per_key(app: tuple[Server, Keys]) -> None:
    server, _ = app
    first, second = create_key(server, "plan-a"), create_key(server, "plan-b")
    a = [httpx.get(server.url + "/plan", headers={"x-api-key": first["api_key"]}) for _ in range(3)]
    assert [r.status_code for r in a] == [200, 200, 429]
    assert a[0].headers["ratelimit-policy"] == '"plan-day";q=2;w=86400'
    assert a[0].headers["ratelimit"].startswith('"plan-day";r=1;t=')
    assert error(a[2])["kind"] == "QuotaExceeded"
    assert 0 < int(a[2].headers["retry-after"]) <= 86400
    assert a[2].headers["ratelimit"].startswith('"plan-day";r=0;')
    # another key has its own allowance
    b = httpx.get(server.url + "/plan", headers={"x-api-key": second["api_key"]})
    assert b.status_code == 200


# --- transforms ---------------------------------------------------------------------


def test_request_transform_on_a_real_request(app: tuple[Server, Keys]) -> None:
    server, _ = app
    r = httpx.post(
        server.url + "/t/o-7?page=2",
        json={"customer": {"name": "Ada"}, "lines": [{"sku": "a"}], "ignored": True},
        headers={"x-secret": "hide-me", "x-old": "renamed"},
    )
    assert r.status_code == 200, r.text
    event = r.json()
    assert event["path"] == "/internal/orders/o-7"
    headers = event["headers"]
    assert headers["x-source"] == "gateway"
    assert "x-secret" not in headers
    assert headers["x-new"] == "renamed" and "x-old" not in headers
    assert headers["content-type"] == "application/json"
    assert json.loads(event["body"]) == {
        "customer": "Ada",
        "items": [{"sku": "a"}],
        "source": "api",
        "literal": "$.body",
        "page": "2",
        "orderId": "o-7",
    }
    bad = httpx.post(server.url + "/t/o-7", content=b"not json")
    assert bad.status_code == 400
    assert "JSON" in error(bad)["message"]


def test_response_transform_on_a_real_response(app: tuple[Server, Keys]) -> None:
    server, _ = app
    r = httpx.get(server.url + "/wrapped?a=1&b=2")
    assert r.status_code == 203
    assert r.json() == {"data": {"a": "1", "b": "2"}}
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["content-type"] == "application/json"


# --- CORS ---------------------------------------------------------------------------


def test_cors_preflight_is_answered_without_invoking(app: tuple[Server, Keys]) -> None:
    server, _ = app
    preflight = httpx.options(
        server.url + "/cors/a",
        headers={
            "origin": "https://shop.example",
            "access-control-request-method": "POST",
            "access-control-request-headers": "x-api-key, content-type",
        },
    )
    assert preflight.status_code == 200, preflight.text
    h = preflight.headers
    assert h["access-control-allow-origin"] == "https://shop.example"
    assert set(h["access-control-allow-methods"].split(", ")) == {"GET", "POST"}
    assert "x-api-key" in h["access-control-allow-headers"]
    assert h["access-control-max-age"] == "600"
    assert h["access-control-allow-credentials"] == "true"
    refused = httpx.options(
        server.url + "/cors/a",
        headers={"origin": "https://evil.example", "access-control-request-method": "GET"},
    )
    assert refused.status_code == 400
    assert "origin" in refused.text
    assert invocations(server, "corsfn") == 0

    key = create_key(server, "browser")
    actual = httpx.get(
        server.url + "/cors/a",
        headers={"origin": "https://shop.example", "x-api-key": key["api_key"]},
    )
    assert actual.status_code == 200
    assert actual.headers["access-control-allow-origin"] == "https://shop.example"
    assert actual.headers["access-control-expose-headers"] == "x-request-id"
    assert "Origin" in actual.headers["vary"]
    # a refused call carries the CORS headers too, so the page can read why
    denied = httpx.get(server.url + "/cors/a", headers={"origin": "https://shop.example"})
    assert denied.status_code == 401
    assert denied.headers["access-control-allow-origin"] == "https://shop.example"
    assert invocations(server, "corsfn") == 1


# --- a policy that cannot be built fails closed ---------------------------------------

BROKEN_APP = """
[functions.mirror]
wasm = "{mirror}"

[gateway.policies.rs]
jwt = {{ algorithms = ["RS256"], public_key = "rsa.pem" }}

[[routes]]
method = "GET"
path = "/rs"
function = "mirror"
policies = ["rs"]

[[routes]]
method = "GET"
path = "/open"
function = "mirror"
"""


def test_a_policy_whose_key_file_is_gone_fails_closed(
    tmp_path: Path, build: Build, start_server: Callable[..., Server]
) -> None:
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    keys = Keys(app_dir)
    (app_dir / "nimbus.toml").write_text(BROKEN_APP.format(mirror=build("mirror_zig")))
    server = start_server("up", str(app_dir), "--data", str(tmp_path / "data"))
    token = jwt.encode({"sub": "a", "exp": int(time.time()) + 60}, keys.rsa, algorithm="RS256")
    auth = {"authorization": f"Bearer {token}"}
    assert httpx.get(server.url + "/rs", headers=auth).status_code == 200
    (app_dir / "rsa.pem").unlink()
    # a deployment makes every worker rebuild its chains, which now cannot read the key
    admin = {"authorization": "Bearer test-token"}
    module = build("mirror_zig").read_bytes()
    r = httpx.put(
        server.url + "/_admin/functions/other",
        files={"module": ("other.wasm", module, "application/wasm")},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    refused = httpx.get(server.url + "/rs", headers=auth)
    assert httpx.get(server.url + "/open").status_code == 200  # other routes serve on
    assert refused.status_code == 503
    assert error(refused)["kind"] == "ServiceUnavailable"
    assert "rsa.pem" not in refused.text  # the reason is in the log, not for callers
    assert "rsa.pem" in server.stop()
