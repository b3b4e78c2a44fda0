//! Allocates and touches 1 MiB chunks until memory runs out.
const nimbus = @import("nimbus");

pub fn handle(_: *const nimbus.Event, _: *nimbus.Response) !void {
    while (true) {
        const chunk = nimbus.heap.allocSlice(u8, 1 << 20) orelse nimbus.heap.outOfMemory("membomb");
        @memset(chunk, 0xab);
    }
}
