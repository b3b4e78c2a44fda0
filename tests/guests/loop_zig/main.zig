//! Never returns: the host's epoch deadline must stop it.
const nimbus = @import("nimbus");

pub fn handle(_: *const nimbus.Event, _: *nimbus.Response) !void {
    var spins: u64 = 0;
    const p: *volatile u64 = &spins;
    while (true) p.* +%= 1;
}
