//! Unbounded recursion: ends in a stack overflow trap.
const std = @import("std");
const nimbus = @import("nimbus");

fn deeper(n: u64) u64 {
    var frame: [64]u8 = undefined;
    @memset(&frame, @truncate(n));
    std.mem.doNotOptimizeAway(&frame);
    return @call(.never_tail, deeper, .{n + 1}) + frame[3];
}

pub fn handle(_: *const nimbus.Event, res: *nimbus.Response) !void {
    res.output = .{ .uint = deeper(0) };
}
