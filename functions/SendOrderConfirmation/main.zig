//! SendOrderConfirmation: tells the customer their order is paid, once.
//!
//! Runs on bus topic `payment.completed` (the event chain) and as step
//! sendNotification of OrderFulfillmentWorkflow (non-critical: the order stands if
//! this fails). "Sending" is a record in table `notifications` (the message an email
//! service would get) and the order's status set to "confirmed"; a notification
//! already recorded for the order is not sent again.
const std = @import("std");
const nimbus = @import("nimbus");
const kv = nimbus.kv;
const Pair = nimbus.Pair;
const Value = nimbus.Value;

pub fn handle(ev: *const nimbus.Event, res: *nimbus.Response) !void {
    const order: Value = if (ev.is("event")) ev.payload() else ev.input();
    const order_id = text(order, "orderId") orelse
        return res.fail("InvalidOrder", "a confirmation needs the order's orderId");
    const customer = text(order, "customerId") orelse "";
    const total = text(order, "total") orelse "?";

    if (try nimbus.tables.get("notifications", order_id)) |_| {
        nimbus.log.print(.info, "order {s}: confirmation sent already", .{order_id});
        res.output = .{ .map = try nimbus.allocator.dupe(Pair, &.{kv("orderId", Value.s(order_id))}) };
        return;
    }
    const now = nimbus.nowMs();
    const message = try std.fmt.allocPrint(
        nimbus.allocator,
        "Thank you! Order {s} is paid ({s} USD) and on its way.",
        .{ order_id, total },
    );
    _ = try nimbus.tables.put("notifications", order_id, .{ .map = try nimbus.allocator.dupe(Pair, &.{
        kv("orderId", Value.s(order_id)),
        kv("customerId", Value.s(customer)),
        kv("channel", Value.s("email")),
        kv("message", Value.s(message)),
        kv("sentAt", Value.i(now)),
    }) }, .{});
    try confirm(order_id, now);
    nimbus.log.print(.info, "order {s}: confirmation sent to {s}", .{ order_id, customer });
    res.output = .{ .map = try nimbus.allocator.dupe(Pair, &.{
        kv("orderId", Value.s(order_id)),
        kv("message", Value.s(message)),
    }) };
}

fn text(v: Value, name: []const u8) ?[]const u8 {
    const found = v.get(name) orelse return null;
    return found.bytes();
}

/// The order's status becomes "confirmed" (a compare-and-set on the version read).
fn confirm(order_id: []const u8, now: i64) !void {
    const found = (try nimbus.tables.get("orders", order_id)) orelse return;
    const fields: []const Pair = switch (found.value) {
        .map => |m| m,
        else => return,
    };
    var out = try nimbus.allocator.alloc(Pair, fields.len + 2);
    var n: usize = 0;
    for (fields) |f| {
        const name = f.key.bytes() orelse continue;
        if (nimbus.msgpack.eql(name, "status") or nimbus.msgpack.eql(name, "confirmedAt")) continue;
        out[n] = f;
        n += 1;
    }
    out[n] = kv("status", Value.s("confirmed"));
    out[n + 1] = kv("confirmedAt", Value.i(now));
    _ = try nimbus.tables.put("orders", order_id, .{ .map = out[0 .. n + 2] }, .{ .if_version = found.version });
}
