//! Answers with the whole event it got, as JSON (the response's `output` becomes the
//! HTTP body): tests see exactly what the gateway passed in, `auth` and transforms
//! included. Uses the SDK's typed `auth` accessors for the `x-subject` header.
const nimbus = @import("nimbus");

pub fn handle(ev: *const nimbus.Event, res: *nimbus.Response) !void {
    if (ev.authSubject()) |subject| res.setHeader("x-subject", subject);
    if (ev.authKind()) |kind| res.setHeader("x-auth-kind", kind);
    res.output = ev.root;
}
