//! input {"op": "query" | "scan", "rounds": R}: R reads of the same 100 rows of table
//! "bench_ix" inside one invocation, either through the index (`kv_query` of `at ==
//! 3`, one page of 100) or by key (`kv_scan` of prefix "g3", one page of 100), so the
//! two can be compared without instantiation. Returns the rows read.
const nimbus = @import("nimbus");

pub fn handle(ev: *const nimbus.Event, res: *nimbus.Response) !void {
    const input = ev.input();
    const rounds: u32 = @intCast((input.get("rounds") orelse Value0).integer() orelse 0);
    const op = (input.get("op") orelse Value0).bytes() orelse "query";
    var rows: i64 = 0;
    var i: u32 = 0;
    while (i < rounds) : (i += 1) {
        const page = if (op[0] == 'q')
            try nimbus.tables.query("bench_ix", "at", .{ .eq = .{ .int = 3 }, .limit = 100 })
        else
            try nimbus.tables.scan("bench_ix", .{ .prefix = "g3", .limit = 100 });
        rows += @intCast(page.items.len);
    }
    res.output = .{ .int = rows };
}

const Value0: nimbus.Value = .nil;
