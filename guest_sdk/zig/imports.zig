//! The host's imports (module "nimbus"), declared once. See ABI.md for each one.

pub extern "nimbus" fn log(level: i32, ptr: [*]const u8, len: usize) void;
pub extern "nimbus" fn now() i64;
pub extern "nimbus" fn random_bytes(ptr: [*]u8, len: usize) void;
pub extern "nimbus" fn abort(kind: i32, ptr: [*]const u8, len: usize) noreturn;

pub extern "nimbus" fn kv_get(ptr: [*]const u8, len: usize) u64;
pub extern "nimbus" fn kv_put(ptr: [*]const u8, len: usize) u64;
pub extern "nimbus" fn kv_delete(ptr: [*]const u8, len: usize) u64;
pub extern "nimbus" fn kv_scan(ptr: [*]const u8, len: usize) u64;
pub extern "nimbus" fn kv_query(ptr: [*]const u8, len: usize) u64;
pub extern "nimbus" fn blob_put(ptr: [*]const u8, len: usize) u64;
pub extern "nimbus" fn blob_get(ptr: [*]const u8, len: usize) u64;
pub extern "nimbus" fn blob_head(ptr: [*]const u8, len: usize) u64;
pub extern "nimbus" fn blob_delete(ptr: [*]const u8, len: usize) u64;
pub extern "nimbus" fn blob_list(ptr: [*]const u8, len: usize) u64;
pub extern "nimbus" fn queue_send(ptr: [*]const u8, len: usize) u64;
pub extern "nimbus" fn event_publish(ptr: [*]const u8, len: usize) u64;
pub extern "nimbus" fn http_fetch(ptr: [*]const u8, len: usize) u64;
pub extern "nimbus" fn secret_get(ptr: [*]const u8, len: usize) u64;
