//! input {"op": "get" | "put", "n": N}: N table operations on keys 0..N-1 (4-byte
//! big-endian) of table "bench", inside one invocation, so that the per-operation
//! cost of the host boundary can be measured without instantiation.
const nimbus = @import("nimbus");

pub fn handle(ev: *const nimbus.Event, res: *nimbus.Response) !void {
    const input = ev.input();
    const n: u32 = @intCast((input.get("n") orelse Value0).integer() orelse 0);
    const op = (input.get("op") orelse Value0).bytes() orelse "get";
    var found: i64 = 0;
    var key: [4]u8 = undefined;
    var i: u32 = 0;
    while (i < n) : (i += 1) {
        key = .{ @truncate(i >> 24), @truncate(i >> 16), @truncate(i >> 8), @truncate(i) };
        if (op[0] == 'p') {
            _ = try nimbus.tables.put("bench", &key, .{ .uint = i }, .{});
        } else if (try nimbus.tables.get("bench", &key)) |_| {
            found += 1;
        }
    }
    res.output = .{ .int = found };
}

const Value0: nimbus.Value = .nil;
