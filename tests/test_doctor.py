"""``nimbus doctor``: what it finds, and that it says what to do."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.conftest import free_port
from tests.test_cli import nimbus


def _env_without_token() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "NIMBUS_ADMIN_TOKEN"}


def test_doctor_reports_a_missing_admin_token_and_the_fix(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    url = f"http://127.0.0.1:{free_port()}"
    r = nimbus("doctor", "--data", str(data), "--url", url, cwd=tmp_path, env=_env_without_token())
    assert r.returncode == 1  # a problem: scripts can gate on it
    assert f"{data / 'admin_token'} is missing" in r.stdout
    assert "nimbus up" in r.stdout  # the next thing to try
    assert f"no server answers at {url}" in r.stdout
    assert "zig" in r.stdout.lower()


def test_doctor_json_and_a_healthy_setup(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "admin_token").write_text("secret\n")
    (data / "admin_token").chmod(0o600)
    url = f"http://127.0.0.1:{free_port()}"
    r = nimbus(
        "doctor",
        "--data",
        str(data),
        "--url",
        url,
        "--json",
        cwd=tmp_path,
        env=_env_without_token(),
    )
    checks = {c["name"]: c for c in json.loads(r.stdout)}
    assert checks["admin token"]["status"] == "ok"
    assert checks["zig"]["status"] == "ok"
    assert checks["server"]["status"] == "warn" and url in checks["server"]["detail"]
    assert r.returncode == 0
