//! Runs the service operations listed in its input through the SDK's wrappers and
//! returns one result per operation; then succeeds, fails, traps or loops as told.
//!
//! input: {"ops": [{"op": "kv_put", "table": "t", "key": "k", "value": 1}, ...],
//!         "then": "ok" | "fail" | "panic" | "loop"}
const std = @import("std");
const nimbus = @import("nimbus");
const Value = nimbus.Value;
const kv = nimbus.kv;

fn str(op: Value, name: []const u8) []const u8 {
    const v = op.get(name) orelse return "";
    return v.bytes() orelse "";
}

fn optInt(op: Value, name: []const u8) ?i64 {
    const v = op.get(name) orelse return null;
    return v.integer();
}

fn run(op: Value) nimbus.ServiceError!Value {
    const name = str(op, "op");
    const eql = nimbus.msgpack.eql;
    if (eql(name, "kv_get")) {
        const found = try nimbus.tables.get(str(op, "table"), str(op, "key"));
        const entry = found orelse return .nil;
        const out = nimbus.heap.allocSlice(nimbus.Pair, 2).?;
        out[0] = kv("value", entry.value);
        out[1] = kv("version", .{ .int = entry.version });
        return .{ .map = out };
    }
    if (eql(name, "kv_put")) {
        const opts = nimbus.tables.PutOptions{
            .if_absent = if (op.get("if_absent")) |v| v == .boolean and v.boolean else false,
            .if_version = optInt(op, "if_version"),
        };
        return .{ .int = try nimbus.tables.put(str(op, "table"), str(op, "key"), op.get("value") orelse .nil, opts) };
    }
    if (eql(name, "kv_delete")) {
        return .{ .boolean = try nimbus.tables.delete(str(op, "table"), str(op, "key"), optInt(op, "if_version")) };
    }
    if (eql(name, "kv_scan")) {
        const prefix = str(op, "prefix");
        const cursor = str(op, "cursor");
        const page = try nimbus.tables.scan(str(op, "table"), .{
            .prefix = if (prefix.len > 0) prefix else null,
            .cursor = if (cursor.len > 0) cursor else null,
            .limit = @intCast(optInt(op, "limit") orelse 100),
        });
        const out = nimbus.heap.allocSlice(nimbus.Pair, 2).?;
        out[0] = kv("items", .{ .array = page.items });
        out[1] = kv("cursor", if (page.cursor) |c| .{ .bin = c } else .nil);
        return .{ .map = out };
    }
    if (eql(name, "kv_query")) {
        const cursor = str(op, "cursor");
        const page = try nimbus.tables.query(str(op, "table"), str(op, "index"), .{
            .eq = op.get("eq"),
            .start = op.get("start"),
            .end = op.get("end"),
            .limit = @intCast(optInt(op, "limit") orelse 100),
            .cursor = if (cursor.len > 0) cursor else null,
            .reverse = if (op.get("reverse")) |v| v == .boolean and v.boolean else false,
        });
        const out = nimbus.heap.allocSlice(nimbus.Pair, 2).?;
        out[0] = kv("items", .{ .array = page.items });
        out[1] = kv("cursor", if (page.cursor) |c| .{ .bin = c } else .nil);
        return .{ .map = out };
    }
    if (eql(name, "blob_put")) {
        return nimbus.blobs.put(str(op, "bucket"), str(op, "key"), str(op, "data"), str(op, "content_type"));
    }
    if (eql(name, "blob_get")) {
        if (optInt(op, "end")) |end| {
            const start: u64 = @intCast(optInt(op, "start") orelse 0);
            return (try nimbus.blobs.getRange(str(op, "bucket"), str(op, "key"), start, @intCast(end))) orelse .nil;
        }
        return (try nimbus.blobs.get(str(op, "bucket"), str(op, "key"))) orelse .nil;
    }
    if (eql(name, "blob_head")) return (try nimbus.blobs.head(str(op, "bucket"), str(op, "key"))) orelse .nil;
    if (eql(name, "blob_delete")) return .{ .boolean = try nimbus.blobs.delete(str(op, "bucket"), str(op, "key")) };
    if (eql(name, "blob_list")) {
        const cursor = str(op, "cursor");
        return nimbus.blobs.list(str(op, "bucket"), str(op, "prefix"), @intCast(optInt(op, "limit") orelse 100), if (cursor.len > 0) cursor else null);
    }
    if (eql(name, "queue_send")) {
        return .{ .str = try nimbus.queues.send(str(op, "queue"), op.get("body") orelse .nil, @intCast(optInt(op, "delay_ms") orelse 0)) };
    }
    if (eql(name, "event_publish")) {
        return .{ .str = try nimbus.events.publish(str(op, "topic"), op.get("payload") orelse .nil) };
    }
    return error.Invalid;
}

pub fn handle(ev: *const nimbus.Event, res: *nimbus.Response) !void {
    const input = ev.input();
    const ops: []const Value = if (input.get("ops")) |v| switch (v) {
        .array => |a| a,
        else => &.{},
    } else &.{};
    const results = try nimbus.allocator.alloc(Value, ops.len);
    for (ops, 0..) |op, i| {
        const one = try nimbus.allocator.alloc(nimbus.Pair, 1);
        if (run(op)) |v| {
            one[0] = kv("ok", v);
        } else |e| {
            one[0] = kv("err", .{ .str = @errorName(e) });
        }
        results[i] = .{ .map = one };
    }
    res.output = .{ .array = results };
    const then = str(input, "then");
    if (nimbus.msgpack.eql(then, "fail")) res.fail("Refused", "told to fail after its writes");
    if (nimbus.msgpack.eql(then, "panic")) @panic("told to panic after its writes");
    if (nimbus.msgpack.eql(then, "loop")) {
        var spins: u64 = 0;
        const p: *volatile u64 = &spins;
        while (true) p.* +%= 1;
    }
}
