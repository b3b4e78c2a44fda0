//! A trivial consumer with one committed effect per message: "done.<id>" = 1 in
//! table "sink" (queue events), or "done.<event id>" for any other kind.
const nimbus = @import("nimbus");

fn done(id: []const u8) !void {
    const key = nimbus.alloc(5 + id.len);
    @memcpy(key[0..5], "done.");
    @memcpy(key[5..], id);
    _ = try nimbus.tables.put("sink", key, .{ .int = 1 }, .{});
}

pub fn handle(ev: *const nimbus.Event, _: *nimbus.Response) !void {
    const msgs = ev.messages();
    if (msgs.len == 0) return done(ev.id());
    for (msgs) |m| {
        const id: nimbus.Value = m.get("id") orelse .nil;
        try done(id.bytes() orelse "");
    }
}
