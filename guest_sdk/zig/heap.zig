//! The guest heap: a bump allocator over `memory.grow`.
//!
//! Every invocation runs in a fresh instance that is thrown away afterwards, so
//! nothing is ever freed: allocation is a pointer bump, and growing memory past the
//! function's cap fails cleanly (the host's store limiter refuses the grow). The heap
//! starts at the linker's ``__heap_base``: the free tail of the initial memory is used
//! before any ``memory.grow`` (a grow costs a fresh instance a system call).

const std = @import("std");

const page_size = 65536;
extern const __heap_base: u8;
var top: usize = 0;
var end: usize = 0;

const imports = @import("imports.zig");

/// `n` bytes aligned to `alignment`, or null when memory cannot grow any further.
pub fn alloc(n: usize, alignment: usize) ?[*]u8 {
    if (end == 0) {
        // the free tail of the initial memory first: no memory.grow for small calls
        end = @wasmMemorySize(0) * page_size;
        top = @intFromPtr(&__heap_base);
    }
    const start = (top + alignment - 1) & ~(alignment - 1);
    if (n > std.math.maxInt(usize) - start) return null;
    const stop = start + n;
    if (stop > end) {
        const pages = (stop - end + page_size - 1) / page_size;
        if (@wasmMemoryGrow(0, pages) < 0) return null;
        end += pages * page_size;
    }
    top = stop;
    return @ptrFromInt(start);
}

pub fn allocSlice(comptime T: type, n: usize) ?[]T {
    if (n == 0) return &.{};
    if (n > std.math.maxInt(usize) / @sizeOf(T)) return null;
    const p = alloc(n * @sizeOf(T), @alignOf(T)) orelse return null;
    const typed: [*]T = @ptrCast(@alignCast(p));
    return typed[0..n];
}

/// Ends the invocation as out of memory (the host reports `FunctionOutOfMemory`).
pub fn outOfMemory(what: []const u8) noreturn {
    imports.abort(1, what.ptr, what.len);
}

fn vtAlloc(_: *anyopaque, len: usize, a: std.mem.Alignment, _: usize) ?[*]u8 {
    return alloc(len, a.toByteUnits());
}

fn vtResize(_: *anyopaque, mem: []u8, _: std.mem.Alignment, new_len: usize, _: usize) bool {
    // Shrinking is always fine; growing works in place for the latest allocation.
    if (new_len <= mem.len) return true;
    if (@intFromPtr(mem.ptr) + mem.len != top) return false;
    const extra = new_len - mem.len;
    const p = alloc(extra, 1) orelse return false;
    _ = p;
    return true;
}

fn vtRemap(ctx: *anyopaque, mem: []u8, a: std.mem.Alignment, new_len: usize, ra: usize) ?[*]u8 {
    return if (vtResize(ctx, mem, a, new_len, ra)) mem.ptr else null;
}

fn vtFree(_: *anyopaque, _: []u8, _: std.mem.Alignment, _: usize) void {}

var dummy: u8 = 0;

/// A `std.mem.Allocator` over the same heap, for code that wants one.
pub const allocator: std.mem.Allocator = .{
    .ptr = @ptrCast(&dummy),
    .vtable = &.{ .alloc = vtAlloc, .resize = vtResize, .remap = vtRemap, .free = vtFree },
};
