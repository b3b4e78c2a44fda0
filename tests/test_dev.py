"""``nimbus dev``: a real dev process on a temp app, edited the way a user edits it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, free_port
from tests.test_cli import nimbus

MAIN = """const nimbus = @import("nimbus");

pub fn handle(ev: *const nimbus.Event, res: *nimbus.Response) !void {
    _ = ev;
    nimbus.log.info("answering");
    res.text(200, "TEXT");
}
"""


class Dev:
    """A running `nimbus dev`, its output collected in a file."""

    def __init__(self, app: Path, data: Path, log: Path, args: Sequence[str] = ()) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self._out = log.open("wb")
        port = ["--port", str(self.port), *args]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "host.cli", "dev", str(app), "--data", str(data), *port],
            cwd=ROOT,
            env={**os.environ, "NIMBUS_ADMIN_TOKEN": "t", "PYTHONUNBUFFERED": "1"},
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, check: Callable[[], bool], what: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"nimbus dev exited:\n{self.output()}"
            try:
                if check():
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{what} did not happen; nimbus dev said:\n{self.output()}")

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._out.close()


def greet_app(tmp_path: Path) -> Path:
    app = tmp_path / "app"
    (app / "greet").mkdir(parents=True)
    (app / "greet" / "main.zig").write_text(MAIN.replace("TEXT", "first"))
    (app / "nimbus.toml").write_text(
        "# a comment the dev loop must not care about\n"
        '[functions.greet]\nsource = "greet"\n\n'
        '[[routes]]\nmethod = "GET"\npath = "/greet"\nfunction = "greet"\n'
    )
    return app


@pytest.fixture
def dev_app(tmp_path: Path) -> Iterator[tuple[Path, Dev]]:
    app = greet_app(tmp_path)
    dev = Dev(app, tmp_path / "data", tmp_path / "dev.log")
    try:
        dev.wait_for(lambda: dev.get("/greet").text == "first", "serving the first version")
        dev.wait_for(lambda: "watching" in dev.output(), "the watcher starting")
        yield app, dev
    finally:
        dev.stop()


def test_a_saved_zig_change_serves_the_new_text(dev_app: tuple[Path, Dev]) -> None:
    app, dev = dev_app
    (app / "greet" / "main.zig").write_text(MAIN.replace("TEXT", "second"))
    dev.wait_for(lambda: dev.get("/greet").text == "second", "serving the second version")
    dev.wait_for(lambda: "rebuilt greet (zig)" in dev.output(), "the status line")


def test_a_syntax_error_keeps_the_old_version_and_shows_the_compiler(
    dev_app: tuple[Path, Dev],
) -> None:
    app, dev = dev_app
    (app / "greet" / "main.zig").write_text(MAIN.replace("TEXT", "broken") + "\nthis is not zig\n")
    # the status line and the compiler's message are two writes: wait for both
    dev.wait_for(
        lambda: "BuildError" in dev.output() and "main.zig:9:" in dev.output(),
        "the failed build being reported with the compiler's message",
    )
    out = dev.output()
    assert "main.zig:9:" in out and "error:" in out  # the compiler's own message, verbatim
    assert "previous version keeps serving" in out
    assert dev.get("/greet").text == "first"
    (app / "greet" / "main.zig").write_text(MAIN.replace("TEXT", "fixed"))
    dev.wait_for(lambda: dev.get("/greet").text == "fixed", "serving the fixed version")


def test_a_manifest_edit_adds_a_route_live(dev_app: tuple[Path, Dev]) -> None:
    app, dev = dev_app
    assert dev.get("/hi/there").status_code == 404
    manifest = app / "nimbus.toml"
    manifest.write_text(
        manifest.read_text()
        + '\n[[routes]]\nmethod = "GET"\npath = "/hi/{x}"\nfunction = "greet"\n'
    )
    dev.wait_for(lambda: dev.get("/hi/there").status_code == 200, "the new route serving")
    assert dev.get("/hi/there").text == "first"
    assert "re-applied nimbus.toml" in dev.output()
    # a typo is reported with a suggestion, and what was serving keeps serving
    manifest.write_text(manifest.read_text().replace('source = "greet"', 'sorce = "greet"'))
    dev.wait_for(lambda: "did you mean 'source'" in dev.output(), "the typo being reported")
    assert dev.get("/hi/there").text == "first"


def test_dev_on_a_taken_port_says_so(tmp_path: Path) -> None:
    (tmp_path / "nimbus.toml").write_text("")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = nimbus("dev", str(tmp_path), "--data", str(tmp_path / "d"), "--port", str(port))
    assert r.returncode == 1
    assert "--port" in r.stderr and "Traceback" not in r.stderr


def test_dev_seals_secrets_under_the_secrets_key_flag(tmp_path: Path) -> None:
    key = tmp_path / "keys" / "dev.key"
    key.parent.mkdir()
    flag = ["--secrets-key", str(key)]
    dev = Dev(greet_app(tmp_path), tmp_path / "data", tmp_path / "dev.log", flag)
    try:
        dev.wait_for(lambda: dev.get("/greet").text == "first", "serving")
        put = httpx.put(
            f"{dev.url}/_admin/secrets/PAY", content=b"v", headers={"authorization": "Bearer t"}
        )
        assert put.is_success, put.text
    finally:
        dev.stop()
    assert key.is_file() and not (tmp_path / "data" / "secrets.key").exists()
