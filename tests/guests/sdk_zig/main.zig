//! Decodes each envelope kind with the SDK's accessors and echoes what it read.
const nimbus = @import("nimbus");
const Value = nimbus.Value;
const kv = nimbus.kv;

fn s(text: ?[]const u8) Value {
    return if (text) |t| .{ .str = t } else .nil;
}

pub fn handle(ev: *const nimbus.Event, res: *nimbus.Response) !void {
    var out: [12]nimbus.Pair = undefined;
    var n: usize = 0;
    const common = [_]nimbus.Pair{
        kv("kind", s(ev.kind())),
        kv("id", s(ev.id())),
        kv("request_id", s(ev.requestId())),
        kv("function", s(ev.function())),
        kv("deadline_ms", .{ .int = ev.deadlineMs() }),
        kv("env_greeting", s(ev.env("GREETING"))),
    };
    for (common) |p| {
        out[n] = p;
        n += 1;
    }
    if (ev.is("http")) {
        const extra = [_]nimbus.Pair{
            kv("method", s(ev.method())),
            kv("path", s(ev.path())),
            kv("param", s(ev.param("name"))),
            kv("query", s(ev.query("q"))),
            kv("header", s(ev.header("x-test"))),
            kv("body", .{ .bin = ev.body() }),
        };
        for (extra) |p| {
            out[n] = p;
            n += 1;
        }
    } else if (ev.is("queue")) {
        const msgs = ev.messages();
        out[n] = kv("count", .{ .uint = msgs.len });
        n += 1;
        if (msgs.len > 0) {
            out[n] = kv("first_body", msgs[0].get("body") orelse .nil);
            out[n + 1] = kv("first_attempt", msgs[0].get("attempt") orelse .nil);
            n += 2;
        }
    } else if (ev.is("event")) {
        out[n] = kv("topic", s(ev.string("topic")));
        out[n + 1] = kv("payload", ev.payload());
        n += 2;
    } else if (ev.is("storage")) {
        out[n] = kv("bucket", s(ev.string("bucket")));
        out[n + 1] = kv("key", s(ev.string("key")));
        out[n + 2] = kv("op", s(ev.string("op")));
        n += 3;
    } else if (ev.is("schedule")) {
        out[n] = kv("schedule", s(ev.string("schedule")));
        out[n + 1] = kv("scheduled_ms", .{ .int = ev.int("scheduled_ms") orelse -1 });
        n += 2;
    } else {
        out[n] = kv("input", ev.input());
        n += 1;
    }
    const copy = try nimbus.allocator.dupe(nimbus.Pair, out[0..n]);
    res.output = .{ .map = copy };
    res.setHeader("x-sdk", "zig");
}
