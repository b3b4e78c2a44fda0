//! {{name}}: runs when an object is put into or deleted from the bucket "{{resource}}".
//! Try it: nimbus blob put {{resource}} a.txt ./a.txt   (or: nimbus invoke {{name}} --trigger storage)
const std = @import("std");
const nimbus = @import("nimbus");
const kv = nimbus.kv;

pub fn handle(ev: *const nimbus.Event, res: *nimbus.Response) !void {
    nimbus.log.print(.info, "{s} event: {s} {s}/{s}", .{
        ev.kind(), ev.string("op"), ev.string("bucket"), ev.string("key"),
    });
    const out = try nimbus.allocator.dupe(nimbus.Pair, &.{
        kv("kind", .{ .str = ev.kind() }),
        kv("op", .{ .str = ev.string("op") }),
        kv("bucket", .{ .str = ev.string("bucket") }),
        kv("key", .{ .str = ev.string("key") }),
    });
    res.output = .{ .map = out };
}
