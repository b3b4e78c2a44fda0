//! Records every event it gets in table "state": increments "count.<kind>" by the
//! number of items (compare-and-set), writes "seen.<kind>.<id>" = attempt for each
//! message or event, and "last.<kind>" = the whole event. Fails when its env has
//! FAIL=always, or when a queue message's body is {"fail": true}; with
//! PUBLISH=<topic> it also publishes the event's id to that topic; with SLEEP_MS=<n>
//! it first busy-waits n milliseconds (a function with some work to do); with
//! PAD_BYTES=<n> it also writes n bytes under "pad.<kind>" (a big commit).
const nimbus = @import("nimbus");
const Value = nimbus.Value;
const eql = nimbus.msgpack.eql;

fn concat(parts: []const []const u8) []u8 {
    var n: usize = 0;
    for (parts) |p| n += p.len;
    const out = nimbus.alloc(n);
    var at: usize = 0;
    for (parts) |p| {
        @memcpy(out[at..][0..p.len], p);
        at += p.len;
    }
    return out;
}

fn increment(key: []const u8, by: i64) !void {
    var tries: usize = 0;
    while (tries < 20) : (tries += 1) {
        const current = try nimbus.tables.get("state", key);
        const opts: nimbus.tables.PutOptions = if (current) |c| .{ .if_version = c.version } else .{ .if_absent = true };
        const value: i64 = if (current) |c| (c.value.integer() orelse 0) + by else by;
        if (nimbus.tables.put("state", key, .{ .int = value }, opts)) |_| {
            return;
        } else |e| switch (e) {
            error.Conflict => continue,
            else => return e,
        }
    }
    return error.Conflict;
}

pub fn handle(ev: *const nimbus.Event, res: *nimbus.Response) !void {
    const kind = ev.kind();
    if (ev.env("FAIL")) |f| if (eql(f, "always")) {
        res.fail("Told", "FAIL=always");
        return;
    };
    if (ev.env("SLEEP_MS")) |ms| {
        var n: i64 = 0;
        for (ms) |c| n = n * 10 + (c - '0');
        const until = nimbus.now() + n * 1_000_000;
        while (nimbus.now() < until) {}
    }
    const msgs = ev.messages();
    for (msgs) |m| {
        const body = m.get("body") orelse .nil;
        if (body.get("fail")) |f| if (f == .boolean and f.boolean) {
            res.fail("Told", "the message asked to fail");
            return;
        };
    }
    const attempt: Value = ev.field("attempt") orelse .nil;
    if (eql(kind, "queue")) {
        try increment("count.queue", @intCast(msgs.len));
        for (msgs) |m| {
            const idv: Value = m.get("id") orelse .nil;
            const id = idv.bytes() orelse "";
            _ = try nimbus.tables.put("state", concat(&.{ "seen.queue.", id }), m.get("attempt") orelse .nil, .{});
        }
    } else {
        try increment(concat(&.{ "count.", kind }), 1);
        _ = try nimbus.tables.put("state", concat(&.{ "seen.", kind, ".", ev.id() }), attempt, .{});
    }
    _ = try nimbus.tables.put("state", concat(&.{ "last.", kind }), ev.root, .{});
    if (ev.env("PAD_BYTES")) |text| {
        var n: usize = 0;
        for (text) |c| n = n * 10 + (c - '0');
        const pad = nimbus.alloc(n);
        @memset(pad, 'p');
        _ = try nimbus.tables.put("state", concat(&.{ "pad.", kind }), .{ .bin = pad }, .{});
    }
    if (ev.env("PUBLISH")) |topic| {
        _ = try nimbus.events.publish(topic, .{ .str = ev.id() });
    }
    res.output = .{ .str = kind };
}
