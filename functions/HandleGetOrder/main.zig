//! HandleGetOrder: GET /orders/{orderId} answers the order with its paymentStatus as
//! JSON, or 404 {"error": "order not found"}. paymentStatus is the `payments` record's
//! status ("completed", "declined"), else what CancelOrder recorded, else "pending".
const nimbus = @import("nimbus");
const kv = nimbus.kv;
const Pair = nimbus.Pair;
const Value = nimbus.Value;

/// the longest table key (guest_sdk/ABI.md, "Limits")
const max_key = 480;

pub fn handle(ev: *const nimbus.Event, res: *nimbus.Response) !void {
    const order_id = ev.param("orderId") orelse "";
    if (order_id.len == 0 or order_id.len > max_key) {
        res.status = 400;
        res.output = .{ .map = try nimbus.allocator.dupe(Pair, &.{
            kv("error", Value.s("an order id is 1 to 480 bytes")),
        }) };
        return;
    }
    const found = try nimbus.tables.get("orders", order_id);
    const order = found orelse {
        res.status = 404;
        res.output = .{ .map = try nimbus.allocator.dupe(Pair, &.{
            kv("error", Value.s("order not found")),
            kv("orderId", Value.s(order_id)),
        }) };
        return;
    };
    const fields: []const Pair = switch (order.value) {
        .map => |m| m,
        else => &.{},
    };
    const payment = try nimbus.tables.get("payments", order_id);
    const recorded: Value = order.value.get("paymentStatus") orelse Value.s("pending");
    const status: Value = if (payment) |p| p.value.get("status") orelse recorded else recorded;

    var out = try nimbus.allocator.alloc(Pair, fields.len + 1);
    var n: usize = 0;
    for (fields) |f| {
        const name = f.key.bytes() orelse continue;
        if (nimbus.msgpack.eql(name, "paymentStatus")) continue;
        out[n] = f;
        n += 1;
    }
    out[n] = kv("paymentStatus", status);
    res.output = .{ .map = out[0 .. n + 1] };
}
