"""``nimbus invoke`` locally: through the app's route table and triggers, effects shown
and committed only when asked; a directory outside an app as before."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.test_cli import nimbus

VISITS = """const nimbus = @import("nimbus");

pub fn handle(ev: *const nimbus.Event, res: *nimbus.Response) !void {
    _ = ev;
    const seen = try nimbus.tables.get("visits", "n");
    const n: i64 = if (seen) |e| (e.value.integer() orelse 0) else 0;
    _ = try nimbus.tables.put("visits", "n", .{ .int = n + 1 }, .{});
    nimbus.log.info("counted a visit");
    res.output = .{ .int = n + 1 };
}
"""


@pytest.fixture
def example_app(tmp_path: Path) -> Path:
    app = tmp_path / "app"
    shutil.copytree(ROOT / "functions", app, ignore=shutil.ignore_patterns("build"))
    return app


def test_invoke_by_name_extracts_the_route_params(example_app: Path, tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    r = nimbus("invoke", "hello", "--http", "GET", "/hello/ada", "--data", data, cwd=example_app)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["body"] == "hello, ada\n"  # {name} from /hello/{name}
    assert "saying hello" in r.stderr
    # the README's form, a function directory of an app: routed through that app
    r = nimbus("invoke", "app/hello", "--http", "GET", "/hello/ada", "--data", data, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["body"] == "hello, ada\n"


def test_invoke_explains_a_path_the_function_does_not_serve(
    example_app: Path, tmp_path: Path
) -> None:
    data = str(tmp_path / "data")
    r = nimbus("invoke", "hello", "--http", "GET", "/nope", "--data", data, cwd=example_app)
    assert r.returncode == 1
    assert "no route" in r.stderr and "/hello/{name}" in r.stderr
    r = nimbus("invoke", "hello", "--http", "GET", "/echo", "--data", data, cwd=example_app)
    assert r.returncode == 1 and "allows POST" in r.stderr
    r = nimbus("invoke", "helo", "--data", data, cwd=example_app)
    assert r.returncode == 1 and "did you mean 'hello'" in r.stderr


def test_effects_are_shown_and_committed_only_with_commit(tmp_path: Path) -> None:
    app = tmp_path / "app"
    (app / "visits").mkdir(parents=True)
    (app / "visits" / "main.zig").write_text(VISITS)
    (app / "nimbus.toml").write_text(
        '[functions.visits]\nsource = "visits"\ngrants = { tables = { visits = "read-write" } }\n'
    )
    data = str(tmp_path / "data")
    for _ in range(2):
        r = nimbus("invoke", "visits", "--data", data, cwd=app)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["output"] == 1  # nothing was kept
        assert "would commit" in r.stderr and '"table.put"' in r.stderr
        assert '"visits"' in r.stderr and "counted a visit" in r.stderr
    r = nimbus("invoke", "visits", "--commit", "--data", data, cwd=app)
    assert json.loads(r.stdout)["output"] == 1
    assert "committed" in r.stderr
    r = nimbus("invoke", "visits", "--data", data, cwd=app)
    assert json.loads(r.stdout)["output"] == 2


def test_trigger_envelopes_follow_the_app(tmp_path: Path) -> None:
    app = tmp_path / "app"
    shutil.copytree(
        ROOT / "tests" / "guests" / "sdk_zig", app / "sdk", ignore=shutil.ignore_patterns("build")
    )
    (app / "nimbus.toml").write_text(
        '[functions.sdk]\nsource = "sdk"\n\n'
        '[[triggers.queue]]\nqueue = "jobs"\nfunction = "sdk"\n\n'
        '[[triggers.storage]]\nbucket = "uploads"\nprefix = "img/"\nsuffix = ".png"\n'
        'function = "sdk"\n\n'
        '[[triggers.event]]\ntopic = "order.*"\nfunction = "sdk"\n\n'
        '[[triggers.schedule]]\nname = "nightly"\ncron = "0 3 * * *"\nfunction = "sdk"\n'
    )
    data = str(tmp_path / "data")

    def run(*args: str) -> dict[str, object]:
        r = nimbus("invoke", "sdk", *args, "--data", data, cwd=app)
        assert r.returncode == 0, r.stderr
        out: dict[str, object] = json.loads(r.stdout)["output"]
        return out

    queue = run("--trigger", "queue", "--event", '{"n": 5}')
    assert queue["kind"] == "queue" and queue["count"] == 1 and queue["first_body"] == {"n": 5}
    storage = run("--trigger", "storage")
    assert storage["bucket"] == "uploads" and storage["key"] == "img/example.png"
    storage = run("--trigger", "storage", "--event", '{"key": "img/cat.png", "op": "delete"}')
    assert storage["key"] == "img/cat.png" and storage["op"] == "delete"
    event = run("--trigger", "event", "--event", '{"id": 3}')
    assert event["topic"] == "order.example" and event["payload"] == {"id": 3}
    schedule = run("--trigger", "schedule")
    assert schedule["schedule"] == "nightly"


def test_a_directory_outside_any_app_runs_as_before(tmp_path: Path) -> None:
    fn = tmp_path / "lonely"
    shutil.copytree(ROOT / "functions" / "hello", fn, ignore=shutil.ignore_patterns("build"))
    r = nimbus("invoke", str(fn), "--http", "GET", "/x?name=solo", "--data", str(tmp_path / "d"))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["body"] == "hello, solo\n"


GUARDED = """
[functions.hello]
source = "hello"

[gateway.policies.key]
api_key = {}
rate_limit = { rate = 1, per = "1h", burst = 1, key = "api_key" }
cors = { origins = ["https://shop.example"] }
response = { set_headers = { cache-control = "no-store" } }

[gateway.policies.hs]
jwt = { algorithms = ["HS256"], secret = "a-local-secret-of-32-bytes-or-more!" }

[[routes]]
method = "GET"
path = "/keyed/{name}"
function = "hello"
policies = ["key"]

[[routes]]
method = "GET"
path = "/jwt/{name}"
function = "hello"
policies = ["hs"]
"""


def test_local_http_invoke_applies_the_routes_policies(tmp_path: Path) -> None:
    import jwt

    from host.platform.platform import Platform

    app = tmp_path / "app"
    app.mkdir()
    shutil.copytree(
        ROOT / "functions" / "hello", app / "hello", ignore=shutil.ignore_patterns("build")
    )
    (app / "nimbus.toml").write_text(GUARDED)
    data = str(tmp_path / "data")
    platform = Platform(Path(data))  # a key of the data dir, as `nimbus keys create` makes
    try:
        _, key = platform.services.api_keys.create("dev")
    finally:
        platform.close()

    def call(path: str, *args: str) -> tuple[int, dict[str, object], str]:
        r = nimbus("invoke", "hello", "--http", "GET", path, *args, "--data", data, cwd=app)
        return r.returncode, json.loads(r.stdout or "{}"), r.stderr

    code, answer, stderr = call("/keyed/ada")
    assert code == 1 and answer["status"] == 401
    assert "refused by the route's policies (key)" in stderr and "--header" in stderr
    assert "saying hello" not in stderr  # the function never ran
    code, answer, stderr = call("/keyed/ada", "-H", "x-api-key: wrong")
    assert code == 1 and "not valid" in stderr

    origin = ("-H", "origin: https://shop.example")
    for _ in range(2):  # a dry run charges a throwaway bucket: a first call each time
        code, answer, stderr = call("/keyed/ada", "-H", f"x-api-key: {key}", *origin)
        assert code == 0, stderr
        assert answer["status"] == 200 and answer["body"] == "hello, ada\n"
        headers = answer["headers"]
        assert isinstance(headers, dict)
        assert headers["cache-control"] == "no-store"  # the response transform
        assert headers["access-control-allow-origin"] == "https://shop.example"
        assert headers["ratelimit"] == '"key";r=0;t=3600'  # a full bucket of 1, charged
    code, _, stderr = call("/keyed/ada", "-H", f"x-api-key: {key}", "--commit")
    assert code == 0, stderr
    code, answer, stderr = call("/keyed/ada", "-H", f"x-api-key: {key}", "--commit")
    assert code == 1 and answer["status"] == 429  # --commit charges the data dir's bucket

    secret = "a-local-secret-of-32-bytes-or-more!"
    token = jwt.encode({"sub": "ada", "exp": 2**31}, secret, algorithm="HS256")
    code, answer, stderr = call("/jwt/ada", "-H", f"authorization: Bearer {token}")
    assert code == 0 and answer["body"] == "hello, ada\n", stderr
    code, answer, stderr = call("/jwt/ada", "-H", "authorization: Bearer x.y.z")
    assert code == 1 and answer["status"] == 401 and "token" in stderr
    code, _, stderr = call("/jwt/ada", "-H", "no colon")
    assert code == 1 and "NAME: VALUE" in stderr
