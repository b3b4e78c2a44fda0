//! A global counter incremented per call: every call must see 1 (fresh instance).
const nimbus = @import("nimbus");

var counter: i64 = 0;

pub fn handle(_: *const nimbus.Event, res: *nimbus.Response) !void {
    counter += 1;
    res.output = .{ .int = counter };
}
