"""HandleOrderValidated: charges a validated order through the payment service, once.

Runs on bus topic `order.validated` (then publishes `payment.completed` or
`payment.failed`) and as step processPayment of OrderFulfillmentWorkflow (then it
answers, and a decline fails the step with PaymentDeclined so handlePaymentFailure
runs). The payment API's URL is `env.PAYMENT_URL`, its key the secret
PAYMENT_API_KEY; the charge carries the order id as its Idempotency-Key, so a retry
or a redelivery never charges twice, and `payments` makes the function idempotent.
An unreachable or failing (5xx) service fails with PaymentUnavailable: the event
trigger and the workflow's retry policy try again with exponential backoff.
"""

import nimbus


def handle(event: nimbus.Event):
    chained = isinstance(event, nimbus.BusEvent)
    order = event.payload if chained else getattr(event, "input", None)
    if not isinstance(order, dict) or not order.get("orderId") or not order.get("total"):
        return failure("InvalidOrder", "a validated order has an orderId and a total")
    order_id = order["orderId"]
    found = nimbus.tables.get("payments", order_id)
    if found is not None:
        nimbus.log.info(f"order {order_id} was charged already ({found[0]['status']})")
        return {"output": {**order, "payment": found[0]}}
    status, answer = charge(event, order)
    if status >= 500:
        nimbus.log.warn(f"payment service answered {status} for order {order_id}; will retry")
        return failure("PaymentUnavailable", f"the payment service answered {status}")
    if status == 401:
        return failure("PaymentRejected", "the payment service refused PAYMENT_API_KEY")
    now = nimbus.now_ns() // 1_000_000
    payment = {
        "orderId": order_id,
        "customerId": order.get("customerId", ""),
        "amount": order["total"],
        "processedAt": now,
    }
    if status == 200:
        payment.update(status="completed", paymentId=answer["paymentId"])
        topic = "payment.completed"
    elif status == 402:
        payment.update(status="declined", reason=answer.get("reason", "declined"))
        topic = "payment.failed"
        if not chained:
            nimbus.log.warn(f"payment of order {order_id} declined")
            return failure("PaymentDeclined", payment["reason"])
    else:
        return failure("PaymentRejected", f"the payment service answered {status}: {answer}")
    nimbus.tables.put("payments", order_id, payment, if_absent=True)
    if chained:
        nimbus.events.publish(topic, {**order, "payment": payment})
    nimbus.log.info(f"payment of order {order_id}: {payment['status']}")
    return {"output": {**order, "payment": payment}}


def charge(event: nimbus.Event, order: dict) -> tuple[int, dict]:
    """POST the charge; (status, JSON answer), or (503, {}) when the service is down."""
    url = event.env.get("PAYMENT_URL")
    if not url:
        nimbus.log.error("env PAYMENT_URL is not set (nimbus.toml, [functions.HandleOrderValidated])")
        return 503, {}
    key = nimbus.secrets.get("PAYMENT_API_KEY")
    if key is None:
        nimbus.log.error("secret PAYMENT_API_KEY is not set: nimbus secrets set PAYMENT_API_KEY")
        return 401, {}
    try:
        r = nimbus.http.fetch(
            f"{url}/charges",
            method="POST",
            headers={"authorization": f"Bearer {key}", "idempotency-key": f"order-{order['orderId']}"},
            json={
                "orderId": order["orderId"],
                "customerId": order.get("customerId", ""),
                "amount": order["total"],
                "currency": "USD",
            },
            timeout_ms=10_000,
        )
    except (nimbus.Unavailable, nimbus.Timeout) as e:
        nimbus.log.warn(f"payment service unreachable: {e}")
        return 503, {}
    try:
        answer = r.json()
    except ValueError:
        answer = {}
    return r.status, answer if isinstance(answer, dict) else {}


def failure(kind: str, message: str) -> dict:
    return {"error": {"kind": kind, "message": message}}
