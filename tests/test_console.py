"""The web console in a real browser: Debian's Chromium driven by Playwright against a
real server on a loopback port, with real guests, a real workflow engine and LMDB.

Every page visited is screenshotted under ``tests/artifacts/`` (git-ignored).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest

from host.gateway.app import create_app
from host.manifest.app import load_manifest
from host.orchestrator.runner import WorkflowRunner
from host.platform.apply import apply_manifest
from host.platform.platform import Platform
from host.triggers.manager import TriggerManager
from tests.conftest import ROOT, serve_in_thread

playwright_sync = pytest.importorskip("playwright.sync_api")

Build = Callable[[str], Path]
TOKEN = "console-test-token"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "tests" / "artifacts"

APP = """
[functions.hello]
wasm = "{hello}"
env = {{ GREETING = "hello" }}

[functions.panic]
wasm = "{panic}"

[functions.validate]
wasm = "{step}"
env = {{ STEP = "validate" }}
grants = {{ tables = {{ wf = "read-write" }} }}

[functions.payment]
wasm = "{step}"
env = {{ STEP = "payment" }}
grants = {{ tables = {{ wf = "read-write" }} }}

[functions.ship]
wasm = "{step}"
env = {{ STEP = "ship" }}
grants = {{ tables = {{ wf = "read-write" }} }}

[functions.refund]
wasm = "{step}"
env = {{ STEP = "refund" }}
grants = {{ tables = {{ wf = "read-write" }} }}

[[routes]]
method = "GET"
path = "/hello"
function = "hello"

[[triggers.queue]]
queue = "jobs"
function = "panic"
max_attempts = 1

[workflows.Orders]
start = "validate"

[workflows.Orders.steps.validate]
function = "validate"
on_success = "pay"

[workflows.Orders.steps.pay]
function = "payment"
retry = {{ max_attempts = 3, initial = "50ms", backoff_rate = 2.0, on = ["FunctionFailed"] }}
on_success = "ship"
on_failure = "refund"

[workflows.Orders.steps.ship]
function = "ship"

[workflows.Orders.handlers.refund]
function = "refund"
input = {{ order = "$input", error = "$error" }}

[workflows.Slow]
start = "wait"

[workflows.Slow.steps.wait]
function = "payment"
retry = {{ max_attempts = 2, initial = "1h", on = ["FunctionFailed"] }}
"""


def ensure_chromium() -> str:
    """Debian's Chromium, installed with apt when missing (as root); Playwright never
    downloads a browser."""
    if not os.path.exists(CHROMIUM) and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], check=True, env=env)
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing and could not be installed: apt-get install chromium")
    return CHROMIUM


@dataclass
class Console:
    """The server under test and what the tests poke at directly."""

    url: str
    platform: Platform
    runner: WorkflowRunner

    def page_url(self, path: str = "/") -> str:
        return f"{self.url}/_console{path}"


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory, build: Build) -> Iterator[Console]:
    tmp = tmp_path_factory.mktemp("console")
    wasm = {
        k: build(v) for k, v in [("hello", "hello"), ("panic", "panic_zig"), ("step", "wfstep_zig")]
    }
    (tmp / "app").mkdir()
    (tmp / "app" / "nimbus.toml").write_text(APP.format(**{k: str(v) for k, v in wasm.items()}))
    platform = Platform(tmp / "data")
    apply_manifest(platform, load_manifest(tmp / "app"))
    runner = WorkflowRunner(platform)
    # the triggers are built (they answer for the schedules) but not run: a dead letter
    # the test makes stays put until the test replays it
    triggers = TriggerManager(platform, start_workflow=runner.start_run)
    app = create_app(platform, runner, triggers, admin_token=TOKEN, background=[runner])
    with serve_in_thread(app) as url:
        yield Console(url, platform, runner)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = ensure_chromium()
    with playwright_sync.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 820})
    p = context.new_page()
    p.set_default_timeout(15_000)
    p.on("dialog", lambda dialog: dialog.accept())
    yield p
    context.close()


def login(page: Any, console: Console, token: str = TOKEN) -> None:
    page.goto(console.page_url("/login"))
    page.fill("#token", token)
    page.click("#login")
    page.wait_for_load_state()


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"console-{name}.png"), full_page=True)


def hello(console: Console, n: int = 1, request_id: str | None = None) -> None:
    headers = {"x-request-id": request_id} if request_id else {}
    with httpx.Client(base_url=console.url) as client:
        for _ in range(n):
            assert client.get("/hello", headers=headers).status_code == 200


def cookie_of(page: Any) -> str:
    return next(c["value"] for c in page.context.cookies() if c["name"] == "nimbus_console")


# --- logging in and out ------------------------------------------------------------------


def test_login_refuses_a_wrong_token_and_accepts_the_right_one(page: Any, console: Console) -> None:
    bare = httpx.get(f"{console.url}/_console")
    assert bare.status_code == 307 and bare.headers["location"] == "/_console/"
    page.goto(console.page_url("/functions"))
    assert page.url.endswith("/_console/login")  # no session: sent to the login form
    shot(page, "login")
    login(page, console, "not-the-token")
    assert "not the admin token" in page.inner_text("#login-error")
    assert not any(c["name"] == "nimbus_console" for c in page.context.cookies())
    login(page, console)
    assert page.url == console.page_url("/")
    cookie = next(c for c in page.context.cookies() if c["name"] == "nimbus_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.locator("#logout").is_visible()


def test_logout_ends_the_session_everywhere(page: Any, console: Console) -> None:
    login(page, console)
    stolen = cookie_of(page)
    page.click("#logout")
    page.wait_for_url("**/_console/login")
    page.goto(console.page_url("/functions"))
    assert page.url.endswith("/_console/login")
    # the old cookie, replayed by anyone who kept it, is dead on the server too
    r = httpx.get(console.page_url("/functions"), cookies={"nimbus_console": stolen})
    assert r.status_code == 303 and r.headers["location"].endswith("/_console/login")


def test_a_state_change_without_the_csrf_token_is_refused(page: Any, console: Console) -> None:
    seed_dead_letter(console, {"job": "csrf"})
    login(page, console)
    session = {"nimbus_console": cookie_of(page)}
    replay = console.page_url("/queues/jobs/replay")
    before = dead_letters(console)
    with httpx.Client(cookies=session) as client:
        missing = client.post(replay, data={})
        wrong = client.post(replay, data={"csrf": "forged"})
        wrong_header = client.post(replay, headers={"x-csrf-token": "forged"})
        logout = client.post(console.page_url("/logout"))
    for r in (missing, wrong, wrong_header, logout):
        assert r.status_code == 403, r.text
        assert "CSRF" in r.text
    assert dead_letters(console) == before  # nothing was replayed
    page.goto(console.page_url("/"))
    assert page.url == console.page_url("/")  # and the refused logout did not end the session


# --- pages -------------------------------------------------------------------------------


def test_overview_charts_render_with_data(page: Any, console: Console) -> None:
    hello(console, 12)
    login(page, console)
    page.wait_for_selector("#charts[data-loaded]")
    assert page.locator("#charts canvas").count() == 4
    assert int(page.inner_text("[data-total=count]")) >= 12
    assert "hello" in page.inner_text("#top-functions")
    # the requests/s chart has drawn its series (uPlot strokes it in #2563eb)
    drawn = page.evaluate(
        """() => {
          const c = document.querySelector('[data-chart=rps] canvas');
          const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
          let n = 0;
          for (let i = 0; i < d.length; i += 4)
            if (d[i] < 80 && d[i + 1] > 70 && d[i + 1] < 130 && d[i + 2] > 200) n++;
          return n;
        }"""
    )
    assert drawn > 0
    # refreshed live: an invocation made now shows up without reloading
    count = int(page.inner_text("[data-total=count]"))
    hello(console, 3)
    page.wait_for_function(
        f"() => parseInt(document.querySelector('[data-total=count]').textContent) >= {count + 3}",
        timeout=20_000,
    )
    shot(page, "overview")


def test_invoke_a_function_from_its_page(page: Any, console: Console) -> None:
    login(page, console)
    page.goto(console.page_url("/functions"))
    assert "hello" in page.inner_text("#functions")
    shot(page, "functions")
    page.click("#functions a:text-is('hello')")
    page.wait_for_url("**/functions/hello")
    assert "tables" not in page.inner_text("#main").split("Grants")[1].split("Routes")[0]
    page.fill("#event", json.dumps({"name": "browser"}))
    page.click("#invoke")
    page.wait_for_selector("#invoke-ok")
    assert "hello" in page.inner_text("#invoke-response")
    assert "saying hello" in page.inner_text("#invoke-ok")
    shot(page, "function")
    page.click("#invoke-ok a")
    page.wait_for_url("**/invocations/req*")
    assert "invoke" in page.inner_text("#main")
    assert '"browser"' in page.inner_text("#event")  # the event it ran with
    assert "hello" in page.inner_text("#response")
    assert page.inner_text("#memory").endswith(("KiB", "MiB"))  # the guest's peak memory
    shot(page, "invocation")
    # a broken event gets a clear message, not a crash
    page.go_back()
    page.fill("#event", "{not json")
    page.click("#invoke")
    page.wait_for_selector("#invoke-error")
    assert "not valid JSON" in page.inner_text("#invoke-error")


def test_live_tail_shows_a_request_made_after_the_page_opened(page: Any, console: Console) -> None:
    login(page, console)
    page.goto(console.page_url("/invocations?function=hello"))
    page.wait_for_selector("#tail[data-live]")
    rid = f"req-tail-{time.time_ns()}"
    hello(console, request_id=rid)
    page.wait_for_selector(f"#tail tbody tr:has-text('{rid}')")
    panic = httpx.post(
        f"{console.url}/_admin/functions/panic/invoke", headers={"authorization": f"Bearer {TOKEN}"}
    )
    assert panic.status_code == 502
    page.wait_for_timeout(700)  # the filter keeps another function's rows out
    assert "panic" not in page.inner_text("#tail tbody")
    shot(page, "invocations")


def seed_dead_letter(console: Console, body: Any) -> str:
    """A message dead-lettered the way the queue trigger does it (sent, then moved)."""
    s = console.platform.services
    effects = s.begin("test")
    message_id = effects.queue_send("jobs", msgpack.packb(body))
    effects.commit()
    now = int(time.time() * 1000)
    s.consumer.dead_letter("jobs", [message_id], "jobs.dlq", now, "FunctionCrashed: panicked")
    return message_id


def dead_letters(console: Console) -> int:
    return len(console.platform.services.consumer.peek("jobs.dlq", 1000))


def test_replay_a_dead_letter_and_see_the_queue_change(page: Any, console: Console) -> None:
    first = seed_dead_letter(console, {"job": 1})
    seed_dead_letter(console, {"job": 2})
    dead = dead_letters(console)
    login(page, console)
    page.goto(console.page_url("/queues"))
    assert "jobs" in page.inner_text("#queues")
    shot(page, "queues")
    page.click("#queues a:text-is('jobs')")
    depth = int(page.inner_text("#depth"))
    assert int(page.inner_text("#dead-count")) == dead
    page.click(f"#dead-letters tr:has-text('{first}') button.replay-one")
    page.wait_for_selector("#notice")
    assert "replayed 1 message" in page.inner_text("#notice")
    assert int(page.inner_text("#depth")) == depth + 1
    assert int(page.inner_text("#dead-count")) == dead - 1
    assert '{"job": 1}' in page.inner_text("#messages")  # back in the queue, attempts reset
    shot(page, "queue")
    page.click("#replay-all")
    page.wait_for_selector(f"#notice:has-text('replayed {dead - 1} message')")
    assert int(page.inner_text("#dead-count")) == 0
    assert dead_letters(console) == 0


def test_a_failed_run_graph_shows_the_handler_that_took_over(page: Any, console: Console) -> None:
    run = console.runner.start_run("Orders", {"orderId": "o-7", "fail": ["payment"]}, None)
    deadline = time.monotonic() + 60
    while console.runner.engine().get(run["id"])["status"] == "running":
        assert time.monotonic() < deadline, "the run did not finish"
        time.sleep(0.1)
    login(page, console)
    page.goto(console.page_url("/workflows?status=failed"))
    page.click(f"#runs a:text-is('{run['id']}')")
    page.wait_for_selector("#graph")
    assert page.inner_text("#run-status") == "failed"
    handler = page.locator("#graph g[data-step=refund]")
    assert handler.get_attribute("data-kind") == "handler"
    assert handler.get_attribute("data-status") == "succeeded"
    pay = page.locator("#graph g[data-step=pay]")
    assert pay.get_attribute("data-status") == "failed"
    assert "3 attempts" in (pay.text_content() or "")
    assert page.locator("#graph g[data-step=ship]").get_attribute("data-status") == "pending"
    assert page.locator("#graph path.edge.failure.taken").count() == 1
    history = page.inner_text("#history")
    assert "after " in history and "StepFailed" in history
    shot(page, "run")
    page.goto(console.page_url("/workflows"))
    shot(page, "workflows")


def test_cancel_a_run_waiting_to_retry(page: Any, console: Console) -> None:
    run = console.runner.start_run("Slow", {"fail": ["payment"]}, None)
    deadline = time.monotonic() + 60
    while not console.runner.engine().get(run["id"])["history"]:
        assert time.monotonic() < deadline, "the first attempt did not run"
        time.sleep(0.1)
    login(page, console)
    page.goto(console.page_url(f"/runs/{run['id']}"))
    assert page.inner_text("#run-status") == "running"
    assert page.locator("#graph g[data-step=wait]").get_attribute("data-status") == "retrying"
    page.click("#cancel")
    page.wait_for_selector("#run-status:text-is('cancelled')")
    assert console.runner.engine().get(run["id"])["status"] == "cancelled"
    assert page.locator("#cancel").count() == 0


def test_data_browser_and_usage(page: Any, console: Console) -> None:
    effects = console.platform.services.begin("test")
    for i in range(60):
        effects.kv_put("wf", f"item.{i:03d}".encode(), msgpack.packb({"n": i}))
    effects.commit()
    login(page, console)
    page.goto(console.page_url("/data"))
    shot(page, "data")
    page.click("a.tag:text-is('wf')")
    page.fill("#prefix", "item.")
    page.click("#prefix-form button")
    assert page.locator("#items tbody tr").count() == 50
    page.click("#next-page")
    assert page.locator("#items tbody tr").count() == 10
    assert "item.059" in page.inner_text("#items")
    shot(page, "browse")
    for _ in range(3):
        hello(console)
    page.goto(console.page_url("/usage"))
    usage = page.inner_text("#usage")  # the metered rows (services/usage.py), per day
    assert "hello" in usage
    (row,) = [r for r in console.platform.services.usage.query("hello", 0, "day")]
    assert row.requests >= 3 and str(row.requests) in usage
    page.wait_for_selector("#charts[data-loaded] .chart canvas")
    assert page.locator("#charts .chart canvas").count() == 3
    assert page.locator("#charts[data-error]").count() == 0
    shot(page, "usage")


def test_first_load_weight(page: Any, browser: Any, console: Console) -> None:
    """The overview's first load in a browser with an empty cache (HTML, CSS, scripts,
    chart data) transfers ≤ 300 KB; the size and the times to render are written to
    tests/artifacts/page_weight.json (times are reported, never asserted)."""
    login(page, console)
    fresh = browser.new_context(viewport={"width": 1280, "height": 820})
    try:
        fresh.add_cookies([c for c in page.context.cookies() if c["name"] == "nimbus_console"])
        p = fresh.new_page()
        p.goto(console.page_url("/"))
        p.wait_for_selector("#charts[data-loaded]")
        timing = p.evaluate(
            """() => {
              const nav = performance.getEntriesByType('navigation')[0];
              const res = performance.getEntriesByType('resource');
              const paint = performance.getEntriesByName('first-contentful-paint')[0];
              return {
                html: nav.transferSize,
                resources: res.map(r => [r.name.replace(location.origin, ''), r.transferSize,
                                         Math.round(r.startTime), Math.round(r.responseEnd)]),
                html_response_end_ms: nav.responseEnd - nav.startTime,
                total: nav.transferSize + res.reduce((a, r) => a + r.transferSize, 0),
                first_contentful_paint_ms: paint ? paint.startTime : null,
                dom_content_loaded_ms: nav.domContentLoadedEventEnd - nav.startTime,
                load_ms: nav.loadEventEnd - nav.startTime,
                charts_drawn_ms: parseInt(document.getElementById('charts')
                  .getAttribute('data-loaded')) - performance.timeOrigin,
              };
            }"""
        )
    finally:
        fresh.close()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "page_weight.json").write_text(json.dumps(timing, indent=2))
    assert all(r[1] > 0 for r in timing["resources"]), timing  # nothing from a cache
    assert timing["total"] <= 300 * 1024, timing
