//! The Nimbus SDK for Zig functions.
//!
//! A function is a `main.zig` with
//!
//!     const nimbus = @import("nimbus");
//!     pub fn handle(ev: *const nimbus.Event, res: *nimbus.Response) !void { ... }
//!
//! The SDK's entry (entry.zig, the build's root module) exports the ABI symbols,
//! decodes the event, calls `handle`, and encodes the response; this module gives
//! the handler typed access to the event, a response builder, logging, time,
//! randomness and every managed service. See guest_sdk/ABI.md for the contract.

const std = @import("std");
pub const msgpack = @import("msgpack.zig");
pub const heap = @import("heap.zig");
pub const imports = @import("imports.zig");

pub const Value = msgpack.Value;
pub const Pair = msgpack.Pair;
pub const kv = msgpack.kv;
pub const allocator = heap.allocator;

// --- the event ----------------------------------------------------------------------

/// One event, of any kind (`http`, `queue`, `schedule`, `storage`, `event`,
/// `workflow`, `invoke`): typed accessors over the decoded envelope.
pub const Event = struct {
    root: Value,

    /// The envelope's field `name` (any kind), or null.
    pub fn field(self: *const Event, name: []const u8) ?Value {
        return self.root.get(name);
    }

    /// A string field, or "" when absent.
    pub fn string(self: *const Event, name: []const u8) []const u8 {
        const v = self.root.get(name) orelse return "";
        return v.bytes() orelse "";
    }

    pub fn int(self: *const Event, name: []const u8) ?i64 {
        const v = self.root.get(name) orelse return null;
        return v.integer();
    }

    pub fn kind(self: *const Event) []const u8 {
        return self.string("kind");
    }

    pub fn is(self: *const Event, k: []const u8) bool {
        return msgpack.eql(self.kind(), k);
    }

    /// The event's stable id: the same on every redelivery.
    pub fn id(self: *const Event) []const u8 {
        return self.string("id");
    }

    pub fn requestId(self: *const Event) []const u8 {
        return self.string("request_id");
    }

    pub fn function(self: *const Event) []const u8 {
        return self.string("function");
    }

    pub fn deadlineMs(self: *const Event) i64 {
        return self.int("deadline_ms") orelse 0;
    }

    /// An environment variable from the manifest.
    pub fn env(self: *const Event, name: []const u8) ?[]const u8 {
        return self.lookup("env", name);
    }

    // http
    pub fn method(self: *const Event) []const u8 {
        return self.string("method");
    }

    pub fn path(self: *const Event) []const u8 {
        return self.string("path");
    }

    pub fn param(self: *const Event, name: []const u8) ?[]const u8 {
        return self.lookup("params", name);
    }

    pub fn query(self: *const Event, name: []const u8) ?[]const u8 {
        return self.lookup("query", name);
    }

    /// A request header; `name` must be lower case.
    pub fn header(self: *const Event, name: []const u8) ?[]const u8 {
        return self.lookup("headers", name);
    }

    pub fn body(self: *const Event) []const u8 {
        return self.string("body");
    }

    /// The caller on a route with an authentication policy (null when it has none):
    /// "api_key", "jwt" or "authorizer".
    pub fn authKind(self: *const Event) ?[]const u8 {
        return self.lookup("auth", "kind");
    }

    /// The caller's subject: the API key's name, the JWT's `sub`, the authorizer's subject.
    pub fn authSubject(self: *const Event) ?[]const u8 {
        return self.lookup("auth", "subject");
    }

    /// The id of the API key the caller presented.
    pub fn authKeyId(self: *const Event) ?[]const u8 {
        return self.lookup("auth", "key_id");
    }

    /// A claim of the caller's JWT, or an entry of the authorizer's context.
    pub fn authClaim(self: *const Event, name: []const u8) ?Value {
        const auth = self.root.get("auth") orelse return null;
        const claims = auth.get("claims") orelse return null;
        return claims.get(name);
    }

    /// An `authorizer` event's credential (the value of the policy's identity header).
    pub fn identity(self: *const Event) []const u8 {
        return self.string("identity");
    }

    /// `input` of an `invoke` or `workflow` event (nil when absent).
    pub fn input(self: *const Event) Value {
        return self.root.get("input") orelse .nil;
    }

    /// The batch of a `queue` event.
    pub fn messages(self: *const Event) []const Value {
        const v = self.root.get("messages") orelse return &.{};
        return switch (v) {
            .array => |items| items,
            else => &.{},
        };
    }

    /// `payload` of a bus `event`.
    pub fn payload(self: *const Event) Value {
        return self.root.get("payload") orelse .nil;
    }

    fn lookup(self: *const Event, map: []const u8, name: []const u8) ?[]const u8 {
        const m = self.root.get(map) orelse return null;
        const v = m.get(name) orelse return null;
        return v.bytes();
    }
};

// --- the response -------------------------------------------------------------------

pub const Header = struct { name: []const u8, value: []const u8 };
pub const max_headers = 32;

/// What the handler fills in. For HTTP, `status`, headers and `body`; for other
/// kinds, `output` (any value) is what a workflow step or a direct invoke returns.
pub const Response = struct {
    status: u16 = 200,
    headers: [max_headers]Header = undefined,
    header_count: usize = 0,
    body: ?[]const u8 = null,
    output: ?Value = null,
    error_kind: ?[]const u8 = null,
    error_message: []const u8 = "",

    pub fn setHeader(self: *Response, name: []const u8, value: []const u8) void {
        if (self.header_count == max_headers) return;
        self.headers[self.header_count] = .{ .name = name, .value = value };
        self.header_count += 1;
    }

    /// A text/plain body with `status`.
    pub fn text(self: *Response, status: u16, content: []const u8) void {
        self.status = status;
        self.setHeader("content-type", "text/plain; charset=utf-8");
        self.body = content;
    }

    /// Raw body bytes with `status` and a content type.
    pub fn bytes(self: *Response, status: u16, content_type: []const u8, content: []const u8) void {
        self.status = status;
        self.setHeader("content-type", content_type);
        self.body = content;
    }

    /// An authorizer's answer: allow or deny, the caller's subject, and a context
    /// (a map value, or null) passed to the function as `auth.claims`.
    pub fn authorize(self: *Response, allow: bool, subject: []const u8, context: ?Value) void {
        const out = heap.allocator.alloc(Pair, 3) catch return;
        out[0] = kv("allow", .{ .boolean = allow });
        out[1] = kv("subject", .{ .str = subject });
        out[2] = kv("context", context orelse Value{ .map = &.{} });
        self.output = .{ .map = out };
    }

    /// Fails the invocation: its effects are discarded and the caller sees `kind`.
    pub fn fail(self: *Response, kind: []const u8, message: []const u8) void {
        self.error_kind = kind;
        self.error_message = message;
    }

    /// The response as msgpack (used by the entry glue).
    pub fn encode(self: *const Response) []const u8 {
        var e = msgpack.Encoder{};
        var n: usize = 2;
        if (self.body != null) n += 1;
        if (self.output != null) n += 1;
        if (self.error_kind != null) n += 1;
        e.mapHeader(n);
        e.str("status");
        e.uint(self.status);
        e.str("headers");
        e.mapHeader(self.header_count);
        for (self.headers[0..self.header_count]) |h| {
            e.str(h.name);
            e.str(h.value);
        }
        if (self.body) |b| {
            e.str("body");
            e.bin(b);
        }
        if (self.output) |o| {
            e.str("output");
            e.value(o);
        }
        if (self.error_kind) |k| {
            e.str("error");
            e.mapHeader(2);
            e.str("kind");
            e.str(k);
            e.str("message");
            e.str(self.error_message);
        }
        return e.written();
    }
};

// --- core imports -------------------------------------------------------------------

pub const Level = enum(i32) { debug = 0, info = 1, warn = 2, err = 3 };

/// Log lines, captured by the host with the invocation's request id.
pub const log = struct {
    pub fn write(level: Level, message: []const u8) void {
        imports.log(@intFromEnum(level), message.ptr, message.len);
    }
    pub fn debug(message: []const u8) void {
        write(.debug, message);
    }
    pub fn info(message: []const u8) void {
        write(.info, message);
    }
    pub fn warn(message: []const u8) void {
        write(.warn, message);
    }
    pub fn err(message: []const u8) void {
        write(.err, message);
    }
    /// A formatted line (std.fmt syntax); costs code size, so the plain ones are
    /// preferred in small functions.
    pub fn print(level: Level, comptime fmt: []const u8, args: anytype) void {
        const line = std.fmt.allocPrint(heap.allocator, fmt, args) catch
            heap.outOfMemory("log line");
        write(level, line);
    }
};

/// Wall-clock time in nanoseconds since the Unix epoch.
pub fn now() i64 {
    return imports.now();
}

pub fn nowMs() i64 {
    return @divTrunc(imports.now(), 1_000_000);
}

/// Fills `buf` from the host's CSPRNG.
pub fn randomBytes(buf: []u8) void {
    var rest = buf;
    while (rest.len > 0) {
        const n = @min(rest.len, 65536);
        imports.random_bytes(rest.ptr, n);
        rest = rest[n..];
    }
}

/// Allocates `n` bytes from the invocation's heap (ends the invocation when out of memory).
pub fn alloc(n: usize) []u8 {
    return heap.allocSlice(u8, n) orelse heap.outOfMemory("allocation");
}

// --- managed services ---------------------------------------------------------------

pub const ServiceError = error{ PermissionDenied, Invalid, Conflict, TooLarge, Unavailable, Timeout, LimitExceeded };

/// The message of the last error status a host import answered (what was wrong and
/// what to do, e.g. the host an outbound request may not reach); "" before any.
pub var last_error: []const u8 = "";

/// Calls one service import with a request map and returns the `ok` value.
pub fn call(comptime op: fn ([*]const u8, usize) callconv(.c) u64, request: []const Pair) ServiceError!Value {
    const req = msgpack.encode(.{ .map = request });
    const packed_reply = op(req.ptr, req.len);
    const ptr: usize = @intCast(packed_reply >> 32);
    const len: usize = @intCast(packed_reply & 0xffffffff);
    const raw: [*]const u8 = @ptrFromInt(ptr);
    const reply = msgpack.decode(raw[0..len]) catch return error.Unavailable;
    const parts = switch (reply) {
        .array => |items| items,
        else => return error.Unavailable,
    };
    if (parts.len != 2) return error.Unavailable;
    const status = parts[0].integer() orelse 5;
    if (status != 0) last_error = parts[1].bytes() orelse "";
    return switch (status) {
        0 => parts[1],
        1 => error.PermissionDenied,
        2 => error.Invalid,
        3 => error.Conflict,
        4 => error.TooLarge,
        6 => error.Timeout,
        7 => error.LimitExceeded,
        else => error.Unavailable,
    };
}

fn orNil(v: ?Value) Value {
    return v orelse .nil;
}

/// Tables: msgpack values under byte keys, ordered bytewise, with versions for
/// compare-and-set. Writes are staged until the invocation succeeds.
pub const tables = struct {
    pub const Entry = struct { value: Value, version: i64 };
    pub const PutOptions = struct { if_absent: bool = false, if_version: ?i64 = null };
    pub const ScanOptions = struct {
        prefix: ?[]const u8 = null,
        start: ?[]const u8 = null,
        end: ?[]const u8 = null,
        limit: u32 = 100,
        cursor: ?[]const u8 = null,
    };
    pub const Page = struct { items: []const Value, cursor: ?[]const u8 };
    /// A query on an index (declared in nimbus.toml): `eq`, or `start` (inclusive)
    /// and `end` (exclusive), each of the index's type (`.int`, `.str` or `.bin`).
    pub const QueryOptions = struct {
        eq: ?Value = null,
        start: ?Value = null,
        end: ?Value = null,
        limit: u32 = 100,
        cursor: ?[]const u8 = null,
        reverse: bool = false,
    };

    pub fn get(table: []const u8, key: []const u8) ServiceError!?Entry {
        const v = try call(imports.kv_get, &.{ kv("table", .{ .str = table }), kv("key", .{ .bin = key }) });
        if (v.isNil()) return null;
        return .{ .value = orNil(v.get("value")), .version = orNil(v.get("version")).integer() orelse 0 };
    }

    /// Stores `value`; returns its new version. `Conflict` when a condition fails.
    pub fn put(table: []const u8, key: []const u8, value: Value, opts: PutOptions) ServiceError!i64 {
        var req = [_]Pair{
            kv("table", .{ .str = table }),
            kv("key", .{ .bin = key }),
            kv("value", value),
            kv("if_absent", .{ .boolean = opts.if_absent }),
            kv("if_version", if (opts.if_version) |ver| .{ .int = ver } else .nil),
        };
        const n: usize = if (opts.if_version != null) 5 else if (opts.if_absent) 4 else 3;
        const v = try call(imports.kv_put, req[0..n]);
        return orNil(v.get("version")).integer() orelse 0;
    }

    pub fn delete(table: []const u8, key: []const u8, if_version: ?i64) ServiceError!bool {
        var req = [_]Pair{
            kv("table", .{ .str = table }),
            kv("key", .{ .bin = key }),
            kv("if_version", if (if_version) |ver| .{ .int = ver } else .nil),
        };
        const v = try call(imports.kv_delete, req[0..if (if_version != null) 3 else 2]);
        return switch (orNil(v.get("deleted"))) {
            .boolean => |b| b,
            else => false,
        };
    }

    /// One page of `[key, value, version]` items in key order.
    pub fn scan(table: []const u8, opts: ScanOptions) ServiceError!Page {
        var req: [6]Pair = undefined;
        var n: usize = 0;
        req[n] = kv("table", .{ .str = table });
        n += 1;
        req[n] = kv("limit", .{ .uint = opts.limit });
        n += 1;
        inline for (.{ "prefix", "start", "end", "cursor" }) |name| {
            if (@field(opts, name)) |b| {
                req[n] = kv(name, .{ .bin = b });
                n += 1;
            }
        }
        const v = try call(imports.kv_scan, req[0..n]);
        const items = switch (orNil(v.get("items"))) {
            .array => |a| a,
            else => &.{},
        };
        return .{ .items = items, .cursor = orNil(v.get("cursor")).bytes() };
    }

    /// One page of `[key, value, version]` items ordered by the `index` field, then
    /// by key (reversed with `.reverse = true`); pass the page's cursor for the next.
    pub fn query(table: []const u8, index: []const u8, opts: QueryOptions) ServiceError!Page {
        var req: [8]Pair = undefined;
        var n: usize = 0;
        req[n] = kv("table", .{ .str = table });
        n += 1;
        req[n] = kv("index", .{ .str = index });
        n += 1;
        req[n] = kv("limit", .{ .uint = opts.limit });
        n += 1;
        req[n] = kv("reverse", .{ .boolean = opts.reverse });
        n += 1;
        inline for (.{ "eq", "start", "end" }) |name| {
            if (@field(opts, name)) |b| {
                req[n] = kv(name, b);
                n += 1;
            }
        }
        if (opts.cursor) |c| {
            req[n] = kv("cursor", .{ .bin = c });
            n += 1;
        }
        const v = try call(imports.kv_query, req[0..n]);
        const items = switch (orNil(v.get("items"))) {
            .array => |a| a,
            else => &.{},
        };
        return .{ .items = items, .cursor = orNil(v.get("cursor")).bytes() };
    }
};

/// Blob buckets: objects with a content type and metadata.
pub const blobs = struct {
    pub fn put(bucket: []const u8, key: []const u8, data: []const u8, content_type: []const u8) ServiceError!Value {
        return call(imports.blob_put, &.{
            kv("bucket", .{ .str = bucket }),
            kv("key", .{ .bin = key }),
            kv("data", .{ .bin = data }),
            kv("content_type", .{ .str = content_type }),
        });
    }

    /// The object (`{data, size, content_type, metadata, etag, modified_ms}`) or null.
    pub fn get(bucket: []const u8, key: []const u8) ServiceError!?Value {
        const v = try call(imports.blob_get, &.{ kv("bucket", .{ .str = bucket }), kv("key", .{ .bin = key }) });
        return if (v.isNil()) null else v;
    }

    /// Bytes `start..end` (end exclusive) of the object, or null.
    pub fn getRange(bucket: []const u8, key: []const u8, start: u64, end: u64) ServiceError!?Value {
        const v = try call(imports.blob_get, &.{
            kv("bucket", .{ .str = bucket }),
            kv("key", .{ .bin = key }),
            kv("start", .{ .uint = start }),
            kv("end", .{ .uint = end }),
        });
        return if (v.isNil()) null else v;
    }

    pub fn head(bucket: []const u8, key: []const u8) ServiceError!?Value {
        const v = try call(imports.blob_head, &.{ kv("bucket", .{ .str = bucket }), kv("key", .{ .bin = key }) });
        return if (v.isNil()) null else v;
    }

    pub fn delete(bucket: []const u8, key: []const u8) ServiceError!bool {
        const v = try call(imports.blob_delete, &.{ kv("bucket", .{ .str = bucket }), kv("key", .{ .bin = key }) });
        return switch (orNil(v.get("deleted"))) {
            .boolean => |b| b,
            else => false,
        };
    }

    /// `{items: [{key, size, etag, modified_ms}], cursor}`.
    pub fn list(bucket: []const u8, prefix: []const u8, limit: u32, cursor: ?[]const u8) ServiceError!Value {
        return call(imports.blob_list, &.{
            kv("bucket", .{ .str = bucket }),
            kv("prefix", .{ .bin = prefix }),
            kv("limit", .{ .uint = limit }),
            kv("cursor", if (cursor) |c| .{ .bin = c } else .nil),
        });
    }
};

/// Queues: send a message (delivered to the queue's consumer after the invocation
/// commits, and after `delay_ms`).
pub const queues = struct {
    pub fn send(queue: []const u8, body: Value, delay_ms: u64) ServiceError![]const u8 {
        const v = try call(imports.queue_send, &.{
            kv("queue", .{ .str = queue }),
            kv("body", body),
            kv("delay_ms", .{ .uint = delay_ms }),
        });
        return orNil(v.get("id")).bytes() orelse "";
    }
};

/// The event bus: publish to a topic (fanned out to subscribers after commit).
pub const events = struct {
    pub fn publish(topic: []const u8, payload: Value) ServiceError![]const u8 {
        const v = try call(imports.event_publish, &.{ kv("topic", .{ .str = topic }), kv("payload", payload) });
        return orNil(v.get("id")).bytes() orelse "";
    }
};

/// Outbound HTTP to the hosts the manifest allows (`allowed_outbound_hosts`). Each
/// request carries an `Idempotency-Key` that is the same when the same event is
/// delivered again (see ABI.md); errors: `PermissionDenied` (host not allowed, or an
/// internal address), `TooLarge` (body over the cap), `Timeout` (`timeout_ms` passed),
/// `LimitExceeded` (32 requests per invocation), `Unavailable` (network);
/// `last_error` says more.
pub const http = struct {
    pub const Request = struct {
        method: []const u8 = "GET",
        url: []const u8,
        headers: []const Header = &.{},
        body: ?[]const u8 = null,
        timeout_ms: ?u64 = null,
        follow_redirects: bool = false,
    };

    pub const Reply = struct {
        status: u16,
        /// a map of lower-case names to values (repeated headers joined with ", ")
        headers: Value,
        body: []const u8,

        /// A response header; `name` must be lower case.
        pub fn header(self: *const Reply, name: []const u8) ?[]const u8 {
            const v = self.headers.get(name) orelse return null;
            return v.bytes();
        }
    };

    pub fn fetch(req: Request) ServiceError!Reply {
        const hs = heap.allocSlice(Pair, req.headers.len) orelse heap.outOfMemory("headers");
        for (req.headers, 0..) |h, i| hs[i] = kv(h.name, .{ .str = h.value });
        var fields = [_]Pair{
            kv("method", .{ .str = req.method }),
            kv("url", .{ .str = req.url }),
            kv("headers", .{ .map = hs }),
            kv("follow_redirects", .{ .boolean = req.follow_redirects }),
            kv("body", if (req.body) |b| .{ .bin = b } else .nil),
            kv("timeout_ms", if (req.timeout_ms) |t| .{ .uint = t } else .nil),
        };
        const v = try call(imports.http_fetch, &fields);
        return .{
            .status = @intCast(orNil(v.get("status")).integer() orelse 0),
            .headers = orNil(v.get("headers")),
            .body = orNil(v.get("body")).bytes() orelse "",
        };
    }
};

/// Secrets the manifest grants (`secrets = ["NAME"]`), set with `nimbus secrets set`;
/// null when granted but not set, `PermissionDenied` when not granted.
pub const secrets = struct {
    pub fn get(name: []const u8) ServiceError!?[]const u8 {
        const v = try call(imports.secret_get, &.{kv("name", .{ .str = name })});
        return v.bytes();
    }
};
