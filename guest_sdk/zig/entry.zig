//! The root module of every Zig function: the ABI exports around the user's `handle`.
//!
//! The builder compiles this file with the function's `main.zig` as module `app`
//! and the SDK as module `nimbus`, so a function author writes only `handle`.

const std = @import("std");
const app = @import("app");
const nimbus = @import("nimbus");


export fn nimbus_abi_version() i32 {
    return 1;
}

/// Guest memory for the host (the event, service replies); 0 when exhausted.
export fn nimbus_alloc(len: usize) usize {
    const p = nimbus.heap.alloc(len, 8) orelse return 0;
    return @intFromPtr(p);
}

export fn nimbus_handle(ptr: usize, len: usize) u64 {
    const raw: [*]const u8 = @ptrFromInt(ptr);
    const root = nimbus.msgpack.decode(raw[0..len]) catch |e| switch (e) {
        error.OutOfMemory => nimbus.heap.outOfMemory("decoding the event"),
        else => @panic("the event is not valid msgpack"),
    };
    const ev = nimbus.Event{ .root = root };
    var res = nimbus.Response{};
    app.handle(&ev, &res) catch |e| {
        res.fail(@errorName(e), "the handler returned an error");
    };
    const out = res.encode();
    return (@as(u64, @intFromPtr(out.ptr)) << 32) | out.len;
}

fn panicHandler(msg: []const u8, _: ?usize) noreturn {
    nimbus.imports.abort(0, msg.ptr, msg.len);
}

pub const panic = std.debug.FullPanic(panicHandler);
