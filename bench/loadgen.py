"""A small HTTP/1.1 load generator on asyncio: fixed duration, fixed connections.

The harness prefers ``wrk`` (installed from the system's package manager when it is
missing); this is the fallback when that is impossible, and the output says which one
ran. Each connection is a
keep-alive socket sending one request at a time and reading the response by its
Content-Length; latencies are recorded per request.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class LoadResult:
    """Requests per second and latency percentiles of one run."""

    requests: int
    errors: int
    duration_s: float
    latencies_ms: list[float]

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _connection(
    host: str, port: int, request: bytes, stop_at: float, lat: list[float], errs: list[int]
) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    done = 0
    try:
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            lat.append((time.perf_counter() - t0) * 1000)
            if status >= 400:
                errs.append(status)
            done += 1
    finally:
        writer.close()
    return done


async def _run(
    host: str, port: int, path: str, seconds: float, connections: int, headers: dict[str, str]
) -> LoadResult:
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: keep-alive\r\n{extra}\r\n"
    ).encode()
    lat: list[float] = []
    errs: list[int] = []
    t0 = time.perf_counter()
    stop_at = t0 + seconds
    counts = await asyncio.gather(
        *[_connection(host, port, request, stop_at, lat, errs) for _ in range(connections)]
    )
    return LoadResult(sum(counts), len(errs), time.perf_counter() - t0, lat)


def run_load(
    url_host: str,
    port: int,
    path: str,
    seconds: float = 5.0,
    connections: int = 16,
    headers: dict[str, str] | None = None,
) -> LoadResult:
    """Drive ``GET path`` (with ``headers``) for ``seconds`` over ``connections``
    keep-alive sockets."""
    run = _run(url_host, port, path, seconds, connections, headers or {})
    try:
        import uvloop

        return uvloop.run(run)
    except ImportError:
        return asyncio.run(run)
