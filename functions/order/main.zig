//! The steps of the example app's order pipeline (workflow OrderFulfillment in
//! nimbus.toml), one function per step, chosen by the STEP environment variable:
//!   validate: needs an orderId and a positive total; outputs {orderId, total}
//!   payment:  declines totals over 1000 (PaymentDeclined); records the charge
//!   ship:     marks the order shipped in table "orders"
//!   notify:   publishes "order.shipped"
//!   failed:   records that the order failed
//! Over HTTP (GET /orders/{orderId}) it answers the order's status from the table.
const nimbus = @import("nimbus");
const eql = nimbus.msgpack.eql;
const Value = nimbus.Value;

fn record(order: []const u8, state: []const u8) !void {
    _ = try nimbus.tables.put("orders", order, .{ .str = state }, .{});
}

pub fn handle(ev: *const nimbus.Event, res: *nimbus.Response) !void {
    if (ev.is("http")) return status(ev, res);
    const step = ev.env("STEP") orelse "";
    const input = ev.input();
    const nested: Value = input.get("order") orelse .nil; // a handler gets {order, error}
    const order_v: Value = input.get("orderId") orelse nested.get("orderId") orelse .nil;
    const order = order_v.bytes() orelse "";
    const total_v: Value = input.get("total") orelse .nil;
    const total = total_v.integer() orelse 0;
    if (eql(step, "validate")) {
        if (order.len == 0 or total <= 0) return res.fail("InvalidOrder", "an order needs an orderId and a positive total");
        try record(order, "validated");
    } else if (eql(step, "payment")) {
        if (total > 1000) return res.fail("PaymentDeclined", "the card was declined");
        try record(order, "paid");
    } else if (eql(step, "ship")) {
        try record(order, "shipped");
    } else if (eql(step, "notify")) {
        _ = try nimbus.events.publish("order.shipped", .{ .str = order });
    } else if (eql(step, "failed")) {
        try record(order, "failed");
    }
    nimbus.log.info(step);
    const out = try nimbus.allocator.alloc(nimbus.Pair, 2);
    out[0] = nimbus.kv("orderId", .{ .str = order });
    out[1] = nimbus.kv("total", .{ .int = total });
    res.output = .{ .map = out };
}

fn status(ev: *const nimbus.Event, res: *nimbus.Response) !void {
    const order = ev.param("orderId") orelse "";
    const found = try nimbus.tables.get("orders", order);
    if (found) |f| {
        res.text(200, f.value.bytes() orelse "?");
    } else {
        res.text(404, "no such order");
    }
}
