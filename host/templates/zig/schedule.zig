//! {{name}}: runs on the schedule "{{resource}}" (its cron is in nimbus.toml).
//! Try it: nimbus invoke {{name}} --trigger schedule
const std = @import("std");
const nimbus = @import("nimbus");
const kv = nimbus.kv;

pub fn handle(ev: *const nimbus.Event, res: *nimbus.Response) !void {
    const scheduled = ev.int("scheduled_ms") orelse 0;
    nimbus.log.print(.info, "{s} event: {s} fired for {d}", .{
        ev.kind(), ev.string("schedule"), scheduled,
    });
    const out = try nimbus.allocator.dupe(nimbus.Pair, &.{
        kv("kind", .{ .str = ev.kind() }),
        kv("schedule", .{ .str = ev.string("schedule") }),
        kv("scheduled_ms", .{ .int = scheduled }),
    });
    res.output = .{ .map = out };
}
