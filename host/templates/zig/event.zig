//! {{name}}: runs on bus events whose topic matches "{{resource}}".
//! Try it: nimbus publish {{topic}} '{"id": 1}'   (or: nimbus invoke {{name}} --trigger event)
const std = @import("std");
const nimbus = @import("nimbus");
const kv = nimbus.kv;

pub fn handle(ev: *const nimbus.Event, res: *nimbus.Response) !void {
    nimbus.log.print(.info, "{s} event: topic {s} from {s}", .{
        ev.kind(), ev.string("topic"), ev.string("source"),
    });
    const out = try nimbus.allocator.dupe(nimbus.Pair, &.{
        kv("kind", .{ .str = ev.kind() }),
        kv("topic", .{ .str = ev.string("topic") }),
        kv("payload", ev.payload()),
    });
    res.output = .{ .map = out };
}
