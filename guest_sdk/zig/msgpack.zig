//! msgpack for Nimbus guests: a dynamic `Value`, a decoder into it and an encoder.
//!
//! Everything that crosses the guest/host boundary is msgpack (see ABI.md). Decoded
//! strings and binaries are slices into the input buffer (no copies); arrays and maps
//! are allocated from the SDK's bump heap, which lives as long as the invocation.

const std = @import("std");
const heap = @import("heap.zig");

pub const Pair = struct { key: Value, value: Value };

/// Any msgpack value.
pub const Value = union(enum) {
    nil,
    boolean: bool,
    int: i64,
    uint: u64,
    float: f64,
    str: []const u8,
    bin: []const u8,
    array: []const Value,
    map: []const Pair,

    /// The value under a string key of a map; null for absent keys or non-maps.
    pub fn get(self: Value, key: []const u8) ?Value {
        switch (self) {
            .map => |pairs| for (pairs) |p| {
                switch (p.key) {
                    .str, .bin => |k| if (eql(k, key)) return p.value,
                    else => {},
                }
            },
            else => {},
        }
        return null;
    }

    /// The bytes of a `str` or `bin`.
    pub fn bytes(self: Value) ?[]const u8 {
        return switch (self) {
            .str, .bin => |b| b,
            else => null,
        };
    }

    /// An integer, whichever msgpack integer family it came in.
    pub fn integer(self: Value) ?i64 {
        return switch (self) {
            .int => |n| n,
            .uint => |u| if (u <= @as(u64, @intCast(maxInt64))) @intCast(u) else null,
            else => null,
        };
    }

    pub fn isNil(self: Value) bool {
        return self == .nil;
    }

    /// A string value (shorthand for building requests and outputs).
    pub fn s(text: []const u8) Value {
        return .{ .str = text };
    }

    pub fn i(n: i64) Value {
        return .{ .int = n };
    }
};

const maxInt64: i64 = 0x7fffffffffffffff;

pub fn eql(a: []const u8, b: []const u8) bool {
    if (a.len != b.len) return false;
    for (a, b) |x, y| if (x != y) return false;
    return true;
}

/// A map pair built from a string key: `kv("table", Value.s("orders"))`.
pub fn kv(key: []const u8, value: Value) Pair {
    return .{ .key = .{ .str = key }, .value = value };
}

pub const DecodeError = error{ Truncated, Unsupported, OutOfMemory };

/// Decodes one msgpack value from `buf`.
pub fn decode(buf: []const u8) DecodeError!Value {
    var d = Decoder{ .buf = buf };
    return d.value();
}

pub const Decoder = struct {
    buf: []const u8,
    pos: usize = 0,

    fn take(self: *Decoder, n: usize) DecodeError![]const u8 {
        if (self.buf.len - self.pos < n) return error.Truncated;
        const out = self.buf[self.pos .. self.pos + n];
        self.pos += n;
        return out;
    }

    fn be(self: *Decoder, comptime T: type) DecodeError!T {
        const b = try self.take(@sizeOf(T));
        return std.mem.readInt(T, b[0..@sizeOf(T)], .big);
    }

    pub fn value(self: *Decoder) DecodeError!Value {
        const tag = (try self.take(1))[0];
        switch (tag) {
            0x00...0x7f => return .{ .uint = tag },
            0xe0...0xff => return .{ .int = @as(i8, @bitCast(tag)) },
            0x80...0x8f => return self.mapOf(tag & 0x0f),
            0x90...0x9f => return self.arrayOf(tag & 0x0f),
            0xa0...0xbf => return .{ .str = try self.take(tag & 0x1f) },
            0xc0 => return .nil,
            0xc2 => return .{ .boolean = false },
            0xc3 => return .{ .boolean = true },
            0xc4 => return .{ .bin = try self.take(try self.be(u8)) },
            0xc5 => return .{ .bin = try self.take(try self.be(u16)) },
            0xc6 => return .{ .bin = try self.take(try self.be(u32)) },
            0xca => return .{ .float = @as(f32, @bitCast(try self.be(u32))) },
            0xcb => return .{ .float = @bitCast(try self.be(u64)) },
            0xcc => return .{ .uint = try self.be(u8) },
            0xcd => return .{ .uint = try self.be(u16) },
            0xce => return .{ .uint = try self.be(u32) },
            0xcf => return .{ .uint = try self.be(u64) },
            0xd0 => return .{ .int = @as(i8, @bitCast(try self.be(u8))) },
            0xd1 => return .{ .int = @as(i16, @bitCast(try self.be(u16))) },
            0xd2 => return .{ .int = @as(i32, @bitCast(try self.be(u32))) },
            0xd3 => return .{ .int = @bitCast(try self.be(u64)) },
            0xd9 => return .{ .str = try self.take(try self.be(u8)) },
            0xda => return .{ .str = try self.take(try self.be(u16)) },
            0xdb => return .{ .str = try self.take(try self.be(u32)) },
            0xdc => return self.arrayOf(try self.be(u16)),
            0xdd => return self.arrayOf(try self.be(u32)),
            0xde => return self.mapOf(try self.be(u16)),
            0xdf => return self.mapOf(try self.be(u32)),
            else => return error.Unsupported, // ext types: Nimbus never sends them
        }
    }

    fn arrayOf(self: *Decoder, n: usize) DecodeError!Value {
        if (n > self.buf.len - self.pos) return error.Truncated; // each item is >= 1 byte
        const items = heap.allocSlice(Value, n) orelse return error.OutOfMemory;
        for (items) |*it| it.* = try self.value();
        return .{ .array = items };
    }

    fn mapOf(self: *Decoder, n: usize) DecodeError!Value {
        if (n > (self.buf.len - self.pos) / 2) return error.Truncated;
        const pairs = heap.allocSlice(Pair, n) orelse return error.OutOfMemory;
        for (pairs) |*p| p.* = .{ .key = try self.value(), .value = try self.value() };
        return .{ .map = pairs };
    }
};

/// A growable msgpack writer over the bump heap.
pub const Encoder = struct {
    buf: []u8 = &.{},
    len: usize = 0,

    pub fn written(self: *const Encoder) []const u8 {
        return self.buf[0..self.len];
    }

    fn reserve(self: *Encoder, n: usize) []u8 {
        if (self.buf.len - self.len < n) {
            var cap = if (self.buf.len == 0) 256 else self.buf.len * 2;
            while (cap - self.len < n) cap *= 2;
            const grown = heap.allocSlice(u8, cap) orelse heap.outOfMemory("msgpack encoder");
            @memcpy(grown[0..self.len], self.buf[0..self.len]);
            self.buf = grown;
        }
        const out = self.buf[self.len .. self.len + n];
        self.len += n;
        return out;
    }

    fn byte(self: *Encoder, b: u8) void {
        self.reserve(1)[0] = b;
    }

    fn beInt(self: *Encoder, comptime T: type, v: T) void {
        std.mem.writeInt(T, self.reserve(@sizeOf(T))[0..@sizeOf(T)], v, .big);
    }

    pub fn nil(self: *Encoder) void {
        self.byte(0xc0);
    }

    pub fn boolean(self: *Encoder, b: bool) void {
        self.byte(if (b) 0xc3 else 0xc2);
    }

    pub fn uint(self: *Encoder, v: u64) void {
        if (v < 0x80) {
            self.byte(@intCast(v));
        } else if (v <= 0xff) {
            self.byte(0xcc);
            self.beInt(u8, @intCast(v));
        } else if (v <= 0xffff) {
            self.byte(0xcd);
            self.beInt(u16, @intCast(v));
        } else if (v <= 0xffffffff) {
            self.byte(0xce);
            self.beInt(u32, @intCast(v));
        } else {
            self.byte(0xcf);
            self.beInt(u64, v);
        }
    }

    pub fn int(self: *Encoder, v: i64) void {
        if (v >= 0) return self.uint(@intCast(v));
        if (v >= -32) {
            self.byte(@bitCast(@as(i8, @intCast(v))));
        } else if (v >= -0x80000000) {
            self.byte(0xd2);
            self.beInt(u32, @bitCast(@as(i32, @intCast(v))));
        } else {
            self.byte(0xd3);
            self.beInt(u64, @bitCast(v));
        }
    }

    pub fn float(self: *Encoder, v: f64) void {
        self.byte(0xcb);
        self.beInt(u64, @bitCast(v));
    }

    fn header(self: *Encoder, len: usize, fix: u8, fix_max: usize, t8: ?u8, t16: u8, t32: u8) void {
        if (len <= fix_max) {
            self.byte(fix | @as(u8, @intCast(len)));
        } else if (t8 != null and len <= 0xff) {
            self.byte(t8.?);
            self.beInt(u8, @intCast(len));
        } else if (len <= 0xffff) {
            self.byte(t16);
            self.beInt(u16, @intCast(len));
        } else {
            self.byte(t32);
            self.beInt(u32, @intCast(len));
        }
    }

    pub fn str(self: *Encoder, s: []const u8) void {
        self.header(s.len, 0xa0, 31, 0xd9, 0xda, 0xdb);
        @memcpy(self.reserve(s.len), s);
    }

    pub fn bin(self: *Encoder, b: []const u8) void {
        if (b.len <= 0xff) {
            self.byte(0xc4);
            self.beInt(u8, @intCast(b.len));
        } else if (b.len <= 0xffff) {
            self.byte(0xc5);
            self.beInt(u16, @intCast(b.len));
        } else {
            self.byte(0xc6);
            self.beInt(u32, @intCast(b.len));
        }
        @memcpy(self.reserve(b.len), b);
    }

    pub fn arrayHeader(self: *Encoder, n: usize) void {
        self.header(n, 0x90, 15, null, 0xdc, 0xdd);
    }

    pub fn mapHeader(self: *Encoder, n: usize) void {
        self.header(n, 0x80, 15, null, 0xde, 0xdf);
    }

    /// Appends bytes that already are one encoded msgpack value.
    pub fn raw(self: *Encoder, encoded: []const u8) void {
        @memcpy(self.reserve(encoded.len), encoded);
    }

    pub fn value(self: *Encoder, v: Value) void {
        switch (v) {
            .nil => self.nil(),
            .boolean => |b| self.boolean(b),
            .int => |n| self.int(n),
            .uint => |n| self.uint(n),
            .float => |f| self.float(f),
            .str => |s| self.str(s),
            .bin => |b| self.bin(b),
            .array => |items| {
                self.arrayHeader(items.len);
                for (items) |it| self.value(it);
            },
            .map => |pairs| {
                self.mapHeader(pairs.len);
                for (pairs) |p| {
                    self.value(p.key);
                    self.value(p.value);
                }
            },
        }
    }
};

/// Encodes `v` into a fresh buffer.
pub fn encode(v: Value) []const u8 {
    var e = Encoder{};
    e.value(v);
    return e.written();
}
