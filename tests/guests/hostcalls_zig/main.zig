//! Uses every core import: log at each level, now, random_bytes.
const nimbus = @import("nimbus");

pub fn handle(_: *const nimbus.Event, res: *nimbus.Response) !void {
    nimbus.log.debug("a debug line");
    nimbus.log.info("an info line");
    nimbus.log.warn("a warning");
    nimbus.log.print(.err, "an error line: {d}", .{42});
    const random = nimbus.alloc(32);
    nimbus.randomBytes(random);
    const out = try nimbus.allocator.alloc(nimbus.Pair, 2);
    out[0] = nimbus.kv("now", .{ .int = nimbus.now() });
    out[1] = nimbus.kv("random", .{ .bin = random });
    res.output = .{ .map = out };
}
