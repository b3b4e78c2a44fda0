"""Save-to-serving latency of ``nimbus dev``, for a Zig, a C and a Python function.

A real ``nimbus dev`` serves a temp app made by ``nimbus new`` (one Zig, one C and one
Python HTTP function); each round rewrites a function's source with a new greeting and
times from the write to the first HTTP answer that carries it (the watcher's debounce,
the build, the deploy and the server noticing the new version, all included). The
reference, measured in the same run on a copy of the same source: the build alone
(``build_function``), which is what a save costs at the very least::

    python -m bench.devloop [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.servers import ROOT, free_port
from host.toolchain.builder import build_function

ENTRY = {"zig": "main.zig", "c": "main.c", "python": "handler.py"}


def _greeting(lang: str, i: int) -> str:
    """The ``i``-th new greeting; five letters, as long as "hello", since the C
    template copies the greeting with a fixed length."""
    return f"{lang[0]}{i:04d}"


def _nimbus(*args: str, cwd: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "host.cli", *args], cwd=cwd, capture_output=True, text=True
    )
    if r.returncode != 0:
        raise RuntimeError(f"nimbus {' '.join(args)} failed:\n{r.stderr}")


def _wait(check: Any, timeout: float, what: str, poll: float = 0.005) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(poll)
    raise RuntimeError(f"timed out waiting for {what}")


def _rewrite(src: Path, old: str, new: str) -> None:
    """Change the template's greeting (``"hello, …``) from ``old`` to ``new``."""
    text = src.read_text()
    if f'"{old}, ' not in text:
        raise RuntimeError(f"{src}: no greeting {old!r} to change")
    src.write_text(text.replace(f'"{old}, ', f'"{new}, ', 1))


def _build_alone(fn_dir: Path, entry: str, rounds: int) -> list[float]:
    """The reference: the same edit built directly, no watcher, no deploy."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / fn_dir.name
        shutil.copytree(fn_dir, copy, ignore=shutil.ignore_patterns("build"))
        build_function(copy)
        times, greeting = [], "hello"
        for i in range(rounds):
            _rewrite(copy / entry, greeting, f"r{i:04d}")
            greeting = f"r{i:04d}"
            t0 = time.perf_counter()
            build_function(copy)
            times.append(time.perf_counter() - t0)
        return times


def run_rounds(zig_rounds: int, py_rounds: int, c_rounds: int = 0) -> dict[str, Any]:
    """``zig_rounds`` saves of the Zig function, ``c_rounds`` of the C one, then
    ``py_rounds`` of the Python one."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        app = Path(tmp) / "app"
        app.mkdir()
        _nimbus("new", "zig-fn", "--lang", "zig", cwd=app)
        if c_rounds:
            _nimbus("new", "c-fn", "--lang", "c", cwd=app)
        if py_rounds:
            _nimbus("new", "py-fn", "--lang", "python", cwd=app)
        _nimbus("build", ".", cwd=app)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = (Path(tmp) / "dev.log").open("wb")
        data = str(Path(tmp) / "d")
        dev = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "host.cli",
                "dev",
                str(app),
                "--data",
                data,
                "--port",
                str(port),
            ],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "NIMBUS_ADMIN_TOKEN": "bench"},
            start_new_session=True,
        )
        try:
            _wait(lambda: httpx.get(f"{url}/zig-fn/a").status_code == 200, 300, "serving")
            _wait(lambda: b"watching" in (Path(tmp) / "dev.log").read_bytes(), 60, "watcher")
            plan = (
                ("zig", "zig-fn", zig_rounds),
                ("c", "c-fn", c_rounds),
                ("python", "py-fn", py_rounds),
            )
            for lang, name, rounds in (p for p in plan if p[2]):
                ref = _build_alone(app / name, ENTRY[lang], rounds)
                times, greeting = [], "hello"
                for i in range(rounds):
                    old, greeting = greeting, _greeting(lang, i)
                    _rewrite(app / name / ENTRY[lang], old, greeting)
                    t0 = time.perf_counter()
                    _wait(
                        lambda n=name, g=greeting: g in httpx.get(f"{url}/{n}/a").text,
                        300,
                        f"{name} serving {greeting}",
                    )
                    times.append(time.perf_counter() - t0)
                    time.sleep(0.3)  # let the status line print before the next save
                out[lang] = {
                    "rounds": rounds,
                    "save_to_serving_s_median": statistics.median(times),
                    "save_to_serving_s_max": max(times),
                    "build_alone_s_median": statistics.median(ref),
                    "ratio_to_build_alone": statistics.median(times) / statistics.median(ref),
                }
        finally:
            os.killpg(dev.pid, 2)
            try:
                dev.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(dev.pid, 9)
            log.close()
    return out


def run(quick: bool) -> dict[str, Any]:
    return run_rounds(2 if quick else 5, 1 if quick else 2, 2 if quick else 5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--zig-rounds", type=int, help="override the rounds of the Zig function")
    parser.add_argument("--c-rounds", type=int, help="override the rounds of the C function")
    parser.add_argument("--python-rounds", type=int, help="override the rounds of the Python one")
    args = parser.parse_args()
    zig_rounds, py_rounds, c_rounds = (2, 1, 2) if args.quick else (5, 2, 5)
    if args.zig_rounds is not None:
        zig_rounds = args.zig_rounds
    if args.c_rounds is not None:
        c_rounds = args.c_rounds
    if args.python_rounds is not None:
        py_rounds = args.python_rounds
    print(json.dumps(run_rounds(zig_rounds, py_rounds, c_rounds), indent=2))


if __name__ == "__main__":
    main()
