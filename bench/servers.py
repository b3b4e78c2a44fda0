"""Processes the benchmarks measure: a Nimbus server, the bare Starlette reference, and
the Node fresh-instance peer (when ``node`` is installed).

Both are real processes on loopback ports, started and stopped by the harness.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from host.toolchain.zig import FLAGS as ZIG_FLAGS

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Process:
    """A server subprocess on a free port, waited for until ``ready_path`` answers."""

    def __init__(self, args: list[str], ready_path: str, env: dict[str, str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [*args, "--port", str(self.port)],
            cwd=ROOT,
            env={**os.environ, "NIMBUS_ADMIN_TOKEN": TOKEN, **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"{args} exited: {err}")
            try:
                if httpx.get(self.url + ready_path, timeout=1).status_code < 500:
                    return
            except httpx.HTTPError:
                time.sleep(0.005)  # (answers asked "at listen" come within 5 ms of it)
        self.stop()
        raise RuntimeError(f"{args} did not start")

    def wait_ready(self, timeout: float = 120) -> None:
        """Until ``/_admin/ready`` answers 200: a server's start-up work (its Python
        functions prepared) runs once it listens."""
        deadline = time.monotonic() + timeout
        while httpx.get(self.url + "/_admin/ready", timeout=5).status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.url} not ready after {timeout} s")
            time.sleep(0.01)

    @property
    def admin(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url + "/_admin", headers={"authorization": f"Bearer {TOKEN}"}
        )

    def rss_bytes(self) -> int:
        """Resident memory of the server and its children (workers)."""
        pids = [self.proc.pid, *_children(self.proc.pid)]
        total = 0
        for pid in pids:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            except FileNotFoundError:
                pass
        return total

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    kids = [int(p) for p in text.split()]
    return kids + [g for k in kids for g in _children(k)]


def nimbus(*args: str, env: dict[str, str] | None = None) -> Process:
    return Process([sys.executable, "-m", "host.cli", *args], "/_admin/health", env=env)


def bare_starlette(body: bytes) -> Process:
    """The ceiling of the stack: Starlette on Uvicorn returning ``body``, nothing else."""
    env = {"BENCH_BODY": body.decode()}
    return Process(
        [sys.executable, "-m", "bench.bare"],
        "/hello/bench",
        env=env,
    )


PEERS = Path(__file__).resolve().parent / "peers"


def peer_wasm(out_dir: Path) -> Path:
    """The peer hello module (``peers/hello.zig``), built with the Zig Nimbus ships."""
    wasm = out_dir / "peer_hello.wasm"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "ziglang",
            "build-exe",
            str(PEERS / "hello.zig"),
            *ZIG_FLAGS,  # the flags a function is built with
            f"-femit-bin={wasm}",
        ],
        cwd=out_dir,
        check=True,
        capture_output=True,
        timeout=300,
    )
    return wasm


def node_fresh(wasm: Path) -> Process | None:
    """Node's http server with a new ``WebAssembly.Instance`` of ``wasm`` per request,
    one process; None when ``node`` is not installed."""
    node = shutil.which("node")
    if node is None:
        return None
    return Process(
        [node, str(PEERS / "node_server.js")], "/hello/bench", env={"WASM": str(wasm), "FRESH": "1"}
    )
