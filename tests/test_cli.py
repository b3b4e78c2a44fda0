"""The ``nimbus`` command as a user runs it: real processes, real builds, real server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ROOT, Server

Start = Callable[..., Server]


def nimbus(
    *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "host.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


@pytest.mark.parametrize(
    "command",
    [
        *("up", "serve", "build", "backup", "restore", "ls", "get", "deploy", "rm", "invoke"),
        *("routes", "logs", "secrets", "keys", "new", "dev", "doctor", "completion"),
    ],
)
def test_every_command_has_help(command: str) -> None:
    r = nimbus(command, "--help")
    assert r.returncode == 0, r.stderr
    assert "usage: nimbus" in r.stdout


def test_build_is_incremental_and_shows_compiler_errors(tmp_path: Path) -> None:
    fn = tmp_path / "greet"
    shutil.copytree(ROOT / "functions" / "hello", fn, ignore=shutil.ignore_patterns("build"))
    first = nimbus("build", str(fn))
    assert first.returncode == 0, first.stderr
    assert "built" in first.stdout
    again = nimbus("build", str(fn))
    assert "up to date" in again.stdout
    (fn / "main.zig").write_text((fn / "main.zig").read_text() + "\nthis is not zig\n")
    broken = nimbus("build", str(fn))
    assert broken.returncode == 1
    assert "main.zig" in broken.stderr and "error" in broken.stderr
    assert "Traceback" not in broken.stderr


def test_local_invoke_http_and_event(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    r = nimbus("invoke", "functions/hello", "--http", "GET", "/hello?name=cli", "--data", data)
    assert r.returncode == 0, r.stderr
    assert "hello, cli" in r.stdout
    assert "saying hello" in r.stderr  # the function's log line
    r = nimbus("invoke", "tests/guests/sdk_zig", "--event", '{"n": 7}', "--data", data)
    assert r.returncode == 0, r.stderr
    assert '"n": 7' in r.stdout


def test_bad_manifest_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "nimbus.toml").write_text('[functions.hello]\nsource = "hello"\ntimeout = "soon"\n')
    r = nimbus("up", str(tmp_path), "--data", str(tmp_path / "data"))
    assert r.returncode == 1
    assert "functions.hello.timeout" in r.stderr and "duration" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_bad_store_is_one_clear_line(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    r = nimbus("serve", "--data", data, "--store", "mysql://db/x")
    assert r.returncode == 1 and "is not known" in r.stderr and "Traceback" not in r.stderr
    r = nimbus("serve", "--data", data, "--store", "postgresql://postgres@127.0.0.1:5432/none_x")
    assert r.returncode == 1 and '"none_x" does not exist' in r.stderr
    assert "Traceback" not in r.stderr
    r = nimbus("backup", str(tmp_path / "copy"), "--data", data, "--store", "postgresql://h/db")
    assert r.returncode == 1 and "pg_dump" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "nimbus.toml").write_text('[app]\nstore = "redis://x"\n')
    r = nimbus("up", str(tmp_path), "--data", data)
    assert r.returncode == 1 and "app.store" in r.stderr


def test_remote_commands_against_a_server(
    start_server: Start, tmp_path: Path, build: Callable[[str], Path]
) -> None:
    server = start_server("serve", "--data", str(tmp_path / "data"))
    remote = ["--url", server.url, "--token", "test-token"]
    r = nimbus(
        "deploy", "counter", str(build("counter_zig")), "--config", '{"timeout": "1s"}', *remote
    )
    assert r.returncode == 0, r.stderr
    assert "version 1" in r.stdout
    r = nimbus("ls", *remote)
    assert "counter" in r.stdout
    r = nimbus("invoke", "--remote", "counter", "--event", "{}", *remote)
    assert r.returncode == 0, r.stderr
    assert '"output": 1' in r.stdout
    r = nimbus("rm", "counter", *remote)
    assert r.returncode == 0
    r = nimbus("get", "counter", *remote)
    assert r.returncode == 1 and "404" in r.stderr
    r = nimbus("ls", "--url", server.url, "--token", "wrong")
    assert r.returncode == 1 and "403" in r.stderr


def test_kv_blob_queue_and_backup_commands(start_server: Start, tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_server("serve", "--data", str(data))
    remote = ["--url", server.url, "--token", "test-token"]
    assert nimbus("kv", "put", "orders", "o1", '{"total": 12}', *remote).returncode == 0
    assert nimbus("kv", "put", "orders", "o2", "[1, 2]", *remote).returncode == 0
    r = nimbus("kv", "get", "orders", "o1", *remote)
    assert '"total": 12' in r.stdout and '"version": 1' in r.stdout
    r = nimbus("kv", "scan", "orders", "--prefix", "o", *remote)
    assert "o1" in r.stdout and "o2" in r.stdout
    r = nimbus("kv", "get", "orders", "nope", *remote)
    assert r.returncode == 1 and "404" in r.stderr
    (tmp_path / "f.txt").write_bytes(b"file body")
    r = nimbus(
        "blob",
        "put",
        "docs",
        "a/f.txt",
        str(tmp_path / "f.txt"),
        "--content-type",
        "text/plain",
        *remote,
    )
    assert r.returncode == 0, r.stderr
    assert "a/f.txt" in nimbus("blob", "ls", "docs", *remote).stdout
    r = nimbus("blob", "get", "docs", "a/f.txt", "-o", str(tmp_path / "out.txt"), *remote)
    assert (tmp_path / "out.txt").read_bytes() == b"file body"
    assert nimbus("queue", "send", "jobs", '{"n": 1}', *remote).returncode == 0
    r = nimbus("queue", "peek", "jobs", *remote)
    assert '"n": 1' in r.stdout
    r = nimbus("queue", "stats", *remote)
    assert "jobs" in r.stdout
    r = nimbus("queue", "stats", "--json", *remote)  # for scripts
    assert json.loads(r.stdout)["jobs"]["depth"] == 1
    r = nimbus("kv", "scan", "orders", "--json", *remote)
    assert [item["key"] for item in json.loads(r.stdout)["items"]] == ["o1", "o2"]
    r = nimbus("routes", "--json", *remote)
    assert json.loads(r.stdout) == []
    r = nimbus("backup", str(tmp_path / "copy"), "--data", str(data))  # while serving
    assert r.returncode == 0, r.stderr
    server.stop()
    r = nimbus("restore", str(tmp_path / "copy"), "--data", str(tmp_path / "restored"))
    assert r.returncode == 0, r.stderr
    for dir in ("copy", "restored"):  # the backup serves as is, and so does a restore
        restored = start_server("serve", "--data", str(tmp_path / dir))
        r = nimbus("kv", "get", "orders", "o1", "--url", restored.url, "--token", "test-token")
        assert '"total": 12' in r.stdout
        restored.stop()
    r = nimbus("restore", str(tmp_path / "copy"), "--data", str(tmp_path / "restored"))
    assert r.returncode == 1 and "not empty" in r.stderr
