//! input {"op": "query" | "scan" | "put_indexed" | "put_plain", "rounds": R}.
//! query / scan: R reads of the same 100 rows of table "bench_ix" inside one
//! invocation, either through the index (`kv_query` of `at == 3`, one page of 100) or
//! by key (`kv_scan` of prefix "g3", one page of 100); returns the rows read.
//! put_indexed / put_plain: R overwrites of rows {at, n} in "bench_ix" (indexed on
//! `at`) or in "bench_plain" (no index), keys as above; returns R.
const nimbus = @import("nimbus");

pub fn handle(ev: *const nimbus.Event, res: *nimbus.Response) !void {
    const input = ev.input();
    const rounds: u32 = @intCast((input.get("rounds") orelse Value0).integer() orelse 0);
    const op = (input.get("op") orelse Value0).bytes() orelse "query";
    var rows: i64 = 0;
    var i: u32 = 0;
    while (i < rounds) : (i += 1) {
        if (op[0] == 'p') {
            var key: [7]u8 = .{ 'g', '0' + @as(u8, @intCast(i % 10)), '-', '0', '0', '0', '0' };
            var n = i % 1000;
            var d: usize = 6;
            while (d > 2) : (d -= 1) {
                key[d] = '0' + @as(u8, @intCast(n % 10));
                n /= 10;
            }
            const fields = nimbus.heap.allocSlice(nimbus.Pair, 2).?;
            fields[0] = nimbus.kv("at", .{ .int = @intCast((i % 1000) % 10) });
            fields[1] = nimbus.kv("n", .{ .int = @intCast(i) });
            const table = if (op.len > 4 and op[4] == 'i') "bench_ix" else "bench_plain";
            _ = try nimbus.tables.put(table, &key, .{ .map = fields }, .{});
            rows += 1;
            continue;
        }
        const page = if (op[0] == 'q')
            try nimbus.tables.query("bench_ix", "at", .{ .eq = .{ .int = 3 }, .limit = 100 })
        else
            try nimbus.tables.scan("bench_ix", .{ .prefix = "g3", .limit = 100 });
        rows += @intCast(page.items.len);
    }
    res.output = .{ .int = rows };
}

const Value0: nimbus.Value = .nil;
