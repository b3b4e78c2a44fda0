//! One step of the test workflows, named by env STEP. It fails when the input's
//! "fail" list names its step, never returns when the "hang" list does, and
//! otherwise increments "count.<STEP>" in table "wf" (compare-and-set) and outputs
//! {"step": STEP, "orderId": input.orderId, "attempt": attempt}. SLEEP_MS=<n> makes
//! it busy-wait n milliseconds first.
const nimbus = @import("nimbus");
const Value = nimbus.Value;
const eql = nimbus.msgpack.eql;

fn listed(input: Value, list: []const u8, name: []const u8) bool {
    const v = input.get(list) orelse return false;
    const items = switch (v) {
        .array => |a| a,
        else => return false,
    };
    for (items) |it| if (eql(it.bytes() orelse "", name)) return true;
    return false;
}

pub fn handle(ev: *const nimbus.Event, res: *nimbus.Response) !void {
    const step = ev.env("STEP") orelse "?";
    const input = ev.input();
    if (listed(input, "fail", step)) {
        res.fail("StepFailed", "the input asked this step to fail");
        return;
    }
    if (listed(input, "hang", step)) {
        var spins: u64 = 0;
        const p: *volatile u64 = &spins;
        while (true) p.* +%= 1;
    }
    if (ev.env("SLEEP_MS")) |ms| {
        var n: i64 = 0;
        for (ms) |c| n = n * 10 + (c - '0');
        const until = nimbus.now() + n * 1_000_000;
        while (nimbus.now() < until) {}
    }
    const key = nimbus.alloc(6 + step.len);
    @memcpy(key[0..6], "count.");
    @memcpy(key[6..], step);
    var tries: usize = 0;
    while (tries < 50) : (tries += 1) {
        const cur = try nimbus.tables.get("wf", key);
        const opts: nimbus.tables.PutOptions = if (cur) |c| .{ .if_version = c.version } else .{ .if_absent = true };
        const n: i64 = if (cur) |c| (c.value.integer() orelse 0) + 1 else 1;
        if (nimbus.tables.put("wf", key, .{ .int = n }, opts)) |_| break else |e| switch (e) {
            error.Conflict => continue,
            else => return e,
        }
    }
    const out = try nimbus.allocator.alloc(nimbus.Pair, 3);
    out[0] = nimbus.kv("step", .{ .str = step });
    out[1] = nimbus.kv("orderId", input.get("orderId") orelse .nil);
    out[2] = nimbus.kv("attempt", ev.field("attempt") orelse .nil);
    res.output = .{ .map = out };
}
