//! input {"url": URL, "n": N}: N GET requests to URL through `http_fetch` inside one
//! invocation (N <= 32), so the per-request cost of the host boundary can be measured
//! without instantiation; output: how many answered 200.
const nimbus = @import("nimbus");

pub fn handle(ev: *const nimbus.Event, res: *nimbus.Response) !void {
    const input = ev.input();
    const n: u32 = @intCast((input.get("n") orelse Value0).integer() orelse 0);
    const url = (input.get("url") orelse Value0).bytes() orelse "";
    var ok: i64 = 0;
    var i: u32 = 0;
    while (i < n) : (i += 1) {
        const reply = try nimbus.http.fetch(.{ .url = url });
        if (reply.status == 200) ok += 1;
    }
    res.output = .{ .int = ok };
}

const Value0: nimbus.Value = .nil;
