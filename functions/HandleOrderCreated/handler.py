"""HandleOrderCreated: validates a new order, prices it and records it, once.

Runs on bus topic `order.created` (the event chain) and as step validateOrder of
OrderFulfillmentWorkflow. An order is {"orderId", "customerId", "items": [{"sku",
"quantity", "price"}]}; one without an id or items fails with InvalidOrder (400).
`processed_orders` makes it idempotent: an order seen before is not written again
and, on the bus, not passed on again.
"""

from decimal import Decimal, InvalidOperation

import nimbus


def handle(event: nimbus.Event):
    chained = isinstance(event, nimbus.BusEvent)
    order = event.payload if chained else getattr(event, "input", None)
    problem = invalid(order)
    if problem:
        nimbus.log.error(f"rejected order: {problem}")
        return {"status": 400, "error": {"kind": "InvalidOrder", "message": problem}}
    order_id = order["orderId"]
    if nimbus.tables.get("processed_orders", order_id) is not None:
        nimbus.log.info(f"order {order_id} was processed already; nothing to do")
        stored = nimbus.tables.get("orders", order_id)
        return {"output": stored[0] if stored else None}
    total = sum(Decimal(str(i["price"])) * i["quantity"] for i in order["items"])
    now = nimbus.now_ns() // 1_000_000
    record = {
        "orderId": order_id,
        "customerId": str(order.get("customerId", "")),
        "items": [
            {"sku": str(i["sku"]), "quantity": i["quantity"], "price": float(i["price"])}
            for i in order["items"]
        ],
        "total": f"{total.quantize(Decimal('0.01'))}",
        "status": "validated",
        "createdAt": now,
    }
    nimbus.tables.put("orders", order_id, record)
    # if_absent is checked again at commit: of two deliveries racing, one commits and
    # the other fails (Conflict), is retried, and finds the order processed
    processed = {"orderId": order_id, "processedAt": now}
    nimbus.tables.put("processed_orders", order_id, processed, if_absent=True)
    if chained:
        nimbus.events.publish("order.validated", record)
    nimbus.log.info(f"order {order_id} validated: total {record['total']}")
    return {"output": record}


def invalid(order) -> str:
    """What is wrong with ``order``, or "" when nothing is."""
    if not isinstance(order, dict):
        return "an order is a JSON object with orderId and items"
    if not isinstance(order.get("orderId"), str) or not order["orderId"]:
        return "the order has no orderId"
    items = order.get("items")
    if not isinstance(items, list) or not items:
        return f"order {order['orderId']} has no items"
    for n, item in enumerate(items):
        if not isinstance(item, dict) or not item.get("sku"):
            return f"item {n} of order {order['orderId']} has no sku"
        quantity = item.get("quantity")
        if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 1:
            return f"item {n} of order {order['orderId']}: quantity must be a whole number >= 1"
        try:
            price = Decimal(str(item.get("price")))
        except InvalidOperation:
            price = Decimal(-1)
        if isinstance(item.get("price"), bool) or not price.is_finite() or price < 0:
            return f"item {n} of order {order['orderId']}: price must be a number >= 0"
    return ""
