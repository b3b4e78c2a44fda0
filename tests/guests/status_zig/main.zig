//! Answers with the status the `status` query parameter names (200 without one), a
//! text body and an `x-status` header: tests see how each status is framed. A status
//! that is not a number fails the handler (a `FunctionError`).
const std = @import("std");
const nimbus = @import("nimbus");

pub fn handle(ev: *const nimbus.Event, res: *nimbus.Response) !void {
    const asked = ev.query("status") orelse "200";
    const status = try std.fmt.parseInt(u16, asked, 10);
    res.setHeader("x-status", asked);
    res.text(status, "a body\n");
}
