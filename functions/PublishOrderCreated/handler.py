"""PublishOrderCreated: `POST /orders/events` publishes the order as `order.created`.

The event-chain style of the example app: the functions subscribed downstream
(HandleOrderCreated, HandleOrderValidated, SendOrderConfirmation, CancelOrder) take
it from there. `POST /orders` starts OrderFulfillmentWorkflow on the same functions.
"""

import json

import nimbus


def handle(event: nimbus.HttpEvent) -> nimbus.Response:
    try:
        order = json.loads(event.body or b"null")
    except ValueError:
        return nimbus.Response.json({"error": "the body is not JSON"}, status=400)
    if not isinstance(order, dict):
        return nimbus.Response.json({"error": "an order is a JSON object"}, status=400)
    event_id = nimbus.events.publish("order.created", order)
    nimbus.log.info(f"order.created published for order {order.get('orderId')!r}")
    return nimbus.Response.json({"orderId": order.get("orderId"), "eventId": event_id}, status=202)
