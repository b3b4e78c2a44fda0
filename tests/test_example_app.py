"""The example app in functions/ end to end, through `make up` as a user runs it.

One `make up` per module (on free ports and a temporary data dir, so it runs beside
the user's own): the README's walkthrough executed command by command, then the
checks of issue #15 — both styles produce the same records, a redelivered
order.created charges once, the declined and flaky cases end as documented, the daily
cleanup deletes exactly the rows older than 30 days, a CSV import creates exactly its
orders. Every wait is bounded; the pipeline is asynchronous, so each check polls.
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, free_port, nimbus_dir_state

pytestmark = pytest.mark.slow

DAY_MS = 86_400_000
ORDER = {"customerId": "ada", "items": [{"sku": "book", "quantity": 2, "price": 12.5}]}


@dataclass
class App:
    """The running `make up`: its URLs, data dir and an admin client."""

    url: str
    payments: str
    data: Path
    admin: httpx.Client
    api_key: str

    def get(self, table: str, key: str) -> dict[str, Any] | None:
        r = self.admin.get(f"/tables/{table}/keys/{key}")
        if r.status_code == 404:
            return None
        r.raise_for_status()
        value: dict[str, Any] = r.json()["value"]
        return value

    def keys(self, table: str, prefix: str = "") -> set[str]:
        r = self.admin.get(f"/tables/{table}/keys", params={"prefix": prefix, "limit": 1000})
        r.raise_for_status()
        return {item["key"] for item in r.json()["items"]}

    def charges(self, order: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = httpx.get(
            f"{self.payments}/charges", params={"orderId": order}
        ).json()["charges"]
        return found

    def post(self, path: str, body: Any) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", json=body, headers={"x-api-key": self.api_key})

    def invocations(self, function: str) -> list[dict[str, Any]]:
        r = self.admin.get("/invocations", params={"function": function, "limit": 1000})
        found: list[dict[str, Any]] = r.json()["invocations"]
        return found


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 60) -> Any:
    """``probe()`` once it returns something truthy; fails naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout:.0f} s for {what}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    port, payment_port, before = free_port(), free_port(), nimbus_dir_state()
    data = tmp_path_factory.mktemp("example-app") / "data"
    env = {k: v for k, v in os.environ.items() if k not in ("NIMBUS_ADMIN_TOKEN", "NIMBUS_URL")}
    proc = subprocess.Popen(
        ["make", "up", f"PORT={port}", f"DATA={data}", f"PAYMENT_PORT={payment_port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        token = data / "admin_token"
        if not token.exists():
            return False
        auth = {"authorization": f"Bearer {token.read_text().strip()}"}
        try:
            r = httpx.get(f"{url}/_admin/secrets", headers=auth, timeout=2)
        except httpx.HTTPError:
            return False
        # the stand-in gives a fresh data dir the payment API key once the server answers
        return r.status_code == 200 and "PAYMENT_API_KEY" in r.text

    try:
        wait_for("make up to build and serve the app", ready, timeout=300)
        token = (data / "admin_token").read_text().strip()
        admin = httpx.Client(
            base_url=f"{url}/_admin", headers={"authorization": f"Bearer {token}"}, timeout=30
        )
        key = admin.post("/keys", json={"name": "tests"}).json()["api_key"]
        yield App(url, f"http://127.0.0.1:{payment_port}", data, admin, key)
        admin.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    assert nimbus_dir_state() == before  # DATA= was used; ./.nimbus untouched


# --- the README's walkthrough --------------------------------------------------------


def walkthrough() -> list[tuple[str, str]]:
    """The README's walkthrough block as (command, expected output) pairs, in order."""
    readme = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- walkthrough -->\n```sh\n(.*?)\n```", readme, re.S)
    assert m, "README.md has no <!-- walkthrough --> block"
    commands: list[tuple[str, str]] = []
    pending: list[str] = []
    for line in m.group(1).splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending.append(line)
        text = "\n".join(pending)
        if text.endswith("\\") or not _complete(text):
            continue
        expected = ""
        if "# ⇒ " in pending[-1]:
            head, _, expected = pending[-1].partition("# ⇒ ")
            text = "\n".join([*pending[:-1], head])
        commands.append((text.rstrip(), expected.strip()))
        pending = []
    assert not pending, f"the walkthrough ends inside a command: {pending}"
    return commands


def _complete(text: str) -> bool:
    """Whether bash reads ``text`` as complete commands (not inside quotes or ``$(``)."""
    check = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True)
    return check.returncode == 0


RUNNER = """set -u
expect() {  # expect TEXT COMMAND: run COMMAND until its output holds TEXT, 90 s at most
  local want=$1 cmd=$2 out=""
  for _ in $(seq 1 225); do
    out=$(eval "$cmd" 2>&1) || true
    if [[ $out == *"$want"* ]]; then printf '%s\\n' "$out"; return 0; fi
    sleep 0.4
  done
  printf 'walkthrough: %s\\nnever printed: %s\\nlast output:\\n%s\\n' "$cmd" "$want" "$out" >&2
  exit 1
}
"""


def test_the_readme_walkthrough_runs_as_written(app: App, tmp_path: Path) -> None:
    commands = walkthrough()
    assert len(commands) >= 15 and sum(1 for _, e in commands if e) >= 10
    assert commands[0][0].startswith("export NIMBUS_URL=http://127.0.0.1:8080")
    script = [RUNNER]
    for command, expected in commands:
        command = (
            command.replace("http://127.0.0.1:8080", app.url)
            .replace("127.0.0.1:8090", app.payments.removeprefix("http://"))
            .replace("/tmp/orders.csv", str(tmp_path / "orders.csv"))
        )
        # never the user's own `make up`: every address is this module's
        assert not re.search(r"127\.0\.0\.1:80[89]0|localhost", command), command
        if expected:
            script.append(f"expect {shlex.quote(expected)} {shlex.quote(command)}")
        else:
            said = shlex.quote(f"walkthrough: this failed: {command}")
            script.append(f"{command}\nrc=$?; [ $rc -eq 0 ] || {{ echo {said} >&2; exit 1; }}")
    token = (app.data / "admin_token").read_text().strip()
    env = {**os.environ, "NIMBUS_ADMIN_TOKEN": token, "COLUMNS": "200"}
    env.pop("NIMBUS_URL", None)
    r = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, f"{r.stderr}\n--- output ---\n{r.stdout}"
    # what the walkthrough claims, checked beyond the text it waited for
    assert app.get("orders", "o-3")["status"] == "cancelled"  # type: ignore[index]
    assert app.get("orders", "c-2")["total"] == "9.00"  # type: ignore[index]
    assert app.get("processed_orders", "old-1") is None
    assert len(app.charges("o-4")) == 1


# --- the checks of issue #15 ---------------------------------------------------------


def settled(app: App, order: str, status: str) -> Callable[[], dict[str, Any] | None]:
    def probe() -> dict[str, Any] | None:
        found = app.get("orders", order)
        return found if found and found["status"] == status else None

    return probe


def without(record: dict[str, Any] | None, *fields: str) -> dict[str, Any]:
    assert record is not None
    return {k: v for k, v in record.items() if k not in fields}


def test_both_styles_produce_the_same_records(app: App) -> None:
    tag = f"{time.time_ns()}"
    started = app.post("/orders", {"orderId": f"wf-{tag}", **ORDER})
    assert started.status_code == 202 and started.json()["run_id"].startswith("run-")
    published = app.post("/orders/events", {"orderId": f"ev-{tag}", **ORDER})
    assert published.status_code == 202 and published.json()["eventId"]
    for style in ("wf", "ev"):
        wait_for(f"order {style}-{tag} confirmed", settled(app, f"{style}-{tag}", "confirmed"))
    orders = [
        without(app.get("orders", f"{s}-{tag}"), "orderId", "createdAt", "confirmedAt")
        for s in ("wf", "ev")
    ]
    assert orders[0] == orders[1]
    assert orders[0] == {**ORDER, "total": "25.00", "status": "confirmed"}
    payments = [app.get("payments", f"{s}-{tag}") for s in ("wf", "ev")]
    assert [without(p, "orderId", "paymentId", "processedAt") for p in payments] == [
        {"customerId": "ada", "amount": "25.00", "status": "completed"}
    ] * 2
    for s, p in zip(("wf", "ev"), payments, strict=True):
        assert [c["paymentId"] for c in app.charges(f"{s}-{tag}")] == [p["paymentId"]]  # type: ignore[index]
        note = app.get("notifications", f"{s}-{tag}")
        assert note is not None and note["channel"] == "email" and f"{s}-{tag}" in note["message"]
    processed = [app.get("processed_orders", f"{s}-{tag}") for s in ("wf", "ev")]
    assert all(p and isinstance(p["processedAt"], int) for p in processed)
    view = httpx.get(f"{app.url}/orders/wf-{tag}", headers={"x-api-key": app.api_key}).json()
    assert view["paymentStatus"] == "completed" and view["orderId"] == f"wf-{tag}"
    missing = httpx.get(f"{app.url}/orders/none-{tag}", headers={"x-api-key": app.api_key})
    assert missing.status_code == 404 and missing.json()["error"] == "order not found"
    too_long = httpx.get(f"{app.url}/orders/{'x' * 481}", headers={"x-api-key": app.api_key})
    assert too_long.status_code == 400 and "1 to 480 bytes" in too_long.json()["error"]
    assert httpx.post(f"{app.url}/orders", json=ORDER).status_code == 401  # the API key


def test_a_redelivered_order_created_makes_one_order_and_one_payment(app: App) -> None:
    order = f"re-{time.time_ns()}"
    event = {"orderId": order, **ORDER}
    for _ in range(2):  # the same order.created, delivered twice
        assert app.admin.post("/events/order.created", json=event).status_code == 201
    wait_for("the order confirmed", settled(app, order, "confirmed"))

    def logged(function: str, text: str) -> list[dict[str, Any]]:
        return [
            i
            for i in app.invocations(function)
            if i["outcome"] == "ok" and any(text in m for _, m in i["logs"])
        ]

    processed = f"order {order} was processed already"
    wait_for("the second delivery", lambda: logged("HandleOrderCreated", processed))
    time.sleep(1)  # anything a second delivery set off would have landed by now
    assert len(logged("HandleOrderCreated", f"order {order} validated")) == 1
    assert len(logged("HandleOrderValidated", f"payment of order {order}")) == 1
    assert len(app.charges(order)) == 1
    assert app.get("payments", order)["status"] == "completed"  # type: ignore[index]
    assert len(logged("SendOrderConfirmation", f"order {order}: confirmation sent to")) == 1


def test_a_declined_card_cancels_the_order_in_both_styles(app: App) -> None:
    tag = f"{time.time_ns()}"
    declined = {"customerId": "bob", "items": [{"sku": "pen", "quantity": 1, "price": 10.13}]}
    run_id = app.post("/orders", {"orderId": f"dwf-{tag}", **declined}).json()["run_id"]
    app.post("/orders/events", {"orderId": f"dev-{tag}", **declined})
    for style in ("dwf", "dev"):
        order = wait_for(f"{style} cancelled", settled(app, f"{style}-{tag}", "cancelled"))
        assert order["paymentStatus"] == "declined" and order["cancelReason"] == "card declined"
        view = httpx.get(f"{app.url}/orders/{style}-{tag}", headers={"x-api-key": app.api_key})
        assert view.json()["paymentStatus"] == "declined"
        assert (
            app.charges(f"{style}-{tag}") == []
            and app.get("notifications", f"{style}-{tag}") is None
        )
    run = wait_for("the run to end", lambda: _ended(app, run_id))
    assert run["status"] == "failed"
    steps = [(h["step"], h["attempt"], h["status"]) for h in run["history"]]
    assert steps == [
        ("validateOrder", 1, "succeeded"),
        ("processPayment", 1, "failed"),  # a decline is not retried
        ("handlePaymentFailure", 1, "succeeded"),
    ]
    assert run["history"][1]["error"]["cause"] == "PaymentDeclined"
    # the event chain records the decline; the workflow's failed step commits nothing
    assert app.get("payments", f"dev-{tag}")["status"] == "declined"  # type: ignore[index]
    assert app.get("payments", f"dwf-{tag}") is None


def test_a_flaky_processor_is_retried_until_it_charges(app: App) -> None:
    tag = f"{time.time_ns()}"
    flaky = {"customerId": "flaky", "items": [{"sku": "pen", "quantity": 3, "price": 2}]}
    run_id = app.post("/orders", {"orderId": f"fwf-{tag}", **flaky}).json()["run_id"]
    app.post("/orders/events", {"orderId": f"fev-{tag}", **flaky})
    for style in ("fwf", "fev"):
        wait_for(f"{style} confirmed", settled(app, f"{style}-{tag}", "confirmed"))
        assert app.get("payments", f"{style}-{tag}")["status"] == "completed"  # type: ignore[index]
        assert len(app.charges(f"{style}-{tag}")) == 1
    run = wait_for("the run to end", lambda: _ended(app, run_id))
    assert run["status"] == "succeeded"
    payment = [h for h in run["history"] if h["step"] == "processPayment"]
    assert [(h["attempt"], h["status"]) for h in payment] == [
        (1, "failed"),
        (2, "failed"),
        (3, "succeeded"),
    ]
    assert {h["error"]["cause"] for h in payment[:2]} == {"PaymentUnavailable"}
    # exponential backoff: 1 s, then 2 s, between the attempts
    gaps = [b["started_ms"] - a["ended_ms"] for a, b in itertools.pairwise(payment)]
    assert gaps[0] >= 900 and gaps[1] >= 1900
    attempts = [
        i
        for i in app.invocations("HandleOrderValidated")
        if any(f"fev-{tag}" in m for _, m in i["logs"])
    ]
    assert sorted(i["outcome"] for i in attempts).count("ok") == 1 and len(attempts) == 3


def _ended(app: App, run_id: str) -> dict[str, Any] | None:
    run: dict[str, Any] = app.admin.get(f"/runs/{run_id}").json()
    return run if run["status"] != "running" else None


def test_the_daily_cleanup_deletes_exactly_what_is_older_than_30_days(app: App) -> None:
    now = int(time.time() * 1000)
    ages = {"a": 30 * DAY_MS + 60_000, "b": 31 * DAY_MS, "c": 90 * DAY_MS, "d": 3650 * DAY_MS}
    young = {"e": 30 * DAY_MS - 60_000, "f": 10 * DAY_MS, "g": 0}
    tag = f"cl-{time.time_ns()}"
    for name, age in {**ages, **young}.items():
        key = f"{tag}-{name}"
        r = app.admin.put(
            f"/tables/processed_orders/keys/{key}", json={"orderId": key, "processedAt": now - age}
        )
        assert r.status_code in (200, 201), r.text
    before = app.keys("processed_orders")
    count = len(app.invocations("HandleDailyCleanup"))
    r = app.admin.post("/schedules/daily-cleanup/run")
    assert r.status_code == 202 and r.json()["function"] == "HandleDailyCleanup"
    wait_for("the cleanup to run", lambda: len(app.invocations("HandleDailyCleanup")) > count)
    done = app.invocations("HandleDailyCleanup")
    after = app.keys("processed_orders")
    old = {f"{tag}-{n}" for n in ages}
    # every row the walkthrough or other tests made is younger than 30 days too
    assert after == before - old
    assert any(f"deleted {len(old)} processed order" in m for i in done for _, m in i["logs"])
    assert app.admin.post("/schedules/nope/run").status_code == 404


def test_a_csv_import_creates_exactly_its_orders(app: App) -> None:
    tag = f"imp{time.time_ns()}"
    csv = (
        "orderId,customerId,sku,quantity,price\n"
        f"{tag}-1,ann,tea,2,3.50\n"
        f"{tag}-2,ben,mug,1,9\n"
        f"{tag}-2,ben,tea,1,3.50\n"
        f"{tag}-3,cat,pot,1,20.13\n"  # declined: created, then cancelled
        f"{tag}-4,dan,pot,many,1\n"  # not a number: skipped
    )
    r = app.admin.put(
        f"/buckets/imports/objects/{tag}.csv",
        content=csv.encode(),
        headers={"content-type": "text/csv"},
    )
    assert r.status_code == 201, r.text
    wait_for("the first order", settled(app, f"{tag}-1", "confirmed"))
    wait_for("the second order", settled(app, f"{tag}-2", "confirmed"))
    wait_for("the declined order", settled(app, f"{tag}-3", "cancelled"))
    assert app.keys("orders", prefix=tag) == {f"{tag}-1", f"{tag}-2", f"{tag}-3"}
    assert app.get("orders", f"{tag}-2")["total"] == "12.50"  # type: ignore[index]
    assert [i["sku"] for i in app.get("orders", f"{tag}-2")["items"]] == ["mug", "tea"]  # type: ignore[index]
    imports = [i for i in app.invocations("ImportOrders") if any(tag in m for _, m in i["logs"])]
    assert any(
        "imported 3 order(s)" in m and "skipped 1" in m for i in imports for _, m in i["logs"]
    )


def test_an_invalid_order_ends_in_log_and_alert_or_a_dead_letter(app: App) -> None:
    tag = f"bad-{time.time_ns()}"
    run_id = app.post("/orders", {"customerId": tag, "items": []}).json()["run_id"]
    run = wait_for("the run to end", lambda: _ended(app, run_id))
    assert run["status"] == "failed" and run["error"]["cause"] == "InvalidOrder"
    assert [(h["step"], h["status"]) for h in run["history"]] == [
        ("validateOrder", "failed"),  # not retried: the step has no retry policy
        ("handleError", "succeeded"),
    ]
    alerted = [
        line
        for i in app.invocations("LogAndAlert")
        if i["outcome"] == "ok"
        for line in i["logs"]
        if "order failed" in line[1] and "has no orderId" in line[1]
    ]
    assert alerted and alerted[0][0] == "error"
    # the event chain: HandleOrderCreated fails it 3 times, then it is dead-lettered
    dlq = "/queues/HandleOrderCreated.dlq/messages"
    before = len(app.admin.get(dlq, params={"limit": 1000}).json()["messages"])
    assert app.admin.post("/events/order.created", json={"orderId": tag}).status_code == 201
    wait_for(
        "the dead letter",
        lambda: len(app.admin.get(dlq, params={"limit": 1000}).json()["messages"]) > before,
    )
    failed = [
        i
        for i in app.invocations("HandleOrderCreated")
        if any(f"order {tag} has no items" in m for _, m in i["logs"])
    ]
    assert len(failed) == 3 and {i["outcome"] for i in failed} != {"ok"}
    assert app.get("orders", tag) is None
