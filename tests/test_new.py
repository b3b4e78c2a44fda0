"""``nimbus new``: every language × trigger template builds, answers a local invoke and
answers through a served app; the manifest edit keeps the user's file as written."""

from __future__ import annotations

import json
import os
import shutil
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from host.cli.new import LANGUAGES, TRIGGERS
from tests.conftest import ROOT, Server, free_port
from tests.test_cli import nimbus

COMBOS = [(lang, trigger) for lang in LANGUAGES for trigger in TRIGGERS]


def fn_name(lang: str, trigger: str) -> str:
    return f"{lang}-{trigger}"


@dataclass(frozen=True)
class ScaffoldedApp:
    """One app holding a function per template, built once for the session."""

    dir: Path
    data: Path


@pytest.fixture(scope="session")
def scaffolded(tmp_path_factory: pytest.TempPathFactory) -> ScaffoldedApp:
    """Fifteen functions from `nimbus new`, sharing one data dir: each is built (the
    Python ones take seconds) and compiled into the module cache by its own local
    invoke test, and the served app reuses both."""
    base = tmp_path_factory.mktemp("new")
    app = base / "app"
    app.mkdir()
    for lang, trigger in COMBOS:
        r = nimbus("new", fn_name(lang, trigger), "--lang", lang, "--trigger", trigger, cwd=app)
        assert r.returncode == 0, r.stderr
    return ScaffoldedApp(app, base / "data")


@pytest.mark.slow
@pytest.mark.timeout(900)  # a Python build and compile on a loaded machine
@pytest.mark.parametrize(("lang", "trigger"), COMBOS)
def test_template_answers_a_local_invoke(
    scaffolded: ScaffoldedApp, lang: str, trigger: str
) -> None:
    name = fn_name(lang, trigger)
    how = ["--http", "GET", f"/{name}/ada"] if trigger == "http" else ["--trigger", trigger]
    r = nimbus("invoke", name, *how, "--data", str(scaffolded.data), cwd=scaffolded.dir)
    assert r.returncode == 0, r.stderr
    assert f"{trigger} event" in r.stderr  # the template's log line names the kind
    response = json.loads(r.stdout)
    if trigger == "http":
        assert response["headers"]["content-type"] == "application/json"
        body = response.get("output") or json.loads(response["body"])
        assert body == {"message": "hello, ada", "kind": "http", "function": name}
        return
    output = response["output"]
    assert output["kind"] == trigger
    expected = {
        "queue": ("queue", name),
        "schedule": ("schedule", name),
        "storage": ("bucket", name),
        "event": ("topic", f"{name}.example"),
    }[trigger]
    assert output[expected[0]] == expected[1]


@pytest.mark.slow
@pytest.mark.timeout(1800)  # builds and compiles all fifteen when run on its own
def test_templates_answer_through_a_served_app(scaffolded: ScaffoldedApp, tmp_path: Path) -> None:
    env = {**os.environ, "NIMBUS_ADMIN_TOKEN": "test-token", "PYTHONUNBUFFERED": "1"}
    server = Server(["up", str(scaffolded.dir), "--data", str(scaffolded.data)], free_port(), env)
    try:
        server.wait_ready(timeout=1500)  # `up` builds first what no earlier test built
        _answer_through(server, tmp_path)
    finally:
        server.stop()


def _answer_through(server: Server, tmp_path: Path) -> None:
    remote = ["--url", server.url, "--token", "test-token"]
    for lang in LANGUAGES:
        name = fn_name(lang, "http")
        r = httpx.get(f"{server.url}/{name}/ada", timeout=30)
        assert r.status_code == 200, r.text
        assert r.json() == {"message": "hello, ada", "kind": "http", "function": name}
        assert r.headers["content-type"] == "application/json"
    (tmp_path / "a.txt").write_text("a")
    for lang in LANGUAGES:
        send = {
            "queue": ["queue", "send", fn_name(lang, "queue"), '{"n": 1}'],
            "storage": ["blob", "put", fn_name(lang, "storage"), "a.txt", str(tmp_path / "a.txt")],
            "event": ["publish", f"{fn_name(lang, 'event')}.created", '{"id": 1}'],
        }
        for args in send.values():
            r = nimbus(*args, *remote)
            assert r.returncode == 0, r.stderr
        # a schedule fires at most every five minutes: its envelope goes through the
        # admin API's invoke instead, as the scheduler would hand it over
        name = fn_name(lang, "schedule")
        r = nimbus("invoke", "--remote", name, "--trigger", "schedule", *remote)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["output"]["kind"] == "schedule"
    for lang in LANGUAGES:
        for trigger in ("queue", "storage", "event"):
            record = _wait_for_invocation(fn_name(lang, trigger), remote)
            assert record["trigger"] == trigger and record["outcome"] == "ok", record
            assert any(f"{trigger} event" in message for _, message in record["logs"])


def _wait_for_invocation(name: str, remote: list[str]) -> dict[str, object]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r = nimbus("logs", "--function", name, "--json", *remote)
        assert r.returncode == 0, r.stderr
        records = json.loads(r.stdout)
        if records:
            found: dict[str, object] = records[0]
            return found
        time.sleep(0.3)
    raise AssertionError(f"{name} was never invoked by its trigger")


# --- the manifest edit ----------------------------------------------------------------


@pytest.fixture
def example_app(tmp_path: Path) -> Iterator[Path]:
    """A copy of the example app (its nimbus.toml is commented and split in sections)."""
    app = tmp_path / "app"
    shutil.copytree(ROOT / "functions", app, ignore=shutil.ignore_patterns("build"))
    yield app


def test_new_keeps_every_byte_of_the_manifest(example_app: Path) -> None:
    before = (example_app / "nimbus.toml").read_text()
    r = nimbus("new", "greet", "--lang", "c", cwd=example_app)
    assert r.returncode == 0, r.stderr
    after = (example_app / "nimbus.toml").read_text()
    assert after.startswith(before.rstrip("\n"))  # comments and layout untouched
    data = tomllib.loads(after)
    assert data["functions"]["greet"] == {"source": "greet"}
    assert [r["path"] for r in data["routes"] if r.get("function") == "greet"] == [
        "/greet",
        "/greet/{name}",
    ]
    assert len(data["routes"]) == len(tomllib.loads(before)["routes"]) + 2
    assert (example_app / "greet" / "main.c").is_file()
    assert "nimbus invoke greet --http GET /greet/ada" in r.stderr  # the next commands
    assert "nimbus dev" in r.stderr


def test_new_creates_the_manifest_when_there_is_none(tmp_path: Path) -> None:
    app = tmp_path / "shop"
    r = nimbus("new", "tick", "--lang", "zig", "--trigger", "schedule", "--app", str(app))
    assert r.returncode == 0, r.stderr
    data = tomllib.loads((app / "nimbus.toml").read_text())
    assert data["app"]["name"] == "shop"
    assert data["triggers"]["schedule"] == [
        {"name": "tick", "cron": "*/5 * * * *", "function": "tick"}
    ]
    assert "cd " in r.stderr  # run from elsewhere: the next commands start there


def test_new_refuses_a_route_that_collides_and_leaves_everything_as_it_was(
    example_app: Path,
) -> None:
    manifest = example_app / "nimbus.toml"
    manifest.write_text(
        manifest.read_text() + '\n[[routes]]\nmethod = "GET"\npath = "/greet"\nfunction = "echo"\n'
    )
    before = manifest.read_text()
    r = nimbus("new", "greet", "--lang", "zig", cwd=example_app)
    assert r.returncode == 1
    assert "collides" in r.stderr and "/greet" in r.stderr
    assert "Traceback" not in r.stderr
    assert manifest.read_text() == before
    assert not (example_app / "greet").exists()


def test_new_refuses_an_existing_function_and_a_bad_name(example_app: Path) -> None:
    r = nimbus("new", "hello", "--lang", "zig", cwd=example_app)
    assert r.returncode == 1 and "exists already" in r.stderr
    r = nimbus("new", "Greet!", "--lang", "zig", cwd=example_app)
    assert r.returncode == 1
    assert "not a function name" in r.stderr and "'greet'" in r.stderr
