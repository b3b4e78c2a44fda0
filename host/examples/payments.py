"""The example app's payment service: a stand-in for a card processor's API on loopback.

``make up`` runs it beside the server (``python -m host.examples.payments``), so the
order pipeline in ``functions/`` calls a real HTTP service through the outbound HTTP
import, with a secret API key, and a user can watch retries, failure handlers and
idempotency from the command line. Outcomes are driven by the request, deterministically:

- an ``amount`` ending in ``.13`` is declined: 402 ``{"status": "declined", "reason"}``;
- ``customerId`` ``"flaky"``: the first two charges of each order answer 503, the third
  succeeds (so a caller that retries twice gets through);
- anything else: 200 ``{"status": "completed", "paymentId", "orderId", "amount"}``.

A charge repeated with the same ``Idempotency-Key`` header is answered as the first
completed one was, and charges the card once (``GET /charges?orderId=`` lists the
charges taken). Requests need ``Authorization: Bearer KEY``, KEY being
``PAYMENT_API_KEY`` from the environment or ``DEFAULT_KEY``. With ``--nimbus URL
--data DIR`` it also waits for that Nimbus server and, when the server has no secret
``PAYMENT_API_KEY`` yet, sets it to KEY through the admin API: a fresh clone's
``make up`` then works with nothing set by hand.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from msgspec import Struct, field

#: the key the stand-in accepts (and ``make up`` stores as the secret) unless
#: ``PAYMENT_API_KEY`` is set in the environment
DEFAULT_KEY = "sk_test_nimbus_example"
SECRET = "PAYMENT_API_KEY"
#: how many charges of a "flaky" customer's order fail before one succeeds
FLAKY_FAILURES = 2
MAX_BODY = 64 * 1024


class Ledger(Struct):
    """What the processor remembers: charges taken, answers by idempotency key, and the
    attempts of each flaky order."""

    charges: list[dict[str, Any]] = field(default_factory=list)
    answers: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def charge(self, request: dict[str, Any], idempotency_key: str) -> tuple[int, dict[str, Any]]:
        """The answer to one charge request (already authenticated)."""
        order = request.get("orderId")
        amount = request.get("amount")
        if not isinstance(order, str) or not order or not isinstance(amount, str):
            return 400, {"error": "a charge needs orderId and amount (a decimal string)"}
        with self.lock:
            if idempotency_key and idempotency_key in self.answers:
                return self.answers[idempotency_key]
            if request.get("customerId") == "flaky":
                self.attempts[order] = self.attempts.get(order, 0) + 1
                if self.attempts[order] <= FLAKY_FAILURES:
                    return 503, {"error": "the processor is briefly unavailable; retry"}
            if amount.endswith(".13"):
                answer = (402, {"status": "declined", "reason": "card declined", "orderId": order})
            else:
                payment = {
                    "status": "completed",
                    "paymentId": "pay_" + uuid.uuid4().hex[:16],
                    "orderId": order,
                    "amount": amount,
                }
                self.charges.append(payment)
                answer = (200, payment)
            if idempotency_key:
                self.answers[idempotency_key] = answer
            return answer

    def charges_of(self, order: str | None) -> list[dict[str, Any]]:
        with self.lock:
            return [c for c in self.charges if order is None or c["orderId"] == order]


def serve(port: int, key: str, ledger: Ledger | None = None) -> ThreadingHTTPServer:
    """The stand-in on 127.0.0.1:``port`` (0: any free port), serving on a thread."""
    book = ledger or Ledger()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            sys.stderr.write(f"payments: {format % args}\n")

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/health":
                return self._send(200, {"ok": True})
            if url.path == "/charges":
                order = parse_qs(url.query).get("orderId", [None])[0]
                return self._send(200, {"charges": book.charges_of(order)})
            return self._send(404, {"error": f"no such path {url.path}"})

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length > MAX_BODY:
                self.close_connection = True
                return self._send(413, {"error": "request too large"})
            body = self.rfile.read(length) if length else b""
            if urlsplit(self.path).path != "/charges":
                return self._send(404, {"error": f"no such path {self.path}"})
            if self.headers.get("authorization") != f"Bearer {key}":
                return self._send(401, {"error": "missing or wrong API key"})
            try:
                request = json.loads(body)
            except ValueError:
                return self._send(400, {"error": "the body is not JSON"})
            if not isinstance(request, dict):
                return self._send(400, {"error": "the body must be a JSON object"})
            status, answer = book.charge(request, self.headers.get("idempotency-key") or "")
            return self._send(status, answer)

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def register_secret(nimbus: str, data: Path, key: str, wait_s: float) -> bool:
    """Set the secret on the Nimbus server at ``nimbus`` unless it has one; False if
    the server did not answer within ``wait_s`` (the first build may take a minute)."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        token = os.environ.get("NIMBUS_ADMIN_TOKEN") or _read(data / "admin_token")
        try:
            if token and httpx.get(f"{nimbus}/_admin/health", timeout=2).status_code == 200:
                auth = {"authorization": f"Bearer {token}"}
                names = httpx.get(f"{nimbus}/_admin/secrets", headers=auth, timeout=5)
                names.raise_for_status()
                if SECRET not in {s["name"] for s in names.json()["secrets"]}:
                    put = httpx.put(
                        f"{nimbus}/_admin/secrets/{SECRET}", headers=auth, content=key, timeout=5
                    )
                    put.raise_for_status()
                    print(f"payments: secret {SECRET} set on {nimbus}", file=sys.stderr)
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)  # the server answers requests from now on: the window stays short
    return False


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m host.examples.payments", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--port", type=int, default=8090)
    p.add_argument(
        "--nimbus", help="a Nimbus server to give the secret to, e.g. http://127.0.0.1:8080"
    )
    p.add_argument("--data", type=Path, default=Path(".nimbus"), help="that server's data dir")
    p.add_argument("--wait", type=float, default=600, help="seconds to wait for that server")
    args = p.parse_args(argv)
    key = os.environ.get(SECRET) or DEFAULT_KEY
    try:
        httpd = serve(args.port, key)
    except OSError as e:
        print(f"payments: cannot listen on 127.0.0.1:{args.port}: {e}", file=sys.stderr)
        return 1
    print(f"payments: serving on http://127.0.0.1:{args.port}", file=sys.stderr)
    if args.nimbus and not register_secret(args.nimbus, args.data, key, args.wait):
        print(f"payments: {args.nimbus} did not answer; set {SECRET} yourself", file=sys.stderr)
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()
    httpd.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
