"""Shared fixtures: real guests built once per session, runtimes and platforms on tmp dirs."""

from __future__ import annotations

import gc
import hashlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn

from host.hostcalls.catalog import all_host_functions
from host.platform.platform import Platform, PlatformOptions
from host.runtime import native
from host.runtime.runtime import Runtime
from host.services.services import Services
from host.toolchain.builder import build_function

ROOT = Path(__file__).resolve().parent.parent

#: a manifest of one function, ``hello``, on ``GET /hello/{name}`` (``.format(hello=WASM)``)
HELLO_APP = """
[functions.hello]
wasm = "{hello}"

[[routes]]
method = "GET"
path = "/hello/{{name}}"
function = "hello"
"""
GUESTS = ROOT / "tests" / "guests"
FUNCTIONS = ROOT / "functions"

_build_lock = threading.Lock()


def nimbus_dir_state() -> dict[str, tuple[int, int]]:
    """The checkout's ./.nimbus (the user's own `make up` data): every file's size and
    modification time, LMDB's reader lock table aside (a reader of a running server's
    data updates it)."""
    local = ROOT / ".nimbus"
    if not local.exists():
        return {}
    return {
        str(p.relative_to(local)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(local.rglob("*"))
        if p.is_file() and p.name != "lock.mdb"
    }


@pytest.fixture(scope="session", autouse=True)
def leaves_local_data_alone() -> Iterator[None]:
    """The suite never touches ./.nimbus: servers, builds and invokes in tests use
    temporary data dirs. Checked over the whole session."""
    before = nimbus_dir_state()
    yield
    after = nimbus_dir_state()
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"the test suite changed {ROOT / '.nimbus'}: {changed}"


@pytest.fixture(scope="session")
def build() -> Callable[[str], Path]:
    """``build(name)``: the .wasm of ``tests/guests/NAME`` or ``functions/NAME``.

    Builds are incremental on disk, so a second session (or a second test asking for
    the same guest) does not run the compiler again.
    """
    built: dict[str, Path] = {}

    def _build(name: str) -> Path:
        with _build_lock:
            if name not in built:
                src = GUESTS / name if (GUESTS / name).is_dir() else FUNCTIONS / name
                built[name] = build_function(src).wasm
            return built[name]

    return _build


#: the services backends every service test runs against
BACKENDS = ["lmdb", "postgresql"]
#: the PostgreSQL server the "postgresql" backend's tests use (a schema per test)
PG_URL = os.environ.get("NIMBUS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The name of the services backend a service test runs against."""
    name: str = request.param
    return name


def open_services(backend: str, path: Path, **options: Any) -> Services:
    """The services of ``backend`` on a fresh store under ``path``: on PostgreSQL, in
    a schema of its own (one per path), dropped when its creator closes it."""
    if backend == "lmdb":
        return Services(path, **options)
    if backend == "postgresql":
        from host.services.pg.services import PgServices

        options.pop("map_size", None)
        # the schema is named by the path, so another process opening the same path
        # shares the store; whoever created the schema drops it
        schema = f"t_{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:20]}"
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            found = conn.execute(
                "SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)
            ).fetchone()
        pg = PgServices(PG_URL, path, schema=schema, **options)
        close = pg.close

        def close_and_drop() -> None:
            close()
            if found is None:
                pg.drop_schema()

        pg.close = close_and_drop  # type: ignore[method-assign]
        return pg  # type: ignore[return-value]
    raise ValueError(f"unknown services backend {backend!r} (known: {BACKENDS})")


@pytest.fixture(scope="session")
def python_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One module cache for every Python platform of the session: the shared Python
    runtime is compiled once (tens of seconds on a loaded machine), then loaded."""
    return tmp_path_factory.mktemp("python-cache")


def python_data_dir(root: Path, cache: Path) -> Path:
    """A data dir under ``root`` whose module cache is the session's ``python_cache``."""
    data = root / "data"
    data.mkdir(parents=True)
    (data / "cache").symlink_to(cache)
    return data


@pytest.fixture(params=["c", "ctypes"])
def runtime(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Runtime]:
    """A runtime calling Zig and C functions through the C extension (``c``), or
    through ctypes as where the extension is not built (``ctypes``)."""
    if request.param == "ctypes":
        monkeypatch.setattr(native, "wasmcall", None)
    rt = Runtime(tmp_path / "cache", all_host_functions())
    yield rt
    rt.close()


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    """A platform on a fresh data dir, with a small LMDB map that has to grow."""
    p = Platform(
        tmp_path / "data", PlatformOptions(initial_map_size=1 << 20, max_object_bytes=1 << 20)
    )
    yield p
    p.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def eventually(check: Callable[[], bool], timeout_s: float = 10.0, every_s: float = 0.01) -> bool:
    """Whether ``check()`` turns true within ``timeout_s`` (asked every ``every_s``,
    and once more at the end)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(every_s)
    return check()


@contextmanager
def serve_in_thread(app: Any, **config: Any) -> Iterator[str]:
    """``app`` served by uvicorn in a thread of this process on a free loopback
    port, its lifespan run; yields its URL once it has started; stopped after."""
    port = free_port()
    options = {"log_level": "warning", "lifespan": "on", **config}
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, **options))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        assert thread.is_alive(), "the server stopped while starting"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def read_responses(sock: socket.socket, count: int) -> list[bytes]:
    """``count`` whole responses with a content-length, as they come."""
    data = b""
    out: list[bytes] = []
    while len(out) < count:
        head_end = data.find(b"\r\n\r\n")
        if head_end >= 0:
            head = data[:head_end].lower()
            length = int(head.split(b"content-length: ")[1].split(b"\r\n")[0])
            end = head_end + 4 + length
            if len(data) >= end:
                out.append(data[:end])
                data = data[end:]
                continue
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        data += chunk
    return out


def serve_unwaited(data: Path) -> subprocess.Popen[bytes]:
    """``nimbus serve`` on a data dir, not waited for (crash tests kill it anyway)."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "host.cli",
            "serve",
            "--data",
            str(data),
            "--port",
            str(free_port()),
        ],
        cwd=ROOT,
        env={**os.environ, "NIMBUS_ADMIN_TOKEN": "t"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_healthy(url: str, exited: Callable[[], str | None], timeout: float = 60) -> bool:
    """Poll ``url``'s ``/_admin/health`` until it answers 200 (True) or ``timeout``
    passes (False); ``exited()`` says why the process ended (its output) once it has,
    and that fails the wait at once."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        why = exited()
        if why is not None:
            raise RuntimeError(f"server exited:\n{why}")
        try:
            if httpx.get(f"{url}/_admin/health", timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return False


class Server:
    """A real ``nimbus`` server process on a loopback port."""

    def __init__(self, args: list[str], port: int, env: dict[str, str]) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "host.cli", *args, "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        if not wait_healthy(self.url, self._exited, timeout):
            self.stop()
            raise RuntimeError("server did not become ready")

    def _exited(self) -> str | None:
        if self.proc.poll() is None:
            return None
        out = self.proc.stdout.read().decode() if self.proc.stdout else ""
        return f"exit status {self.proc.returncode}\n{out}"

    def pin_workers(self, workers: int = 2) -> dict[int, httpx.Client]:
        """One keep-alive client per worker process, by pid (a connection stays with the
        worker that accepted it); the caller closes them."""
        pinned: dict[int, httpx.Client] = {}
        spare: list[httpx.Client] = []
        for _ in range(200):
            client = httpx.Client(base_url=self.url)
            pid = client.get("/_admin/health").json()["pid"]
            if pid in pinned:
                spare.append(client)
            else:
                pinned[pid] = client
            if len(pinned) == workers:
                break
        for c in spare:
            c.close()
        assert len(pinned) == workers, f"only {len(pinned)} worker(s) accepted connections"
        return pinned

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.stdout.read().decode() if self.proc.stdout else ""


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """``start_server(*args, token=..., port=None)``: a real server, stopped after the test."""
    servers: list[Server] = []

    def _start(*args: str, token: str = "test-token", port: int | None = None) -> Server:
        env = {**os.environ, "NIMBUS_ADMIN_TOKEN": token, "PYTHONUNBUFFERED": "1"}
        server = Server(list(args), port or free_port(), env)
        servers.append(server)
        server.wait_ready()
        return server

    yield _start
    for s in servers:
        s.stop()


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 24 MiB tmpfs, mounted for the test and unmounted after."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (run the suite as root or with CAP_SYS_ADMIN)")
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m", "nimbus-test", str(mnt)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip() or r.returncode}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(mnt: Path) -> Path:
    """Take every free byte of the filesystem with one file."""
    filler = mnt / "filler"
    st = os.statvfs(mnt)
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        os.posix_fallocate(fd, 0, st.f_bavail * st.f_frsize)
    finally:
        os.close(fd)
    st = os.statvfs(mnt)
    assert st.f_bavail * st.f_frsize < 64 * 1024
    return filler


def garbage_cycles(run: Callable[[], None]) -> list[str]:
    """The types of the objects that ``run()`` left in reference cycles (freed only by
    the cyclic GC), by name. Type objects and what they hold (two levels: their dict,
    its descriptors) are left out: ctypes makes an array type, a cycle of its own, the
    first time a library asks for a new length."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    gc.disable()
    try:
        run()
        gc.collect()
        garbage = list(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    skip: set[int] = set()
    level = [o for o in garbage if isinstance(o, type)]
    for _ in range(3):
        skip.update(id(o) for o in level)
        level = [r for o in level for r in gc.get_referents(o)]
    return [f"{type(o).__module__}.{type(o).__qualname__}" for o in garbage if id(o) not in skip]
