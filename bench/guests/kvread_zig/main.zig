//! hello with one table read: GET /kv/{name} reads key `name` of table "bench".
const nimbus = @import("nimbus");

pub fn handle(ev: *const nimbus.Event, res: *nimbus.Response) !void {
    const name = ev.param("name") orelse "world";
    const found = try nimbus.tables.get("bench", name);
    res.text(200, if (found) |entry| entry.value.bytes() orelse "?\n" else "hello, bench\n");
}
