"""What hosts on one PostgreSQL store now share (issue #19): the gateway's API keys,
rate-limit and quota counters, sealed secrets (under one key file every host holds)
and console sessions. First two services on one schema in this process, then two
``nimbus serve`` processes behind no balancer, each request sent to one or the other."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from host.errors import ServiceUnavailable
from host.manifest.app import load_manifest
from host.platform.apply import apply_manifest
from host.platform.platform import Platform, PlatformOptions
from host.services.console_sessions import SessionRecord
from host.services.counters import Allowance
from host.services.pg.services import PgServices
from host.services.secrets import KEY_FILE_ENV
from tests.conftest import PG_URL, ROOT
from tests.test_pg_hosts import ADMIN, Host, stop, store  # noqa: F401 (a fixture)

Build = Callable[[str], Path]


@pytest.fixture
def two(tmp_path: Path) -> Iterator[tuple[PgServices, PgServices]]:
    """Two hosts' services on one fresh schema (dropped after the test)."""
    schema = f"s_{uuid.uuid4().hex[:16]}"
    a = PgServices(PG_URL, tmp_path / "a", schema=schema)
    b = PgServices(PG_URL, tmp_path / "b", schema=schema)
    yield a, b
    b.close()
    a.close()
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE".encode())


def test_a_quota_is_one_count_across_hosts_under_concurrent_charges(
    two: tuple[PgServices, PgServices],
) -> None:
    limit, resets = 25, time.time() + 3600
    allowance = Allowance(b"q/plan/k1", limit, resets)
    allowed: list[bool] = []

    def charge(services: PgServices) -> None:
        for _ in range(20):
            allowed.append(services.counters.charge(None, [allowance], time.time()).allowed)

    threads = [threading.Thread(target=charge, args=(s,)) for s in (*two, *two)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(allowed) == 80 and allowed.count(True) == limit
    assert two[1].counters.usage(allowance.key) == limit
    # a new period starts from zero, on either host
    later = Allowance(allowance.key, limit, resets + 3600)
    charged = two[1].counters.charge(None, [later], resets + 1)
    assert charged.allowed and charged.left == (limit - 1,)


def test_a_bucket_is_shared_and_refills(two: tuple[PgServices, PgServices]) -> None:
    from host.services.counters import Bucket

    bucket = Bucket(b"b/ip/1", rate_per_s=1.0, capacity=3)
    now = 1000.0
    answers = [two[i % 2].counters.charge(bucket, [], now).allowed for i in range(5)]
    assert answers == [True, True, True, False, False]
    refilled = two[0].counters.charge(bucket, [], now + 1.0)
    assert refilled.allowed and refilled.remaining == pytest.approx(0.0)


def test_a_charge_with_a_quota_and_a_bucket_writes_nothing_when_either_refuses(
    two: tuple[PgServices, PgServices],
) -> None:
    from host.services.counters import Bucket

    a, b = (s.counters for s in two)
    bucket = Bucket(b"b/key/1", rate_per_s=0.001, capacity=2)
    plan = Allowance(b"q/day/1", 3, 10_000.0)
    first, second = a.charge(bucket, [plan], 100.0), b.charge(bucket, [plan], 100.0)
    assert first.allowed and second.allowed and second.left == (1,)
    empty = a.charge(bucket, [plan], 100.0)  # the bucket says no: the quota keeps its call
    assert not empty.allowed and empty.exhausted is None and empty.retry_after_s > 0
    assert b.usage(plan.key) == 2
    assert b.charge(None, [plan], 100.0).allowed  # the third call of the day
    refused = a.charge(bucket, [plan], 5000.0)  # the quota says no; the bucket is full again
    assert not refused.allowed and refused.exhausted == plan
    assert b.charge(bucket, [], 5000.0).remaining == pytest.approx(1.0)  # no token was taken


def test_a_key_made_on_one_host_works_on_the_other_and_a_revocation_is_seen_within_a_second(
    two: tuple[PgServices, PgServices],
) -> None:
    a, b = two
    key, text = a.api_keys.create("partner")
    found = b.api_keys.lookup(text)
    assert found is not None and found.id == key.id and not found.revoked_ms
    assert b.api_keys.lookup(text[:-2] + "xx") is None
    assert [k.id for k in b.api_keys.list()] == [key.id]
    seen = b.api_keys.generation()
    a.api_keys.revoke(key.id)
    revoked = time.monotonic()
    while b.api_keys.generation() == seen:  # what the gateway's key cache watches
        assert time.monotonic() - revoked < 1.0, "B did not notice the revocation"
        time.sleep(0.01)
    again = b.api_keys.lookup(text)
    assert again is not None and again.revoked_ms


def test_secrets_are_shared_under_one_key_file_and_another_key_is_refused(
    two: tuple[PgServices, PgServices], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = two
    key_file = tmp_path / "shared.key"
    a.open_secrets(key_file).set("PAY", b"s3cret")
    assert b.open_secrets(key_file).get("PAY") == b"s3cret"
    with psycopg.connect(PG_URL, autocommit=True) as conn:  # sealed; the key is not there
        schema = a.storage.schema
        rows = conn.execute(f"SELECT record FROM {schema}.secrets").fetchall()
        checks = conn.execute(f"SELECT key_check FROM {schema}.secrets_key").fetchall()
    assert len(rows) == 1 and b"s3cret" not in bytes(rows[0][0])
    assert key_file.read_bytes() not in bytes(checks[0][0]) + bytes(rows[0][0])
    with caplog.at_level(logging.WARNING, "nimbus.secrets"):  # said at start too
        missing = b.open_secrets(tmp_path / "missing.key")
    assert KEY_FILE_ENV in caplog.text and "missing" in caplog.text
    with pytest.raises(ServiceUnavailable, match=KEY_FILE_ENV):  # no file: not made anew
        missing.get("PAY")
    assert not (tmp_path / "missing.key").exists()
    other = tmp_path / "other.key"
    other.write_bytes(b"\x01" * 32)
    other.chmod(0o600)
    with pytest.raises(ServiceUnavailable, match=KEY_FILE_ENV):
        b.open_secrets(other).set("PAY", b"overwritten?")
    assert a.open_secrets(key_file).get("PAY") == b"s3cret"


def test_console_sessions_are_shared(two: tuple[PgServices, PgServices]) -> None:
    a, b = two
    a.console_sessions.put("s1", SessionRecord("csrf", 2000, "fp"), now_ms=1000)
    assert b.console_sessions.get("s1") == SessionRecord("csrf", 2000, "fp")
    b.console_sessions.put("s2", SessionRecord("c2", 9000, "fp"), now_ms=3000)  # purges s1
    assert a.console_sessions.get("s1") is None
    b.console_sessions.delete("s2")  # a logout on B ends it on A
    assert a.console_sessions.get("s2") is None


APP = """
[functions.mirror]
wasm = "{mirror}"

[functions.payer]
wasm = "{outbound}"
secrets = ["PAY"]

[gateway.policies.key]
api_key = {{}}

[gateway.policies.plan]
quota = {{ day = {quota} }}

[[routes]]
method = "GET"
path = "/k"
function = "mirror"
policies = ["key"]

[[routes]]
method = "GET"
path = "/plan"
function = "mirror"
policies = ["key", "plan"]
"""
QUOTA = 5


def test_two_serve_processes_share_keys_quotas_and_secrets(
    tmp_path: Path,
    build: Build,
    store: str,  # noqa: F811 (the fixture imported above)
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(KEY_FILE_ENV, str(tmp_path / "secrets.key"))  # both hosts' key
    app = tmp_path / "app"
    app.mkdir()
    text = APP.format(mirror=build("mirror_zig"), outbound=build("outbound_zig"), quota=QUOTA)
    (app / "nimbus.toml").write_text(text)
    admin = Platform(tmp_path / "admin", PlatformOptions(store=store))
    try:
        apply_manifest(admin, load_manifest(app))
    finally:
        admin.close()
    hosts = [Host(tmp_path / f"h{i}", store) for i in range(2)]
    try:
        for h in hosts:
            h.wait_ready()
        a, b = (h.url for h in hosts)
        made = httpx.post(f"{a}/_admin/keys", json={"name": "partner"}, headers=ADMIN)
        assert made.status_code in (200, 201), made.text
        key = made.json()
        auth = {"x-api-key": key["api_key"]}
        assert httpx.get(f"{b}/k", headers=auth).status_code == 200

        # a quota of N across both hosts: the N+1-th call is refused, whichever answers
        codes = [httpx.get(f"{(a, b)[i % 2]}/plan", headers=auth).status_code for i in range(8)]
        assert codes == [200] * QUOTA + [429] * (8 - QUOTA), codes

        assert httpx.delete(f"{a}/_admin/keys/{key['id']}", headers=ADMIN).is_success
        revoked = time.monotonic()
        while (status := httpx.get(f"{b}/k", headers=auth).status_code) == 200:
            assert time.monotonic() - revoked < 1.0, "B still takes the revoked key"
            time.sleep(0.02)
        assert status == 401

        put = httpx.put(f"{a}/_admin/secrets/PAY", content=b"s3cret-value", headers=ADMIN)
        assert put.is_success, put.text
        r = httpx.post(
            f"{b}/_admin/functions/payer/invoke",
            json={"secrets": ["PAY"]},
            headers=ADMIN,
            timeout=60,
        )
        assert r.status_code == 200 and "s3cret-value" in r.text, r.text
    finally:
        for h in hosts:
            stop(h)


PAYER = """
[functions.payer]
wasm = "{outbound}"
secrets = ["PAY"]
"""


def test_secrets_key_flag_on_serve_wins_over_the_variable_and_another_key_is_refused(
    tmp_path: Path,
    build: Build,
    store: str,  # noqa: F811 (the fixture imported above)
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key, other = tmp_path / "shared.key", tmp_path / "other.key"
    other.write_bytes(os.urandom(32))
    other.chmod(0o600)
    app = tmp_path / "app"
    app.mkdir()
    (app / "nimbus.toml").write_text(PAYER.format(outbound=build("outbound_zig")))
    admin = Platform(tmp_path / "admin", PlatformOptions(store=store))
    try:
        apply_manifest(admin, load_manifest(app))
    finally:
        admin.close()

    def read(url: str) -> str:
        r = httpx.post(
            f"{url}/_admin/functions/payer/invoke",
            json={"secrets": ["PAY"]},
            headers=ADMIN,
            timeout=60,
        )
        return r.text

    monkeypatch.delenv(KEY_FILE_ENV, raising=False)
    a = Host(tmp_path / "a", store, args=("--secrets-key", str(key)))
    monkeypatch.setenv(KEY_FILE_ENV, str(key))  # B's variable names the right key ...
    b = Host(tmp_path / "b", store, args=("--secrets-key", str(other)))  # ... its flag wins
    hosts = [a, b]
    try:
        a.wait_ready()
        put = nimbus_cli("secrets", "set", "PAY", "--url", a.url, "--token", "t", stdin=b"v4lue")
        assert put.returncode == 0, put.stderr
        assert key.is_file()  # the first seal made the flag's file
        assert "v4lue" in read(a.url)
        b.wait_ready()
        refused = read(b.url)
        assert "v4lue" not in refused and "--secrets-key" in refused, refused
        assert "not the key" in refused
        c = Host(tmp_path / "c", store)  # no flag: the variable's (the right) key
        hosts.append(c)
        c.wait_ready()
        assert "v4lue" in read(c.url)
        listed = nimbus_cli("secrets", "ls", "--url", c.url, "--token", "t")
        assert b"PAY" in listed.stdout
    finally:
        for h in hosts:
            stop(h)


def nimbus_cli(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "host.cli", *args],
        cwd=ROOT, input=stdin, capture_output=True, timeout=120,
    )  # fmt: skip
