"""``nimbus dev [APP]``: serve an app and redeploy what changes, as you save.

``up`` plus a file watcher (watchfiles), like ``spin watch`` or ``wrangler dev``: a
change under a function's source directory rebuilds that function alone and deploys
it; a change to nimbus.toml re-applies the manifest (functions, routes, triggers,
workflows; functions it no longer lists are removed). A build or deploy that fails
prints the compiler's or validator's message verbatim and changes nothing, so the
previous version keeps serving. One status line per change says what was rebuilt and
how long it took, from the save being noticed to the new version serving.

The server is a ``nimbus serve`` child process on the same data dir; this process
deploys into the data dir directly (as ``up`` does), and the server picks each new
version up on its next request, since deployments are shared through LMDB.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import watchfiles
from msgspec import Struct
from rich.console import Console

from host.cli.serving import choose_serving
from host.errors import NimbusError

if TYPE_CHECKING:  # the CLI starts without wasmtime; `dev` imports it when it runs
    from host.manifest.app import Manifest
    from host.platform.platform import Platform

#: how long the watcher waits for a burst of writes (an editor's save) to settle, ms
DEBOUNCE_MS = 30
IGNORED_DIRS = {"build", "__pycache__", ".git", ".venv", "node_modules", ".zig-cache"}

err = Console(stderr=True, highlight=False)


class Outcome(Struct, frozen=True):
    """What one change did: a line for the status, and whether it succeeded."""

    ok: bool
    line: str
    #: the compiler's or validator's message, shown as it is
    detail: str = ""


class DevLoop:
    """Turns file changes into rebuilds and deploys on one platform."""

    def __init__(self, platform: Platform, manifest: Manifest) -> None:
        self.platform = platform
        self.manifest = manifest

    def changed(self, paths: Iterable[Path]) -> list[Outcome]:
        """Handle one batch of changed paths (absolute)."""
        paths = set(paths)
        if self.manifest.path in paths:
            return [self.reapply()]
        outcomes = []
        for source, names in self._sources().items():
            if any(p == source or source in p.parents for p in paths):
                outcomes.append(self.rebuild(source, names))
        return outcomes

    def _sources(self) -> dict[Path, list[str]]:
        """Each function source directory and the functions built from it."""
        found: dict[Path, list[str]] = {}
        for name, spec in self.manifest.functions.items():
            if spec.source is not None:
                found.setdefault(spec.source, []).append(name)
        return found

    def rebuild(self, source: Path, names: list[str]) -> Outcome:
        from host.toolchain.builder import build_function

        t0 = time.perf_counter()
        label = ", ".join(names)
        try:
            with err.status(f"rebuilding {label}…"):
                result = build_function(source, names[0])
                wasm = result.wasm.read_bytes()
                versions = [
                    self.platform.deploy(self.manifest.functions[n], wasm).version for n in names
                ]
                took = time.perf_counter() - t0
        except NimbusError as e:
            return self._failed(label, t0, e)
        if not result.rebuilt:
            return Outcome(True, f"[dim]{label}: unchanged ({took:.2f} s)[/]")
        serving = ", ".join(f"{n} v{v}" for n, v in zip(names, versions, strict=True))
        return Outcome(
            True,
            f"[green]✓[/] rebuilt {label} ({result.language}) → serving {serving} in "
            f"[bold]{took:.2f} s[/]",
        )

    def reapply(self) -> Outcome:
        from host.manifest.app import load_manifest
        from host.platform.apply import apply_manifest

        t0 = time.perf_counter()
        try:
            with err.status("re-applying nimbus.toml…"):
                manifest = load_manifest(self.manifest.path)
                applied = apply_manifest(self.platform, manifest)
                gone = set(self.manifest.functions) - set(manifest.functions)
                for name in sorted(gone):
                    self.platform.remove(name)
                took = time.perf_counter() - t0
        except NimbusError as e:
            return self._failed("nimbus.toml", t0, e)
        self.manifest = manifest
        rebuilt = [a.name for a in applied if a.rebuilt]
        parts = [f"{len(manifest.functions)} function(s), {len(manifest.routes)} route(s)"]
        if rebuilt:
            parts.append(f"rebuilt {', '.join(rebuilt)}")
        if gone:
            parts.append(f"removed {', '.join(sorted(gone))}")
        return Outcome(
            True, f"[green]✓[/] re-applied nimbus.toml: {'; '.join(parts)} in [bold]{took:.2f} s[/]"
        )

    def _failed(self, what: str, t0: float, e: NimbusError) -> Outcome:
        took = time.perf_counter() - t0
        return Outcome(
            False,
            f"[red]✗[/] {what}: {e.kind} after {took:.2f} s; the previous version keeps serving",
            str(e),
        )


def add_command(sub: Any, serving: Any) -> None:
    c = sub.add_parser(
        "dev",
        help="serve the app in APP and rebuild and redeploy what changes as you save",
        description="serve the app in APP and rebuild and redeploy what changes as you save",
    )
    c.set_defaults(handler=cmd_dev)
    c.add_argument("app", nargs="?", default=".", help="app dir or nimbus.toml")
    serving(c)


def cmd_dev(args: argparse.Namespace) -> int:
    from host.manifest.app import load_manifest
    from host.platform.platform import Platform

    manifest = load_manifest(Path(args.app))
    choose_serving(args, manifest.store)  # the server it starts inherits the choice
    platform = Platform(Path(args.data))
    server: subprocess.Popen[bytes] | None = None
    stop = threading.Event()
    try:
        loop = DevLoop(platform, manifest)
        report(loop.reapply())
        server = _serve(args)
        url = f"http://{args.host}:{args.port}"
        _wait_ready(server, url)
        watcher = watchfiles.watch(
            manifest.base_dir,
            watch_filter=_Filter(Path(args.data)),
            debounce=DEBOUNCE_MS,
            step=10,
            stop_event=stop,
            rust_timeout=500,
            yield_on_timeout=True,
        )
        watching = False
        for changes in watcher:
            if not watching:  # the first yield comes once the watcher is in place
                err.print(f"serving on {url}; watching {manifest.base_dir} (Ctrl-C stops)")
                watching = True
            if server.poll() is not None:
                err.print(f"[red]the server exited with status {server.returncode}[/]")
                return 1
            if changes:
                for outcome in loop.changed(Path(p).resolve() for _, p in changes):
                    report(outcome)
        return 0
    finally:
        stop.set()
        if server is not None and server.poll() is None:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
        platform.close()


def report(outcome: Outcome) -> None:
    stamp = time.strftime("%H:%M:%S")
    err.print(f"[dim]{stamp}[/] {outcome.line}")
    if outcome.detail:
        err.print(outcome.detail, markup=False, soft_wrap=True)  # verbatim, never re-wrapped


def _serve(args: argparse.Namespace) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "host.cli", "serve", "--data", str(args.data)]
    cmd += ["--host", args.host, "--port", str(args.port), "--workers", str(args.workers)]
    return subprocess.Popen(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _wait_ready(server: subprocess.Popen[bytes], url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise NimbusError(
                f"the server did not start (status {server.returncode}); is {url} in use? "
                "pick another with --port"
            )
        try:
            if httpx.get(f"{url}/_admin/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise NimbusError(f"the server did not answer at {url} within {timeout:.0f} s")


class _Filter(watchfiles.DefaultFilter):
    """Source changes only: no build output, caches, editor droppings or the data dir."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(ignore_dirs=tuple(IGNORED_DIRS | set(self.ignore_dirs)))
        self._data = data_dir.resolve()

    def __call__(self, change: watchfiles.Change, path: str) -> bool:
        p = Path(path)
        if p == self._data or self._data in p.parents:
            return False
        return super().__call__(change, path)
