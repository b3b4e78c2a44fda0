"""``[gateway]`` in nimbus.toml: policies, route policies, defaults, and every mistake
reported with the file, the key and what was expected."""

from __future__ import annotations

from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from host.manifest.app import load_manifest
from host.manifest.gateway import gateway_from_dict
from tests.test_manifest import FN, assert_problem, problems, write

ROUTE = '[[routes]]\nmethod = "GET"\npath = "/x"\nfunction = "fn"\n'


def test_policies_defaults_and_the_stored_form(tmp_path: Path) -> None:
    jwk = jwt.algorithms.ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key())
    (tmp_path / "jwks.json").write_text(f'{{"keys": [{jwk}]}}')
    path = write(
        tmp_path,
        FN
        + """
[gateway]
default_policies = ["cors"]

[gateway.policies.cors]
cors = { origins = ["https://a.example"] }

[gateway.policies.keyed]
api_key = { header = "X-Key" }
rate_limit = { rate = 5, per = "1m", burst = 10, key = "api_key" }
quota = { day = 100, month = 2000 }

[gateway.policies.tokens]
jwt = { algorithms = ["ES256"], jwks = "jwks.json", audience = ["a", "b"], leeway = "30s" }

[[routes]]
path = "/a"
function = "fn"

[[routes]]
path = "/b"
function = "fn"
policies = ["keyed", "cors"]

[[routes]]
path = "/c"
function = "fn"
policies = []
""",
    )
    m = load_manifest(path)
    g = m.gateway
    assert [p.name for p in g.chain(m.routes[0].policies)] == ["cors"]
    assert [p.name for p in g.chain(m.routes[1].policies)] == ["keyed", "cors"]
    assert g.chain(m.routes[2].policies) == []
    keyed = g.policies["keyed"]
    assert keyed.api_key is not None and keyed.api_key.header == "x-key"
    assert keyed.rate_limit is not None and keyed.rate_limit.per_s == 60
    assert keyed.quota is not None and (keyed.quota.day, keyed.quota.month) == (100, 2000)
    tokens = g.policies["tokens"].jwt
    assert tokens is not None and tokens.audience == ("a", "b") and tokens.leeway_s == 30
    assert tokens.jwks == str(tmp_path / "jwks.json")  # stored absolute
    again = gateway_from_dict(g.to_dict())
    assert again.policies == g.policies and again.default_policies == ("cors",)
    assert m.routes[1].to_dict()["policies"] == ["keyed", "cors"]
    assert "policies" not in m.routes[0].to_dict()


def test_every_mistake_names_its_key(tmp_path: Path) -> None:
    path = tmp_path / "nimbus.toml"
    msg = problems(
        tmp_path,
        FN
        + """
[gateway]
default_policies = ["nope"]
colour = "blue"

[gateway.policies.a]
api_key = { header = "x key" }
rate_limit = { per = "soon", burst = -1, key = "moon" }
cors = { origins = ["*"], credentials = true, methods = ["FETCH"] }

[gateway.policies.b]
jwt = { algorithms = ["HS256", "RS256", "none"], secret = "s", public_key = "missing.pem" }
quota = {}

[gateway.policies.c]
authorizer = { function = "ghost", cache_ttl = "forever" }
request = { body = { x = "$.nowhere.y" }, path = "no-slash", remove_headers = "x" }
response = { status = { "700" = 200 }, pick = "items" }

[gateway.policies.empty]

[[routes]]
path = "/x"
function = "fn"
policies = ["a", "b", "unknown"]
""",
    )
    expected = {
        "gateway.default_policies": "names no policy: 'nope'",
        "gateway.colour": "unknown key",
        "gateway.policies.a.api_key.header": "expected a header name",
        "gateway.policies.a.rate_limit.per": "expected a duration",
        "gateway.policies.a.rate_limit.burst": "expected an integer >= 0",
        "gateway.policies.a.rate_limit.key": "expected one of ip, api_key, subject",
        "gateway.policies.a.cors.credentials": "cannot be allowed for every origin",
        "gateway.policies.a.cors.methods": "unknown method 'FETCH'",
        "gateway.policies.b.jwt.algorithms": "unsupported algorithm 'none'",
        "gateway.policies.b.jwt.public_key": "cannot read",
        "gateway.policies.c.authorizer.function": "names no function: 'ghost'",
        "gateway.policies.c.authorizer.cache_ttl": "expected a duration",
        "gateway.policies.c.request.body.x": "a path is '$.ROOT…'",
        "gateway.policies.c.request.path": "starts with '/'",
        "gateway.policies.c.request.remove_headers": "expected a list of strings",
        "gateway.policies.c.response.status": "maps a status code",
        "gateway.policies.c.response.pick": "a JSON pointer starts with '/'",
        "routes[0].policies": "names no policy: 'unknown'",
    }
    for key, words in expected.items():
        assert_problem(msg, path, key, words)
    assert "gateway.policies.a.rate_limit: a rate limit needs 'rate'" in msg
    assert "gateway.policies.b.quota: a quota sets 'day' or 'month'" in msg
    assert "gateway.policies.b.jwt: a jwt policy takes exactly one of" in msg
    assert "gateway.policies.empty: a policy sets at least one of" in msg
    assert_problem(msg, path, "routes[0].policies", "'a' and 'b' both set authentication")


def test_chains_that_cannot_work_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "nimbus.toml"
    msg = problems(
        tmp_path,
        FN
        + """
[gateway.policies.k1]
api_key = {}
[gateway.policies.k2]
api_key = { header = "x-other" }
[gateway.policies.plan]
quota = { day = 1 }
[gateway.policies.by-subject]
rate_limit = { rate = 1, key = "subject" }

[[routes]]
path = "/a"
function = "fn"
policies = ["k1", "k2"]

[[routes]]
path = "/b"
function = "fn"
policies = ["plan", "by-subject"]
""",
    )
    assert_problem(msg, path, "routes[0].policies", "'k1' and 'k2' both set authentication")
    assert_problem(msg, path, "routes[1].policies", "quota, which needs an authenticated caller")
    assert_problem(msg, path, "routes[1].policies", "limits by subject, which needs authentication")


def test_a_route_without_gateway_section_keeps_working(tmp_path: Path) -> None:
    m = load_manifest(write(tmp_path, FN + ROUTE))
    assert m.gateway.policies == {} and m.routes[0].policies is None
