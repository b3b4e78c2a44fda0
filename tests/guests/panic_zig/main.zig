//! Panics: the SDK's panic handler reports the message through `abort`.
const nimbus = @import("nimbus");

pub fn handle(_: *const nimbus.Event, _: *nimbus.Response) !void {
    @panic("boom");
}
