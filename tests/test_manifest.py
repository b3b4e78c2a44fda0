"""The app manifest (host/manifest/): the example app, every kind of mistake, grants."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from host.errors import ManifestError
from host.manifest.app import Manifest, load_manifest
from host.manifest.functions import FunctionSpec, function_spec_from_dict
from host.manifest.grants import Grants, topic_matches
from host.manifest.routes import Route, route_from_dict, routes_from_list
from host.manifest.triggers import triggers_from_dict
from host.manifest.workflows import parse_workflows
from host.platform.apply import apply_manifest
from host.platform.platform import Platform

ROOT = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024


def write(tmp_path: Path, text: str) -> Path:
    """A manifest in ``tmp_path`` with a function directory ``fn`` beside it."""
    (tmp_path / "fn").mkdir(exist_ok=True)
    path = tmp_path / "nimbus.toml"
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str) -> str:
    """The message of the ManifestError that loading ``text`` raises."""
    path = write(tmp_path, text)
    with pytest.raises(ManifestError) as e:
        load_manifest(path)
    return str(e.value)


def assert_problem(message: str, path: Path, key: str, expected: str) -> None:
    """One line of ``message`` names the file, the key and what was expected."""
    lines = [ln for ln in message.splitlines() if f": {key}: " in ln]
    assert lines, f"no problem reported for {key!r} in:\n{message}"
    assert any(ln.startswith(f"{path}: ") and expected in ln for ln in lines), message


FN = '[functions.fn]\nsource = "fn"\n'


# --- the example app --------------------------------------------------------------------


def test_the_example_manifest_loads() -> None:
    m = load_manifest(ROOT / "functions")
    assert m.name == "example"
    assert m.path == ROOT / "functions" / "nimbus.toml"
    assert m.base_dir == ROOT / "functions"
    assert {"hello", "echo", "HandleOrderCreated", "HandleGetOrder"} <= set(m.functions)
    hello = m.functions["hello"]
    assert hello.source == ROOT / "functions" / "hello"
    assert hello.wasm is None
    assert hello.timeout_s == 2.0
    assert hello.memory_bytes == 16 * MiB
    assert m.functions["echo"].source == ROOT / "functions" / "echo"
    assert [(r.methods, r.path, r.function or r.workflow) for r in m.routes] == [
        (("GET",), "/hello", "hello"),
        (("GET",), "/hello/{name}", "hello"),
        (("POST",), "/echo", "echo"),
        (("POST",), "/orders", "OrderFulfillmentWorkflow"),
        (("POST",), "/orders/events", "PublishOrderCreated"),
        (("GET",), "/orders/{orderId}", "HandleGetOrder"),
    ]
    assert set(m.workflows) == {"OrderFulfillmentWorkflow"}
    wf = parse_workflows(m.workflows, set(m.functions))["OrderFulfillmentWorkflow"]
    assert [(n, s.function, s.on_success, s.on_failure) for n, s in wf.steps.items()] == [
        ("validateOrder", "HandleOrderCreated", "processPayment", "handleError"),
        ("processPayment", "HandleOrderValidated", "sendNotification", "handlePaymentFailure"),
        ("sendNotification", "SendOrderConfirmation", "end", "end"),
        ("handleError", "LogAndAlert", "end", "end"),
        ("handlePaymentFailure", "CancelOrder", "end", "end"),
    ]
    pay = wf.steps["processPayment"]
    assert pay.timeout_s == 30 and pay.retry.max_attempts == 4  # 3 retries
    assert pay.retry.retries("PaymentUnavailable") and not pay.retry.retries("PaymentDeclined")
    assert not wf.steps["sendNotification"].critical
    assert {(t.topic, t.function) for t in m.triggers.event} == {
        ("order.created", "HandleOrderCreated"),
        ("order.validated", "HandleOrderValidated"),
        ("payment.completed", "SendOrderConfirmation"),
        ("payment.failed", "CancelOrder"),
    }
    assert [(s.name, s.cron, s.function) for s in m.triggers.schedule] == [
        ("daily-cleanup", "0 3 * * *", "HandleDailyCleanup")
    ]
    assert [(s.bucket, s.function) for s in m.triggers.storage] == [("imports", "ImportOrders")]
    languages = {
        (m.base_dir / n / f).exists() and f
        for n in m.functions
        for f in ("handler.py", "main.zig", "main.c")
    } - {False}
    assert languages == {"handler.py", "main.zig", "main.c"}
    python = [n for n in m.functions if (m.base_dir / n / "handler.py").exists()]
    assert len(python) >= 2


def test_the_example_app_serves_through_the_platform(
    platform: Platform, build: Callable[[str], Path]
) -> None:
    build("hello")
    build("echo")
    m = load_manifest(ROOT / "functions" / "nimbus.toml")
    applied = apply_manifest(platform, m)
    assert {"hello", "echo", "HandleGetOrder"} <= {a.name for a in applied}
    assert [r.path for r in platform.registry.routes()] == [r.path for r in m.routes]
    dep = platform.registry.get("hello")
    assert dep.spec.timeout_s == 2.0 and dep.spec.memory_bytes == 16 * MiB
    event = {
        "kind": "http",
        "method": "GET",
        "path": "/hello/ada",
        "params": {"name": "ada"},
        "query": {},
        "raw_query": "",
        "headers": {},
        "body": b"",
    }
    result = platform.invoke("hello", event)
    assert result.response["status"] == 200
    assert result.response["body"] == b"hello, ada\n"


def test_defaults_and_every_function_key(tmp_path: Path) -> None:
    (tmp_path / "dist").mkdir()
    (tmp_path / "dist" / "w.wasm").write_bytes(b"\0asm")
    path = write(
        tmp_path,
        """
[app]
name = "shop"

[functions.minimal]
source = "fn"

[functions.full]
wasm = "dist/w.wasm"
timeout = "250ms"
memory = "64KiB"
max_request = "1MiB"
max_response = 2048
concurrency = 4
idle_ttl = "1m30s"
env = { GREETING = "hi", _X1 = "" }
[functions.full.grants]
tables = { orders = "read-write", audit = "read" }
buckets = { uploads = "read-write" }
queues = { jobs = "read-write" }
topics = { "order.*" = "read-write", "audit.#" = "read" }
""",
    )
    m = load_manifest(tmp_path)
    assert m.name == "shop"
    assert m.functions["minimal"] == FunctionSpec(name="minimal", source=tmp_path / "fn")
    assert m.functions["minimal"].timeout_s == 10.0
    assert m.functions["minimal"].memory_bytes == 128 * MiB
    assert m.functions["minimal"].idle_ttl_s == 300.0
    assert m.functions["minimal"].grants == Grants()
    full = m.functions["full"]
    assert full.wasm == tmp_path / "dist" / "w.wasm" and full.source is None
    assert (full.timeout_s, full.memory_bytes) == (0.25, 64 * 1024)
    assert (full.max_request_bytes, full.max_response_bytes) == (MiB, 2048)
    assert (full.max_concurrency, full.idle_ttl_s) == (4, 90.0)
    assert full.env == {"GREETING": "hi", "_X1": ""}
    assert full.grants.tables == {"orders": "read-write", "audit": "read"}
    assert path == m.path


def test_app_name_defaults_to_the_directory(tmp_path: Path) -> None:
    app = tmp_path / "my-app"
    app.mkdir()
    write(app, FN)
    assert load_manifest(app / "nimbus.toml").name == "my-app"


def test_routes_methods_forms(tmp_path: Path) -> None:
    m = load_manifest(
        write(
            tmp_path,
            FN
            + """
[[routes]]
path = "/any"
function = "fn"
[[routes]]
method = ["get", "POST", "GET"]
path = "/two/{id}"
function = "fn"
[[routes]]
methods = "*"
path = "/files/{rest...}"
function = "fn"
[[routes]]
method = "GET"
path = "/two/{id}/"
function = "fn"
""",
        )
    )
    assert [r.methods for r in m.routes] == [("*",), ("GET", "POST"), ("*",), ("GET",)]


def test_triggers_are_typed(tmp_path: Path) -> None:
    m = load_manifest(
        write(
            tmp_path,
            FN
            + """
[[triggers.queue]]
queue = "orders"
function = "fn"
batch_size = 10
visibility_timeout = "45s"
max_attempts = 3
backoff = { initial = "500ms", max = "1m", multiplier = 3 }
dead_letter = "orders-dlq"
concurrency = 2

[[triggers.schedule]]
name = "nightly"
cron = "0 3 * * *"
timezone = "Europe/Paris"
function = "fn"
missed = "skip"

[[triggers.storage]]
bucket = "uploads"
prefix = "img/"
suffix = ".png"
events = ["put"]
function = "fn"

[[triggers.event]]
topic = "order.#"
function = "fn"

[workflows.OrderFulfillment]
start = "reserve"
steps = { reserve = { function = "fn" } }
""",
        )
    )
    (q,) = m.triggers.queue
    assert (q.queue, q.function, q.batch_size, q.visibility_timeout_s, q.concurrency) == (
        "orders",
        "fn",
        10,
        45.0,
        2,
    )
    assert q.delivery.max_attempts == 3 and q.delivery.dead_letter == "orders-dlq"
    assert (q.delivery.backoff.initial_s, q.delivery.backoff.max_s) == (0.5, 60.0)
    assert q.delivery.backoff.multiplier == 3.0
    (s,) = m.triggers.schedule
    assert (s.name, s.cron, s.timezone, s.missed) == (
        "nightly",
        "0 3 * * *",
        "Europe/Paris",
        "skip",
    )
    (st,) = m.triggers.storage
    assert (st.bucket, st.prefix, st.suffix, st.events) == ("uploads", "img/", ".png", ("put",))
    assert st.delivery.max_attempts == 5
    (ev,) = m.triggers.event
    assert ev.topic == "order.#"
    assert m.workflows == {
        "OrderFulfillment": {"start": "reserve", "steps": {"reserve": {"function": "fn"}}}
    }
    assert triggers_from_dict(m.triggers_raw) == m.triggers


# --- mistakes ---------------------------------------------------------------------------


def test_unknown_keys_list_what_is_known(tmp_path: Path) -> None:
    msg = problems(tmp_path, FN + 'timeuot = "1s"\n[functions.fn.grants]\nkv = {}\n[extra]\n')
    path = tmp_path / "nimbus.toml"
    assert_problem(msg, path, "functions.fn.timeuot", "unknown key")
    assert_problem(msg, path, "functions.fn.timeuot", "timeout")
    assert_problem(msg, path, "functions.fn.grants.kv", "expected one of: buckets")
    assert_problem(msg, path, "extra", "unknown key")


def test_several_problems_are_reported_at_once(tmp_path: Path) -> None:
    msg = problems(
        tmp_path,
        '[functions.fn]\nsource = "fn"\ntimeout = "soon"\nmemory = "lots"\nconcurrency = -1\n',
    )
    path = tmp_path / "nimbus.toml"
    assert msg.startswith("3 problems:")
    assert_problem(msg, path, "functions.fn.timeout", "expected a duration like '250ms'")
    assert_problem(msg, path, "functions.fn.memory", "expected a size like '64KiB'")
    assert_problem(msg, path, "functions.fn.concurrency", "expected an integer >= 0, got -1")


@pytest.mark.parametrize(
    ("toml", "key", "expected"),
    [
        (FN + "timeout = 5.5e400\n", "functions.fn.timeout", "finite"),
        (FN + 'timeout = "0s"\n', "functions.fn.timeout", "above zero"),
        (FN + "timeout = true\n", "functions.fn.timeout", "expected a duration"),
        (FN + 'memory = "8GiB"\n', "functions.fn.memory", "64KiB (one wasm page) to 4GiB"),
        (FN + "memory = 100\n", "functions.fn.memory", "64KiB (one wasm page) to 4GiB"),
        (FN + "max_request = 0\n", "functions.fn.max_request", "above zero"),
        (FN + 'concurrency = "2"\n', "functions.fn.concurrency", "expected an integer"),
        (FN + 'env = "X=1"\n', "functions.fn.env", "expected a table of strings"),
        (FN + "env = { X = 1 }\n", "functions.fn.env.X", "expected a string, got 1"),
        (FN + 'env = { "1X" = "a" }\n', "functions.fn.env", "not an environment variable name"),
        (FN + "source2 = 1\n", "functions.fn.source2", "unknown key"),
        ("[functions.fn]\nsource = 3\n", "functions.fn.source", "expected a string, got 3"),
        ('[functions.fn]\nsource = ""\n', "functions.fn.source", "must not be empty"),
        ("functions = 3\n", "functions", "expected a table"),
        ("[functions]\nfn = 3\n", "functions.fn", "expected a table, got 3"),
        ('[app]\nname = 5\n[functions.fn]\nsource = "fn"\n', "app.name", "expected a string"),
        ("[app]\nname = 'a b'\n" + FN, "app.name", "not a valid app name"),
        (FN + "[workflows]\nW = 1\n", "workflows.W", "expected a table"),
    ],
)
def test_wrong_types_and_bad_values(tmp_path: Path, toml: str, key: str, expected: str) -> None:
    assert_problem(problems(tmp_path, toml), tmp_path / "nimbus.toml", key, expected)


def test_function_names_follow_the_pattern(tmp_path: Path) -> None:
    msg = problems(tmp_path, '[functions."9lives"]\nsource = "fn"\n')
    assert_problem(msg, tmp_path / "nimbus.toml", "functions.9lives", "must match")
    msg = problems(tmp_path, '[functions."get order"]\nsource = "fn"\n')
    assert "must match" in msg
    # the seed's names: HandleOrderCreated is a function name as written
    path = write(tmp_path, '[functions.HandleOrderCreated]\nsource = "fn"\n')
    assert "HandleOrderCreated" in load_manifest(path).functions


def test_variables_expand_in_env_and_outbound_hosts_of_a_file_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    toml = """
[functions.pay]
source = "fn"
env = { URL = "http://127.0.0.1:${PAY_PORT:-8090}", PLAIN = "$HOME ${X" }
allowed_outbound_hosts = ["http://127.0.0.1:${PAY_PORT:-8090}"]
"""
    monkeypatch.delenv("PAY_PORT", raising=False)
    fn = load_manifest(write(tmp_path, toml.replace(" ${X", ""))).functions["pay"]
    assert fn.env["URL"] == "http://127.0.0.1:8090" and fn.env["PLAIN"] == "$HOME"
    assert [str(h) for h in fn.outbound.entries] == ["http://127.0.0.1:8090"]
    monkeypatch.setenv("PAY_PORT", "9123")
    fn = load_manifest(write(tmp_path, toml.replace(" ${X", ""))).functions["pay"]
    assert fn.env["URL"] == "http://127.0.0.1:9123"
    assert [str(h) for h in fn.outbound.entries] == ["http://127.0.0.1:9123"]
    msg = problems(tmp_path, toml)
    assert "functions.pay.env.PLAIN" in msg and "starts no variable" in msg
    unset = '[functions.pay]\nsource = "fn"\nenv = { URL = "${NIMBUS_TEST_UNSET_VAR}" }\n'
    assert "NIMBUS_TEST_UNSET_VAR is not set" in problems(tmp_path, unset)
    # a deploy config is literal: the server's environment never reaches a function
    spec = function_spec_from_dict("pay", {"env": {"URL": "${PAY_PORT}"}})
    assert spec.env["URL"] == "${PAY_PORT}"


def test_module_location(tmp_path: Path) -> None:
    path = tmp_path / "nimbus.toml"
    msg = problems(tmp_path, '[functions.fn]\ntimeout = "1s"\n')
    assert_problem(msg, path, "functions.fn", "needs 'source' (a function directory) or 'wasm'")
    msg = problems(tmp_path, '[functions.fn]\nsource = "fn"\nwasm = "x.wasm"\n')
    assert_problem(msg, path, "functions.fn", "exactly one of the two")
    msg = problems(tmp_path, '[functions.fn]\nsource = "missing"\n')
    assert_problem(msg, path, "functions.fn.source", f"no such directory: {tmp_path / 'missing'}")
    msg = problems(tmp_path, '[functions.fn]\nwasm = "fn"\n')
    assert_problem(msg, path, "functions.fn.wasm", "no such file")


def test_grants_modes_and_names(tmp_path: Path) -> None:
    msg = problems(
        tmp_path,
        FN
        + """[functions.fn.grants]
tables = { orders = "write", "bad name" = "read" }
queues = { jobs = 1 }
topics = { "a.#.b" = "read", "x..y" = "read-write" }
buckets = ["uploads"]
""",
    )
    path = tmp_path / "nimbus.toml"
    assert_problem(msg, path, "functions.fn.grants.tables.orders", "'read' or 'read-write'")
    assert_problem(msg, path, "functions.fn.grants.tables.orders", "got 'write'")
    assert_problem(msg, path, 'functions.fn.grants.tables."bad name"', "not a valid table name")
    assert_problem(msg, path, "functions.fn.grants.queues.jobs", "expected a string, got 1")
    assert_problem(msg, path, 'functions.fn.grants.topics."a.#.b"', "not a topic pattern")
    assert_problem(msg, path, 'functions.fn.grants.topics."x..y"', "not a topic pattern")
    assert_problem(msg, path, "functions.fn.grants.buckets", "expected a table of strings")


def test_a_route_naming_no_function(tmp_path: Path) -> None:
    msg = problems(tmp_path, FN + '[[routes]]\npath = "/x"\nfunction = "nope"\n')
    assert_problem(msg, tmp_path / "nimbus.toml", "routes[0].function", "names no function: 'nope'")
    assert "(functions: fn)" in msg


@pytest.mark.parametrize(
    ("route", "key", "expected"),
    [
        ('path = "x"\nfunction = "fn"', "routes[0].path", "must start with '/'"),
        ('path = "/_admin/x"\nfunction = "fn"', "routes[0].path", "reserved for the admin API"),
        ('path = "/_admin"\nfunction = "fn"', "routes[0].path", "reserved"),
        ('path = "/_console/x"\nfunction = "fn"', "routes[0].path", "reserved for the web console"),
        ('path = "/a/{x}/{x}"\nfunction = "fn"', "routes[0].path", "'x' appears twice"),
        ('path = "/a/x{y}"\nfunction = "fn"', "routes[0].path", "a parameter is a whole segment"),
        ('path = "/a/{1y}"\nfunction = "fn"', "routes[0].path", "a parameter is a whole segment"),
        ('path = "/{rest...}/x"\nfunction = "fn"', "routes[0].path", "must be the last segment"),
        ('path = "/a//b"\nfunction = "fn"', "routes[0].path", "empty segment"),
        ('path = "/a b?c"\nfunction = "fn"', "routes[0].path", "URL path characters"),
        ('function = "fn"', "routes[0].path", "is required"),
        ('path = "/x"', "routes[0].function", "is required"),
        ('method = "FETCH"\npath = "/x"\nfunction = "fn"', "routes[0].method", "got 'FETCH'"),
        ('method = []\npath = "/x"\nfunction = "fn"', "routes[0].method", "expected a method"),
        ('method = 1\npath = "/x"\nfunction = "fn"', "routes[0].method", "a list of them"),
        (
            'method = "GET"\nmethods = ["GET"]\npath = "/x"\nfunction = "fn"',
            "routes[0]",
            "give one",
        ),
        ('path = "/x"\nfunction = "fn"\nhandler = "fn"', "routes[0].handler", "unknown key"),
    ],
)
def test_bad_routes(tmp_path: Path, route: str, key: str, expected: str) -> None:
    msg = problems(tmp_path, FN + "[[routes]]\n" + route + "\n")
    assert_problem(msg, tmp_path / "nimbus.toml", key, expected)


def test_routes_must_be_an_array_of_tables(tmp_path: Path) -> None:
    msg = problems(tmp_path, 'routes = "/x"\n' + FN)
    assert_problem(msg, tmp_path / "nimbus.toml", "routes", "expected an array of tables")


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (("GET", "/a/{x}"), ("GET", "/a/{y}")),
        (("GET", "/a"), ("*", "/a")),
        ((["GET", "POST"], "/a/{x}/b"), ("POST", "/a/{id}/b")),
        (("PUT", "/f/{rest...}"), ("PUT", "/f/{path...}")),
        (("GET", "/same"), ("GET", "/same")),
    ],
)
def test_colliding_routes(tmp_path: Path, a: tuple[object, str], b: tuple[object, str]) -> None:
    def route(method: object, path: str) -> str:
        m = f'"{method}"' if isinstance(method, str) else repr(method).replace("'", '"')
        return f'[[routes]]\nmethod = {m}\npath = "{path}"\nfunction = "fn"\n'

    msg = problems(tmp_path, FN + route(*a) + route(*b))
    assert_problem(msg, tmp_path / "nimbus.toml", "routes[1]", "collides with routes[0]")


def test_routes_that_do_not_collide(tmp_path: Path) -> None:
    pairs = [
        ("GET", "/a/{x}", "POST", "/a/{x}"),
        ("GET", "/a/{x}", "GET", "/a/{x}/b"),
        ("GET", "/a/{x}", "GET", "/a/b"),
        ("GET", "/a", "GET", "/a/"),
        ("GET", "/a/{x}", "GET", "/a/{x...}"),
    ]
    text = FN
    for i, (m1, p1, m2, p2) in enumerate(pairs):
        text += f'[[routes]]\nmethod = "{m1}"\npath = "/{i}{p1}"\nfunction = "fn"\n'
        text += f'[[routes]]\nmethod = "{m2}"\npath = "/{i}{p2}"\nfunction = "fn"\n'
    assert len(load_manifest(write(tmp_path, text)).routes) == 2 * len(pairs)


@pytest.mark.parametrize("kind", ["queue", "schedule", "storage", "event"])
def test_a_trigger_naming_no_function(tmp_path: Path, kind: str) -> None:
    fields = {
        "queue": 'queue = "q"',
        "schedule": 'name = "n"\ncron = "@daily"',
        "storage": 'bucket = "b"',
        "event": 'topic = "t.*"',
    }[kind]
    msg = problems(tmp_path, FN + f'[[triggers.{kind}]]\n{fields}\nfunction = "ghost"\n')
    key = f"triggers.{kind}[0].function"
    assert_problem(msg, tmp_path / "nimbus.toml", key, "names no function: 'ghost'")


@pytest.mark.parametrize(
    ("trigger", "key", "expected"),
    [
        ('[[triggers.schedule]]\nname = "n"\ncron = "61 * * * *"', "cron", "valid cron"),
        ('[[triggers.schedule]]\nname = "n"\ncron = "* *"', "cron", "valid cron"),
        (
            '[[triggers.schedule]]\nname = "n"\ncron = "@daily"\ntimezone = "Mars/Base"',
            "timezone",
            "not a known IANA time zone",
        ),
        ('[[triggers.schedule]]\nname = "n"\ncron = "@daily"\nmissed = "all"', "missed", "'skip'"),
        ('[[triggers.schedule]]\ncron = "@daily"', "name", "is required"),
        ('[[triggers.queue]]\nqueue = "has space"', "queue", "not a valid queue name"),
        ('[[triggers.queue]]\nqueue = "q"\nbatch_size = 0', "batch_size", "integer >= 1"),
        (
            '[[triggers.queue]]\nqueue = "q"\nvisibility_timeout = "0s"',
            "visibility_timeout",
            "zero",
        ),
        ('[[triggers.queue]]\nqueue = "q"\nmax_attempts = 0', "max_attempts", "integer >= 1"),
        ('[[triggers.queue]]\nqueue = "q"\ndead_letter = "!x"', "dead_letter", "not a valid"),
        (
            '[[triggers.queue]]\nqueue = "q"\nbackoff = { initial = "1m", max = "1s" }',
            "backoff.max",
            "at least 'initial'",
        ),
        (
            '[[triggers.queue]]\nqueue = "q"\nbackoff = { multiplier = 0.5 }',
            "backoff.multiplier",
            "number >= 1",
        ),
        ('[[triggers.queue]]\nqueue = "q"\nbackoff = { jitter = 1 }', "backoff.jitter", "unknown"),
        ('[[triggers.storage]]\nbucket = "b"\nevents = ["put", "get"]', "events", "'put' and"),
        ('[[triggers.storage]]\nbucket = "b"\nevents = []', "events", "non-empty list"),
        ('[[triggers.event]]\ntopic = "a.#.b"', "topic", "not a topic or pattern"),
        ('[[triggers.event]]\ntopic = "a"\nfilter = "x"', "filter", "unknown key"),
    ],
)
def test_bad_triggers(tmp_path: Path, trigger: str, key: str, expected: str) -> None:
    msg = problems(tmp_path, FN + trigger + '\nfunction = "fn"\n')
    kind = trigger.split(".")[1].split("]")[0]
    assert_problem(msg, tmp_path / "nimbus.toml", f"triggers.{kind}[0].{key}", expected)


def test_trigger_tables_and_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "nimbus.toml"
    msg = problems(tmp_path, FN + "[triggers]\nqueue = 3\ncron = []\n")
    assert_problem(msg, path, "triggers.queue", "expected an array of tables ([[triggers.queue]])")
    assert_problem(msg, path, "triggers.cron", "unknown key")
    sched = '[[triggers.schedule]]\nname = "n"\ncron = "@daily"\nfunction = "fn"\n'
    msg = problems(tmp_path, FN + sched + sched)
    assert_problem(msg, path, "triggers.schedule[1]", "two schedules named 'n'")
    queue = '[[triggers.queue]]\nqueue = "q"\nfunction = "fn"\n'
    msg = problems(tmp_path, FN + queue + queue)
    assert_problem(msg, path, "triggers.queue[1]", "appears twice")


def test_a_missing_or_broken_file(tmp_path: Path) -> None:
    with pytest.raises(ManifestError) as e:
        load_manifest(tmp_path)
    assert str(tmp_path / "nimbus.toml") in str(e.value) and "no such file" in str(e.value)
    path = write(tmp_path, '[functions.fn\nsource = "fn"\n')
    with pytest.raises(ManifestError) as e:
        load_manifest(path)
    assert str(path) in str(e.value) and "not valid TOML" in str(e.value)
    assert "line 1" in str(e.value)


# --- configs without a manifest: the admin API's deploy, the registry -------------------


def test_function_spec_from_dict_round_trips() -> None:
    config = {
        "wasm": "hello.wasm",
        "timeout": "1.5s",
        "memory": "64MiB",
        "max_request": 4096,
        "concurrency": 2,  # the older name of max_concurrency
        "min_warm": 1,
        "max_concurrency_wait": "300ms",
        "idle_ttl": "250ms",
        "env": {"A": "b"},
        "grants": {"tables": {"t": "read"}, "topics": {"a.*": "read-write"}},
    }
    spec = function_spec_from_dict("hello", config, where="deploy config")
    assert spec.wasm == Path("hello.wasm") and spec.source is None
    assert (spec.timeout_s, spec.memory_bytes, spec.max_request_bytes) == (1.5, 64 * MiB, 4096)
    assert spec.idle_ttl_s == 0.25
    assert (spec.max_concurrency, spec.max_concurrency_wait_s, spec.min_warm) == (2, 0.3, 1)
    again = function_spec_from_dict("hello", spec.to_dict(), where="registry")
    assert again == spec
    assert again.to_dict() == spec.to_dict()


def test_max_concurrency_and_its_older_name_are_not_both_given() -> None:
    with pytest.raises(ManifestError) as e:
        function_spec_from_dict("f", {"max_concurrency": 2, "concurrency": 3})
    assert "concurrency: the older name of max_concurrency" in str(e.value)
    assert function_spec_from_dict("f", {"max_concurrency": 5}).max_concurrency == 5


def test_function_spec_from_dict_needs_no_module_location() -> None:
    spec = function_spec_from_dict("bare", {})
    assert spec == FunctionSpec(name="bare")


def test_function_spec_from_dict_errors_name_where_and_key() -> None:
    with pytest.raises(ManifestError) as e:
        function_spec_from_dict(
            "Bad Name",
            {"timeout": "later", "grants": {"tables": {"t": "rw"}}, "cpu": 1},
            where="deploy config",
        )
    msg = str(e.value)
    assert "deploy config: name: function name 'Bad Name' must match" in msg
    assert "deploy config: timeout: expected a duration" in msg
    assert "deploy config: grants.tables.t: expected a mode 'read' or 'read-write'" in msg
    assert "deploy config: cpu: unknown key" in msg


def test_route_from_dict() -> None:
    route = route_from_dict({"methods": ["GET"], "path": "/a/{b}", "function": "f"})
    assert route == Route(("GET",), "/a/{b}", "f")
    assert route_from_dict(route.to_dict()) == route
    with pytest.raises(ManifestError) as e:
        route_from_dict({"method": "GET", "path": "/_admin/x", "function": "f"}, where="routes[3]")
    assert str(e.value).startswith("routes[3]: path: /_admin is reserved")


def test_triggers_from_dict_reports_where() -> None:
    with pytest.raises(ManifestError) as e:
        triggers_from_dict({"queue": [{"function": "f"}]}, where="registry")
    assert "registry: triggers.queue[0].queue: is required" in str(e.value)


# --- grants -----------------------------------------------------------------------------


def test_grants_answer_reads_and_writes() -> None:
    g = Grants(
        tables={"orders": "read-write", "audit": "read"},
        buckets={"uploads": "read"},
        queues={"jobs": "read-write"},
    )
    assert g.may_read("tables", "orders") and g.may_write("tables", "orders")
    assert g.may_read("tables", "audit") and not g.may_write("tables", "audit")
    assert not g.may_read("tables", "users")
    assert g.allows("buckets", "uploads", write=False)
    assert not g.allows("buckets", "uploads", write=True)
    assert g.may_write("queues", "jobs") and not g.may_read("queues", "other")
    assert not Grants().may_read("tables", "orders")
    with pytest.raises(ValueError, match="unknown grant kind"):
        g.allows("kv", "orders", write=False)


def test_topic_grants_match_patterns() -> None:
    g = Grants(topics={"order.*": "read-write", "audit.#": "read", "exact.one": "read-write"})
    assert g.may_write("topics", "order.created")
    assert not g.may_write("topics", "order")
    assert not g.may_write("topics", "order.created.eu")
    assert g.may_read("topics", "audit") and g.may_read("topics", "audit.a.b.c")
    assert not g.may_write("topics", "audit.a")
    assert g.may_write("topics", "exact.one") and not g.may_write("topics", "exact.two")
    assert not g.may_read("topics", "other.created")


@pytest.mark.parametrize(
    ("pattern", "topic", "matches"),
    [
        ("a.*.c", "a.b.c", True),
        ("a.*.c", "a.b.b.c", False),
        ("*", "a", True),
        ("*", "a.b", False),
        ("#", "a.b.c", True),
        ("a.#", "a", True),
        ("a.b", "a.b", True),
        ("a.b", "a.bc", False),
    ],
)
def test_topic_matches(pattern: str, topic: str, matches: bool) -> None:
    assert topic_matches(pattern, topic) is matches


def test_a_manifest_is_frozen(tmp_path: Path) -> None:
    m = load_manifest(write(tmp_path, FN))
    assert isinstance(m, Manifest)
    with pytest.raises(AttributeError):
        m.name = "other"  # type: ignore[misc]


def test_routes_from_list_checks_collisions() -> None:
    ok = [{"methods": ["GET"], "path": "/a/{x}", "function": "f"}]
    assert routes_from_list(ok) == [Route(("GET",), "/a/{x}", "f")]
    with pytest.raises(ManifestError) as e:
        routes_from_list([*ok, {"method": "*", "path": "/a/{y}", "function": "g"}], where="PUT")
    assert "PUT: routes[1]: * /a/{y} collides with routes[0] (GET /a/{x})" in str(e.value)
    with pytest.raises(ManifestError, match="expected a list of routes"):
        routes_from_list({"path": "/a"})
