"""ImportOrders: a CSV of orders put into bucket `imports` creates those orders.

Columns: orderId,customerId,sku,quantity,price (a header line first); an order with
several items has one line per item. Each order is published as `order.created`, so
it is validated, priced, charged and confirmed like any other (and a file imported
twice creates nothing twice: HandleOrderCreated is idempotent). Lines that cannot be
read are logged with their line number and skipped.
"""

import csv
import io

import nimbus

COLUMNS = ["orderId", "customerId", "sku", "quantity", "price"]
#: orders per file: each is one event staged in this invocation's commit
MAX_ORDERS = 500
#: bytes per file: read whole into the function's memory
MAX_BYTES = 1024 * 1024


def handle(event: nimbus.StorageEvent):
    if event.op != "put":
        return {"output": {"imported": 0}}
    if (event.size or 0) > MAX_BYTES:
        message = f"{event.key} is {event.size} bytes; at most {MAX_BYTES} per file, split it"
        return {"error": {"kind": "InvalidImport", "message": message}}
    blob = nimbus.blobs.get(event.bucket, event.key)
    if blob is None:
        nimbus.log.warn(f"{event.bucket}/{event.key} is gone; nothing to import")
        return {"output": {"imported": 0}}
    text = bytes(blob["data"]).decode("utf-8-sig", errors="replace")
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        return {"error": {"kind": "InvalidImport", "message": f"{event.key}: no column {missing}"}}
    orders: dict[str, dict] = {}
    skipped = 0
    for line, row in enumerate(reader, start=2):
        try:
            item = {"sku": row["sku"], "quantity": int(row["quantity"]), "price": float(row["price"])}
        except (TypeError, ValueError):
            nimbus.log.error(f"{event.key} line {line}: quantity or price is not a number; skipped")
            skipped += 1
            continue
        order = orders.setdefault(
            row["orderId"], {"orderId": row["orderId"], "customerId": row["customerId"], "items": []}
        )
        order["items"].append(item)
    if len(orders) > MAX_ORDERS:
        message = f"{event.key} has {len(orders)} orders; at most {MAX_ORDERS} per file, split it"
        return {"error": {"kind": "InvalidImport", "message": message}}
    for order in orders.values():
        nimbus.events.publish("order.created", order)
    nimbus.log.info(f"imported {len(orders)} order(s) from {event.key}, skipped {skipped} line(s)")
    return {"output": {"imported": len(orders), "skipped": skipped}}
