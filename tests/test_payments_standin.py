"""The example app's payment service stand-in (host/examples/payments.py), over HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from host.examples.payments import DEFAULT_KEY, serve


@pytest.fixture
def payments() -> Iterator[str]:
    httpd = serve(0, DEFAULT_KEY)
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def charge(
    url: str, order: str, amount: str, customer: str = "ada", key: str = ""
) -> httpx.Response:
    return httpx.post(
        f"{url}/charges",
        json={"orderId": order, "customerId": customer, "amount": amount},
        headers={
            "authorization": f"Bearer {DEFAULT_KEY}",
            **({"idempotency-key": key} if key else {}),
        },
    )


def test_outcomes_follow_the_request(payments: str) -> None:
    ok = charge(payments, "o-1", "25.00")
    assert ok.status_code == 200 and ok.json()["status"] == "completed"
    declined = charge(payments, "o-2", "10.13")
    assert declined.status_code == 402 and declined.json()["status"] == "declined"
    flaky = [charge(payments, "o-3", "5.00", customer="flaky").status_code for _ in range(4)]
    assert flaky == [503, 503, 200, 200]  # twice unavailable, then charged
    other = [charge(payments, "o-4", "5.00", customer="flaky").status_code for _ in range(3)]
    assert other == [503, 503, 200]  # counted per order
    taken = httpx.get(f"{payments}/charges").json()["charges"]
    assert [c["orderId"] for c in taken] == ["o-1", "o-3", "o-3", "o-4"]


def test_an_idempotency_key_charges_once(payments: str) -> None:
    first = charge(payments, "o-5", "9.00", key="order-o-5")
    again = charge(payments, "o-5", "9.00", key="order-o-5")
    assert first.json() == again.json() and first.json()["paymentId"].startswith("pay_")
    assert len(httpx.get(f"{payments}/charges", params={"orderId": "o-5"}).json()["charges"]) == 1


def test_bad_requests_are_refused_with_what_is_wrong(payments: str) -> None:
    r = httpx.post(f"{payments}/charges", json={"orderId": "o", "amount": "1.00"})
    assert r.status_code == 401 and "API key" in r.json()["error"]
    auth = {"authorization": f"Bearer {DEFAULT_KEY}"}
    r = httpx.post(f"{payments}/charges", json={"orderId": "o", "amount": 1}, headers=auth)
    assert r.status_code == 400 and "amount" in r.json()["error"]
    r = httpx.post(f"{payments}/charges", content=b"{", headers=auth)
    assert r.status_code == 400
    r = httpx.post(f"{payments}/charges", content=b"x" * 70_000, headers=auth)
    assert r.status_code == 413
    assert httpx.get(f"{payments}/nope").status_code == 404
