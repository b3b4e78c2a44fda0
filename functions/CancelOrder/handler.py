"""CancelOrder: marks an order cancelled and records why.

Runs on bus topic `payment.failed` (the event chain) and as handler
handlePaymentFailure of OrderFulfillmentWorkflow, where its input is
{"order": the validated order, "error": the failure that led there}.
"""

import nimbus


def handle(event: nimbus.Event):
    if isinstance(event, nimbus.BusEvent):
        order = event.payload or {}
        payment = order.get("payment") or {}
        reason = payment.get("reason") or "payment failed"
        payment_status = payment.get("status", "failed")
    else:
        given = getattr(event, "input", None) or {}
        order = given.get("order") or {}
        error = given.get("error") or {}
        cause = error.get("cause") or error.get("kind") or ""
        # the message reads "<cause>: function <name> failed: <cause>: <its message>"
        reason = str(error.get("message") or "payment failed").rsplit(f"{cause}: ", 1)[-1]
        payment_status = "declined" if cause == "PaymentDeclined" else "failed"
    order_id = order.get("orderId") if isinstance(order, dict) else None
    if not order_id:
        return {"error": {"kind": "InvalidOrder", "message": "nothing to cancel: no orderId"}}
    found = nimbus.tables.get("orders", order_id)
    if found is None:
        nimbus.log.warn(f"order {order_id} does not exist; nothing to cancel")
        return {"output": None}
    record, version = found
    if record.get("status") == "cancelled":
        return {"output": record}
    record = {
        **record,
        "status": "cancelled",
        "cancelReason": reason,
        "paymentStatus": payment_status,
        "cancelledAt": nimbus.now_ns() // 1_000_000,
    }
    nimbus.tables.put("orders", order_id, record, if_version=version)
    nimbus.log.info(f"order {order_id} cancelled: {reason}")
    return {"output": record}
