//! Makes the outbound requests and reads the secrets its input lists, through the
//! SDK's `http` and `secrets`, and returns one result per call; then, if told, spins
//! until it is stopped (crash tests kill the host between the call and the commit).
//!
//! input (an invoke's input, or a queue message's body):
//!   {"calls": [{"url": …, "method": "POST", "headers": {…}, "body": …,
//!               "timeout_ms": 100, "follow_redirects": true}, …],
//!    "repeat": 1, "secrets": ["NAME", …], "spin_on_attempt": 1}
//! output: {"calls": [{"ok": {"status", "headers", "body"}} | {"err", "message"}],
//!          "secrets": [{"ok": value or nil} | {"err", "message"}]}
const nimbus = @import("nimbus");
const Value = nimbus.Value;
const kv = nimbus.kv;

fn str(v: Value, name: []const u8) []const u8 {
    const f = v.get(name) orelse return "";
    return f.bytes() orelse "";
}

fn failure(e: anyerror) Value {
    const pairs = nimbus.heap.allocSlice(nimbus.Pair, 2).?;
    pairs[0] = kv("err", .{ .str = @errorName(e) });
    pairs[1] = kv("message", .{ .str = nimbus.last_error });
    return .{ .map = pairs };
}

fn success(v: Value) Value {
    const pairs = nimbus.heap.allocSlice(nimbus.Pair, 1).?;
    pairs[0] = kv("ok", v);
    return .{ .map = pairs };
}

fn fetch(call: Value) Value {
    var headers: []nimbus.Header = &.{};
    if (call.get("headers")) |h| switch (h) {
        .map => |pairs| {
            headers = nimbus.heap.allocSlice(nimbus.Header, pairs.len).?;
            for (pairs, 0..) |p, i| headers[i] = .{ .name = p.key.bytes() orelse "", .value = p.value.bytes() orelse "" };
        },
        else => {},
    };
    const method = str(call, "method");
    const reply = nimbus.http.fetch(.{
        .method = if (method.len > 0) method else "GET",
        .url = str(call, "url"),
        .headers = headers,
        .body = if (call.get("body")) |b| b.bytes() else null,
        .timeout_ms = if (call.get("timeout_ms")) |t| @intCast(t.integer() orelse 0) else null,
        .follow_redirects = if (call.get("follow_redirects")) |f| f == .boolean and f.boolean else false,
    }) catch |e| return failure(e);
    const pairs = nimbus.heap.allocSlice(nimbus.Pair, 3).?;
    pairs[0] = kv("status", .{ .uint = reply.status });
    pairs[1] = kv("headers", reply.headers);
    pairs[2] = kv("body", .{ .bin = reply.body });
    return success(.{ .map = pairs });
}

fn items(v: ?Value) []const Value {
    const x = v orelse return &.{};
    return switch (x) {
        .array => |a| a,
        else => &.{},
    };
}

pub fn handle(ev: *const nimbus.Event, res: *nimbus.Response) !void {
    var spec = ev.input();
    var attempt: i64 = 1;
    if (ev.is("queue")) {
        const first = ev.messages()[0];
        spec = first.get("body") orelse .nil;
        attempt = (first.get("attempt") orelse Value{ .int = 1 }).integer() orelse 1;
    }
    const calls = items(spec.get("calls"));
    const repeat: usize = @intCast((spec.get("repeat") orelse Value{ .int = 1 }).integer() orelse 1);
    const results = try nimbus.allocator.alloc(Value, calls.len * repeat);
    for (0..repeat) |r| {
        for (calls, 0..) |call, i| results[r * calls.len + i] = fetch(call);
    }
    const names = items(spec.get("secrets"));
    const secrets = try nimbus.allocator.alloc(Value, names.len);
    for (names, 0..) |name, i| {
        if (nimbus.secrets.get(name.bytes() orelse "")) |found| {
            secrets[i] = success(if (found) |s| .{ .str = s } else .nil);
        } else |e| secrets[i] = failure(e);
    }
    const out = try nimbus.allocator.alloc(nimbus.Pair, 2);
    out[0] = kv("calls", .{ .array = results });
    out[1] = kv("secrets", .{ .array = secrets });
    res.output = .{ .map = out };
    if (spec.get("spin_on_attempt")) |s| {
        if (s.integer() == attempt) {
            var spins: u64 = 0;
            const p: *volatile u64 = &spins;
            while (true) p.* +%= 1;
        }
    }
}
