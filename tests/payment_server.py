"""A stand-in for an outside service (a payment API): a real HTTP server on 127.0.0.1.

Started by tests in a thread on a free port; it records every request it receives
(method, path, headers, body) and answers by path:

- ``/echo``: 200, ``{"method", "path", "body"}`` as JSON, header ``x-echo: yes``
- ``/slow?s=N``: answers after N seconds (``answered`` is set once it has)
- ``/big?n=N``: N bytes without a Content-Length (``&declare=1`` declares it)
- ``/redirect?to=URL``: 302 to URL
- ``/hold``: records the request, then holds the answer until ``release`` is set
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class PaymentServer:
    """The server and what it saw."""

    seen: list[Seen] = field(default_factory=list)
    answered: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    port: int = 0
    _httpd: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def keys(self) -> list[str]:
        return [s.headers.get("idempotency-key", "") for s in self.seen]

    def start(self) -> PaymentServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                owner.seen.append(Seen(self.command, self.path, headers, body))
                url = urlsplit(self.path)
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                if url.path == "/slow":
                    threading.Event().wait(float(q.get("s", "5")))
                    owner.answered.set()
                    return self._send(200, b"late")
                if url.path == "/hold":
                    owner.release.wait(60)
                    return self._send(200, b"held")
                if url.path == "/big":
                    return self._big(int(q["n"]), q.get("declare") == "1")
                if url.path == "/redirect":
                    self.send_response(302)
                    self.send_header("location", q["to"])
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return None
                payload = {
                    "method": self.command,
                    "path": self.path,
                    "body": body.decode(errors="replace"),
                }
                return self._send(200, json.dumps(payload).encode(), {"x-echo": "yes"})

            def _send(self, status: int, body: bytes, extra: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _big(self, n: int, declare: bool) -> None:
                self.send_response(200)
                if declare:
                    self.send_header("content-length", str(n))
                else:
                    self.send_header("connection", "close")
                self.end_headers()
                chunk = b"x" * 65536
                try:
                    while n > 0:
                        self.wfile.write(chunk[: min(n, len(chunk))])
                        n -= len(chunk)
                except OSError:
                    pass  # the client hung up at its cap
                self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.release.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
