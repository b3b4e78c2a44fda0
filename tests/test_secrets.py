"""Secrets: encrypted in LMDB, granted per function, read by guests with ``secret_get``,
rotated without a redeploy, and never shown by the host (logs, records, admin output)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from host.errors import InvalidArgument, NotFound, ServiceUnavailable
from host.manifest.functions import function_spec_from_dict
from host.platform.platform import Platform
from host.services.secrets import KEY_FILE, KEY_FILE_ENV, Secrets
from tests.conftest import ROOT, Server

Build = Callable[[str], Path]
VALUE = b"sk-live-0123456789-plaintext-marker"


def data_files(data: Path) -> list[Path]:
    return [p for p in data.rglob("*") if p.is_file() and p.name != KEY_FILE]


def test_values_are_encrypted_at_rest_under_a_0600_key(platform: Platform) -> None:
    info = platform.secrets.set("PAYMENT_API_KEY", VALUE)
    assert platform.secrets.get("PAYMENT_API_KEY") == VALUE
    assert info.name == "PAYMENT_API_KEY" and info.created_ms == info.updated_ms
    key = platform.data_dir / KEY_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and len(key.read_bytes()) == 32
    for f in data_files(platform.data_dir):
        assert VALUE not in f.read_bytes(), f
    assert platform.secrets.get("MISSING") is None


def test_rotation_list_and_delete(platform: Platform) -> None:
    first = platform.secrets.set("A", b"one")
    second = platform.secrets.set("A", b"two")
    assert platform.secrets.get("A") == b"two"
    assert second.created_ms == first.created_ms and second.updated_ms >= first.updated_ms
    assert [s.name for s in platform.secrets.list()] == ["A"]
    platform.secrets.delete("A")
    assert platform.secrets.get("A") is None
    with pytest.raises(NotFound, match="secrets ls"):
        platform.secrets.delete("A")
    with pytest.raises(InvalidArgument, match="not a secret name"):
        platform.secrets.set("bad name", b"x")


def test_a_sealed_value_does_not_open_under_another_name_or_key(platform: Platform) -> None:
    platform.secrets.set("A", b"alpha")
    storage = platform.services.storage
    db = storage.db(b"secrets")
    storage.write(lambda txn: txn.put(b"B", txn.get(b"A", db=db), db=db))
    with pytest.raises(ServiceUnavailable, match="cannot be decrypted"):
        platform.secrets.get("B")
    other = Secrets(storage, platform.data_dir / "other.key")
    with pytest.raises(ServiceUnavailable, match="cannot be decrypted"):
        other.get("A")


def test_granted_read_denied_read_and_rotation_without_redeploy(
    platform: Platform, build: Build
) -> None:
    wasm = build("outbound_zig").read_bytes()
    granted = function_spec_from_dict("granted", {"wasm": "g.wasm", "secrets": ["PAY", "UNSET"]})
    other = function_spec_from_dict("other", {"wasm": "o.wasm"})
    platform.deploy(granted, wasm)
    platform.deploy(other, wasm)
    platform.secrets.set("PAY", VALUE)

    def read(fn: str) -> list[dict[str, Any]]:
        spec = {"secrets": ["PAY", "UNSET"]}
        result = platform.invoke(fn, {"kind": "invoke", "input": spec})
        out: list[dict[str, Any]] = result.response["output"]["secrets"]
        return out

    assert read("granted") == [{"ok": VALUE.decode()}, {"ok": None}]
    denied = read("other")[0]
    assert denied["err"] == "PermissionDenied"
    assert 'secrets = ["PAY"]' in denied["message"] and VALUE.decode() not in denied["message"]
    platform.secrets.set("PAY", b"rotated")
    assert read("granted")[0] == {"ok": "rotated"}
    # the host wrote no value anywhere it keeps: records, their logs, the deployments
    records = json.dumps([r.to_dict() for r in platform.telemetry.recent()])
    assert VALUE.decode() not in records and "rotated" not in records
    assert "PAY" in json.dumps(platform.registry.get("granted").to_dict())
    for f in data_files(platform.data_dir):
        assert VALUE not in f.read_bytes() and b"rotated" not in f.read_bytes(), f


def nimbus(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "host.cli", *args],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_cli_and_admin_api_never_show_a_value(
    start_server: Callable[..., Server], tmp_path: Path, build: Build
) -> None:
    data = tmp_path / "data"
    server = start_server("serve", "--data", str(data))
    remote = ["--url", server.url, "--token", "test-token"]
    r = nimbus("secrets", "set", "PAY", *remote, stdin=VALUE + b"\n")
    assert r.returncode == 0, r.stderr
    config = json.dumps({"secrets": ["PAY"]})
    r = nimbus("deploy", "payer", str(build("outbound_zig")), "--config", config, *remote)
    assert r.returncode == 0, r.stderr
    r = nimbus("invoke", "--remote", "payer", "--event", '{"secrets": ["PAY"]}', *remote)
    assert r.returncode == 0 and VALUE in r.stdout  # the guest chose to return it
    value_file = tmp_path / "value"
    value_file.write_bytes(b"from-a-file")
    assert nimbus("secrets", "set", "OTHER", "--file", str(value_file), *remote).returncode == 0
    listing = nimbus("secrets", "ls", *remote)
    assert b"PAY" in listing.stdout and b"OTHER" in listing.stdout
    shown = [listing, nimbus("get", "payer", *remote), nimbus("logs", *remote)]
    for out in shown:
        assert VALUE not in out.stdout + out.stderr
        assert b"from-a-file" not in out.stdout + out.stderr
    r = nimbus("secrets", "set", "EMPTY", *remote, stdin=b"")
    assert r.returncode == 1 and b"empty" in r.stderr
    assert nimbus("secrets", "rm", "OTHER", *remote).returncode == 0
    assert b"OTHER" not in nimbus("secrets", "ls", *remote).stdout
    log = server.stop()
    assert VALUE.decode() not in log
    for f in data_files(data):
        assert VALUE not in f.read_bytes(), f


def test_secrets_key_flag_on_serve_and_on_a_local_invoke(
    start_server: Callable[..., Server],
    tmp_path: Path,
    build: Build,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)
    data, key = tmp_path / "data", tmp_path / "elsewhere" / "nimbus.key"
    key.parent.mkdir()
    server = start_server("serve", "--data", str(data), "--secrets-key", str(key))
    remote = ["--url", server.url, "--token", "test-token"]
    assert nimbus("secrets", "set", "PAY", *remote, stdin=VALUE).returncode == 0
    assert b"PAY" in nimbus("secrets", "ls", *remote).stdout
    config = json.dumps({"secrets": ["PAY"]})
    r = nimbus("deploy", "payer", str(build("outbound_zig")), "--config", config, *remote)
    assert r.returncode == 0, r.stderr
    r = nimbus("invoke", "--remote", "payer", "--event", '{"secrets": ["PAY"]}', *remote)
    assert r.returncode == 0 and VALUE in r.stdout, r.stderr
    server.stop()
    assert key.is_file() and not (data / KEY_FILE).exists()  # sealed under the flag's file

    # a local run opens the data dir's secrets itself: with the flag it reads the value,
    # without it (the data dir's own, new key) the value does not open and it says why
    app = tmp_path / "app"
    app.mkdir()
    wasm = build("outbound_zig")
    (app / "nimbus.toml").write_text(f'[functions.payer]\nwasm = "{wasm}"\nsecrets = ["PAY"]\n')
    local = ["invoke", "payer", "--data", str(data), "--event", '{"secrets": ["PAY"]}']
    r = subprocess.run(
        [sys.executable, "-m", "host.cli", *local, "--secrets-key", str(key)],
        cwd=app, capture_output=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0 and VALUE in r.stdout, r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "host.cli", *local], cwd=app, capture_output=True, timeout=120
    )
    assert VALUE not in r.stdout
    assert b"cannot be decrypted" in r.stdout + r.stderr
    assert b"--secrets-key" in r.stdout + r.stderr
