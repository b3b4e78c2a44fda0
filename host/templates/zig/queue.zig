//! {{name}}: runs on each batch of messages sent to the queue "{{resource}}".
//! Try it: nimbus queue send {{resource}} '{"n": 1}'   (or: nimbus invoke {{name}} --trigger queue)
const std = @import("std");
const nimbus = @import("nimbus");
const kv = nimbus.kv;

pub fn handle(ev: *const nimbus.Event, res: *nimbus.Response) !void {
    const messages = ev.messages();
    nimbus.log.print(.info, "{s} event: {d} message(s) from queue {s}", .{
        ev.kind(), messages.len, ev.string("queue"),
    });
    // Returning without an error acks the whole batch; res.fail(...) retries it.
    const out = try nimbus.allocator.dupe(nimbus.Pair, &.{
        kv("kind", .{ .str = ev.kind() }),
        kv("queue", .{ .str = ev.string("queue") }),
        kv("messages", .{ .uint = messages.len }),
    });
    res.output = .{ .map = out };
}
