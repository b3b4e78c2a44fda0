//! An authorizer function in Zig: allows "Bearer alice" (context team=zig), denies
//! every other credential.
const nimbus = @import("nimbus");

pub fn handle(ev: *const nimbus.Event, res: *nimbus.Response) !void {
    if (!ev.is("authorizer")) {
        res.text(400, "not an authorizer event");
        return;
    }
    if (nimbus.msgpack.eql(ev.identity(), "Bearer alice")) {
        const context = try nimbus.allocator.alloc(nimbus.Pair, 1);
        context[0] = nimbus.kv("team", .{ .str = "zig" });
        res.authorize(true, "alice", .{ .map = context });
    } else {
        res.authorize(false, "", null);
    }
}
