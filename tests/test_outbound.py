"""Outbound HTTP from guests: a real server on 127.0.0.1 standing in for a payment API,
real modules calling it through ``http_fetch``, the allowlist, SSRF checks and limits."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from host.errors import FunctionTimeout, PermissionDenied
from host.gateway.invoker import FAST_STREAK, Invoker
from host.hostcalls.addresses import choose_address, system_resolve
from host.hostcalls.fetcher import Fetcher, FetchRequest
from host.hostcalls.http import MAX_REQUESTS, idempotency_key
from host.manifest.functions import function_spec_from_dict
from host.manifest.outbound import OutboundPolicy, parse_allowed_host
from host.platform.platform import Platform
from tests.payment_server import PaymentServer

Build = Callable[[str], Path]


@pytest.fixture
def server() -> Iterator[PaymentServer]:
    s = PaymentServer().start()
    yield s
    s.stop()


@pytest.fixture
def deploy(platform: Platform, build: Build) -> Callable[..., None]:
    def _deploy(name: str, guest: str = "outbound_zig", **config: Any) -> None:
        spec = function_spec_from_dict(name, {"wasm": f"{name}.wasm", **config}, where="test")
        platform.deploy(spec, build(guest).read_bytes())

    return _deploy


def soon() -> float:
    return time.monotonic() + 30


def run(platform: Platform, fn: str, event_id: str | None = None, **spec: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"kind": "invoke", "input": spec}
    if event_id:
        event["id"] = event_id
    output: dict[str, Any] = platform.invoke(fn, event).response["output"]
    return output


def test_allowed_call_round_trips_method_headers_and_body(
    platform: Platform, deploy: Callable[..., None], server: PaymentServer
) -> None:
    deploy("pay", allowed_outbound_hosts=[server.url])
    call = {
        "url": f"{server.url}/echo?x=1",
        "method": "POST",
        "headers": {"x-order": "o-1", "content-type": "application/json"},
        "body": '{"amount": 42}',
    }
    out = run(platform, "pay", calls=[call])
    reply = out["calls"][0]["ok"]
    assert reply["status"] == 200
    assert reply["headers"]["x-echo"] == "yes"
    assert json.loads(reply["body"]) == {
        "method": "POST",
        "path": "/echo?x=1",
        "body": '{"amount": 42}',
    }
    (seen,) = server.seen
    assert seen.method == "POST" and seen.body == b'{"amount": 42}'
    assert seen.headers["x-order"] == "o-1"
    assert seen.headers["content-type"] == "application/json"
    assert len(seen.headers["idempotency-key"]) == 64
    record = platform.telemetry.recent("pay")[-1]
    assert record.outbound_requests == 1 and record.outbound_wait_ms > 0
    (usage,) = platform.services.usage.query(function="pay")
    assert usage.outbound_calls == 1 and usage.host_calls >= 1


def test_nothing_is_allowed_by_default(
    platform: Platform, deploy: Callable[..., None], server: PaymentServer
) -> None:
    deploy("plain")
    out = run(platform, "plain", calls=[{"url": f"{server.url}/echo"}])
    assert out["calls"][0]["err"] == "PermissionDenied"
    assert "allowed_outbound_hosts" in out["calls"][0]["message"]
    assert server.seen == []


def test_a_host_not_on_the_list_is_denied_with_a_logged_line(
    platform: Platform,
    deploy: Callable[..., None],
    server: PaymentServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    other = PaymentServer().start()
    try:
        deploy("pay", allowed_outbound_hosts=[server.url])
        with caplog.at_level(logging.WARNING, logger="nimbus.outbound"):
            result = platform.invoke(
                "pay", {"kind": "invoke", "input": {"calls": [{"url": f"{other.url}/echo"}]}}
            )
        failure = result.response["output"]["calls"][0]
        assert failure["err"] == "PermissionDenied"
        assert f"127.0.0.1:{other.port}" in failure["message"]
        assert other.seen == []
        lines = [r.getMessage() for r in caplog.records if r.name == "nimbus.outbound"]
        assert any(result.request_id in line and str(other.port) in line for line in lines)
        assert any("outbound request denied" in ln.message for ln in result.logs)
    finally:
        other.stop()


def test_names_resolving_to_internal_addresses_need_an_exact_entry(server: PaymentServer) -> None:
    # the real resolver: localhost is loopback, refused unless named exactly
    with pytest.raises(PermissionDenied, match="internal address"):
        choose_address("localhost", server.port, explicit=False, resolve=system_resolve)
    assert choose_address("localhost", 80, explicit=True, resolve=system_resolve) == "127.0.0.1"
    # a public-looking name under a wildcard that answers loopback or the metadata service
    rebinding = {"pay.example.com": ["127.0.0.1"], "meta.example.com": ["169.254.169.254"]}
    fetcher = Fetcher(resolve=lambda host, port: rebinding[host])
    policy = OutboundPolicy.parse([f"http://*.example.com:{server.port}"])
    for host in rebinding:
        req = FetchRequest("GET", f"http://{host}:{server.port}/echo")
        with pytest.raises(PermissionDenied, match=host):
            fetcher.fetch(req, policy, "fn", 1 << 20, deadline=soon(), hard_deadline=soon())
    fetcher.close()
    assert server.seen == []


def test_localhost_listed_exactly_is_reachable(
    platform: Platform, deploy: Callable[..., None], server: PaymentServer
) -> None:
    deploy("pay", allowed_outbound_hosts=[f"http://localhost:{server.port}"])
    out = run(platform, "pay", calls=[{"url": f"http://localhost:{server.port}/echo"}])
    assert out["calls"][0]["ok"]["status"] == 200
    # but the same server by IP is another host, not on the list
    out = run(platform, "pay", calls=[{"url": f"{server.url}/echo"}])
    assert out["calls"][0]["err"] == "PermissionDenied"


def test_the_connection_goes_to_the_address_that_was_checked(server: PaymentServer) -> None:
    """DNS rebinding: the name answers loopback once (checked, pinned), then something
    else; the request reaches the checked address, and the system resolver (which does
    not know the name) is never asked."""
    answers = iter([["127.0.0.1"], ["203.0.113.7"]])
    fetcher = Fetcher(resolve=lambda host, port: next(answers))
    policy = OutboundPolicy.parse([f"http://pinned.invalid:{server.port}"])
    req = FetchRequest("GET", f"http://pinned.invalid:{server.port}/echo")
    reply = fetcher.fetch(req, policy, "fn", 1 << 20, deadline=soon(), hard_deadline=soon())
    fetcher.close()
    assert reply.status == 200
    assert server.seen[0].headers["host"] == f"pinned.invalid:{server.port}"


def test_redirects_are_not_followed_unless_asked_and_rechecked_when_they_are(
    platform: Platform, deploy: Callable[..., None], server: PaymentServer
) -> None:
    other = PaymentServer().start()
    try:
        deploy("pay", allowed_outbound_hosts=[server.url])
        to_denied = {"url": f"{server.url}/redirect?to={other.url}/echo"}
        to_allowed = {"url": f"{server.url}/redirect?to=/echo", "follow_redirects": True}
        out = run(platform, "pay", calls=[to_denied, {**to_denied, "follow_redirects": True}])
        assert out["calls"][0]["ok"]["status"] == 302
        assert out["calls"][0]["ok"]["headers"]["location"] == f"{other.url}/echo"
        assert out["calls"][1]["err"] == "PermissionDenied"
        assert f"127.0.0.1:{other.port}" in out["calls"][1]["message"]
        assert other.seen == []
        out = run(platform, "pay", calls=[to_allowed])
        assert out["calls"][0]["ok"]["status"] == 200
        assert json.loads(out["calls"][0]["ok"]["body"])["path"] == "/echo"
    finally:
        other.stop()


def test_a_slow_server_hits_the_deadline_and_the_host_stays_responsive(
    platform: Platform, deploy: Callable[..., None], server: PaymentServer
) -> None:
    deploy("slow", allowed_outbound_hosts=[server.url], timeout="2s")
    deploy("quick", allowed_outbound_hosts=[server.url], timeout="5s")
    invoker = Invoker(platform)
    slow = {"kind": "invoke", "input": {"calls": [{"url": f"{server.url}/slow?s=8"}]}}
    quick = {"kind": "invoke", "input": {"calls": [{"url": f"{server.url}/echo"}]}}
    outcome: dict[str, Any] = {}

    async def main() -> None:
        async def slow_call() -> None:
            try:
                await invoker.invoke("slow", slow, "req-slow")
            except FunctionTimeout as e:
                outcome["slow"] = e
                outcome["answered_before_timeout"] = server.answered.is_set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(slow_call)
            await anyio.sleep(0.05)
            done_while_slow_ran = 0
            for i in range(FAST_STREAK + 5):  # enough runs to earn the inline path
                r = await invoker.invoke("quick", quick, f"req-{i}")
                assert r.response["output"]["calls"][0]["ok"]["status"] == 200
                done_while_slow_ran += "slow" not in outcome
            outcome["quick_done_while_slow_ran"] = done_while_slow_ran

    anyio.run(main)
    assert isinstance(outcome["slow"], FunctionTimeout)
    assert outcome["answered_before_timeout"] is False
    assert outcome["quick_done_while_slow_ran"] >= 1
    assert invoker._may_block("quick")  # it never ran on the event loop
    assert invoker._streak.get("quick", 0) == 0


def test_a_timeout_shorter_than_the_deadline_is_a_status(
    platform: Platform, deploy: Callable[..., None], server: PaymentServer
) -> None:
    deploy("pay", allowed_outbound_hosts=[server.url], timeout="10s")
    out = run(platform, "pay", calls=[{"url": f"{server.url}/slow?s=3", "timeout_ms": 200}])
    assert out["calls"][0]["err"] == "Timeout"


@pytest.mark.parametrize("declare", [False, True])
def test_a_huge_body_is_cut_at_the_cap(
    platform: Platform, deploy: Callable[..., None], server: PaymentServer, declare: bool
) -> None:
    deploy("pay", allowed_outbound_hosts=[server.url], max_outbound_response="64KiB")
    big = f"{server.url}/big?n={64 * 1024 * 1024}" + ("&declare=1" if declare else "")
    fits = f"{server.url}/big?n={64 * 1024}&declare=1"
    out = run(platform, "pay", calls=[{"url": big}, {"url": fits}])
    assert out["calls"][0]["err"] == "TooLarge"
    assert "65536" in out["calls"][0]["message"]
    assert len(out["calls"][1]["ok"]["body"]) == 64 * 1024


def test_the_33rd_request_is_refused_and_keys_follow_the_ordinal(
    platform: Platform, deploy: Callable[..., None], server: PaymentServer
) -> None:
    deploy("pay", allowed_outbound_hosts=[server.url])
    out = run(platform, "pay", event_id="evt-7", calls=[{"url": f"{server.url}/echo"}], repeat=33)
    assert all("ok" in c for c in out["calls"][:MAX_REQUESTS])
    assert out["calls"][MAX_REQUESTS]["err"] == "LimitExceeded"
    assert len(server.seen) == MAX_REQUESTS
    expected = [idempotency_key("pay", "evt-7", n) for n in range(1, MAX_REQUESTS + 1)]
    assert server.keys() == expected
    # the same event again presents the same keys; another event, others
    run(platform, "pay", event_id="evt-7", calls=[{"url": f"{server.url}/echo"}])
    run(platform, "pay", event_id="evt-8", calls=[{"url": f"{server.url}/echo"}])
    assert server.keys()[-2] == expected[0]
    assert server.keys()[-1] == idempotency_key("pay", "evt-8", 1)


def test_a_key_the_guest_sets_is_kept(
    platform: Platform, deploy: Callable[..., None], server: PaymentServer
) -> None:
    deploy("pay", allowed_outbound_hosts=[server.url])
    call = {"url": f"{server.url}/echo", "headers": {"Idempotency-Key": "mine-1"}}
    run(platform, "pay", calls=[call])
    assert server.keys() == ["mine-1"]


def test_the_c_sdk_fetches_with_a_secret(
    platform: Platform, deploy: Callable[..., None], server: PaymentServer
) -> None:
    platform.secrets.set("PAY_KEY", b"Bearer sk-c-123")
    deploy("payc", "outbound_c", allowed_outbound_hosts=[server.url], secrets=["PAY_KEY"])
    out = run(platform, "payc", url=f"{server.url}/echo", secret="PAY_KEY", body='{"n": 1}')
    fetched, secret = out
    assert fetched[0] == 0 and fetched[1]["status"] == 200
    assert secret == [0, b"Bearer sk-c-123"]
    assert server.seen[0].headers["authorization"] == "Bearer sk-c-123"
    assert server.seen[0].body == b'{"n": 1}'


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("payments.example.com", "needs a scheme"),
        ("ftp://x.com", "needs a scheme"),
        ("https://x.com/path", "without a path"),
        ("https://x.com:99999", "port"),
        ("https://a.*.com", "not a host name"),
    ],
)
def test_bad_allowlist_entries_say_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_allowed_host(text)


def test_allowlist_matching() -> None:
    policy = OutboundPolicy.parse(
        ["https://*.example.com", "http://127.0.0.1:9000", "http://localhost:*"]
    )
    assert policy.match("https", "pay.example.com", 443) is not None
    assert policy.match("https", "example.com", 443) is None
    assert policy.match("http", "pay.example.com", 80) is None  # scheme
    assert policy.match("https", "pay.example.com", 8443) is None  # default port only
    assert policy.match("http", "127.0.0.1", 9000) is not None
    assert policy.match("http", "127.0.0.1", 9001) is None
    assert policy.match("http", "localhost", 12345) is not None
    assert str(parse_allowed_host("https://[::1]:8443")) == "https://[::1]:8443"


def test_the_python_sdk_fetches_with_a_secret(
    platform: Platform, deploy: Callable[..., None], server: PaymentServer
) -> None:
    platform.secrets.set("PAY_KEY", b"sk-py-9")
    deploy(
        "paypy",
        "outbound_py",
        allowed_outbound_hosts=[server.url],
        secrets=["PAY_KEY"],
        memory="96MiB",
    )
    denied = "https://elsewhere.example.com/x"
    result = platform.invoke(
        "paypy", {"kind": "invoke", "input": {"url": f"{server.url}/echo", "denied": denied}}
    )
    out = result.response["output"]
    assert out["status"] == 200 and out["x-echo"] == "yes"
    assert out["echo"] == {"method": "POST", "path": "/echo", "body": '{"amount": 42}'}
    assert "https://elsewhere.example.com" in out["denied"]
    assert "NOT_GRANTED" in out["secret_denied"]
    (seen,) = server.seen
    assert seen.headers["authorization"] == "Bearer sk-py-9"
    assert seen.headers["content-type"] == "application/json"
    assert seen.headers["idempotency-key"] == idempotency_key("paypy", result.request_id, 1)


def test_hostile_headers_are_a_status_and_framing_headers_are_the_hosts(
    platform: Platform, deploy: Callable[..., None], server: PaymentServer
) -> None:
    deploy("pay", allowed_outbound_hosts=[server.url])
    forged = {"host": "admin.internal", "content-length": "999", "x-ok": "1"}
    out = run(
        platform,
        "pay",
        calls=[
            {"url": f"{server.url}/echo", "headers": {"bad\r\nname": "x"}},
            {"url": f"{server.url}/echo", "headers": forged},
            {"url": "file:///etc/passwd"},
        ],
    )
    assert out["calls"][0]["err"] in ("Unavailable", "Invalid")
    assert out["calls"][1]["ok"]["status"] == 200
    assert out["calls"][2]["err"] == "Invalid"
    seen = server.seen[-1]
    assert seen.headers["host"] == f"127.0.0.1:{server.port}" and seen.headers["x-ok"] == "1"


def test_a_retried_workflow_step_presents_the_same_key(
    platform: Platform, deploy: Callable[..., None], server: PaymentServer
) -> None:
    deploy("pay", allowed_outbound_hosts=[server.url])
    for attempt in (1, 2):
        event = {
            "kind": "workflow",
            "id": f"run-1/charge/{attempt}",
            "workflow": "Order",
            "run_id": "run-1",
            "step": "charge",
            "attempt": attempt,
            "input": {"calls": [{"url": f"{server.url}/echo", "method": "POST"}]},
        }
        platform.invoke("pay", event)
    assert server.keys() == [idempotency_key("pay", "run-1/charge", 1)] * 2
