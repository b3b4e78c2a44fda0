//! {{name}}: an HTTP function. GET /{{name}}/{name} answers JSON.
//! Build and try it: nimbus invoke {{name}} --http GET /{{name}}/ada
const std = @import("std");
const nimbus = @import("nimbus");
const kv = nimbus.kv;

pub fn handle(ev: *const nimbus.Event, res: *nimbus.Response) !void {
    const name = ev.param("name") orelse ev.query("name") orelse "world";
    nimbus.log.print(.info, "{s} event: {s} {s}", .{ ev.kind(), ev.method(), ev.path() });
    const message = try std.fmt.allocPrint(nimbus.allocator, "hello, {s}", .{name});
    const body = try nimbus.allocator.dupe(nimbus.Pair, &.{
        kv("message", .{ .str = message }),
        kv("kind", .{ .str = ev.kind() }),
        kv("function", .{ .str = ev.function() }),
    });
    // any value as the response's output becomes a JSON body
    res.output = .{ .map = body };
    res.setHeader("content-type", "application/json");
}
