//! GET /hello/{name} or /hello?name=… → "hello, <name>\n"
const nimbus = @import("nimbus");

pub fn handle(ev: *const nimbus.Event, res: *nimbus.Response) !void {
    const name = ev.param("name") orelse ev.query("name") orelse "world";
    nimbus.log.info("saying hello");
    const prefix = "hello, ";
    const out = nimbus.alloc(prefix.len + name.len + 1);
    @memcpy(out[0..prefix.len], prefix);
    @memcpy(out[prefix.len..][0..name.len], name);
    out[out.len - 1] = '\n';
    res.text(200, out);
}
