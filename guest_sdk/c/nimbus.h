/* nimbus.h — the Nimbus SDK for C functions (single header, wasm32 freestanding).
 *
 * A function is one main.c:
 *
 *     #include "nimbus.h"
 *     void handle(const nimbus_event *ev, nimbus_response *res) {
 *         nimbus_res_text(res, 200, "hello\n");
 *     }
 *
 * Including this header once defines the ABI exports (nimbus_abi_version,
 * nimbus_alloc, nimbus_handle) around your `handle`; define NIMBUS_NO_GLUE first to
 * leave them out. Everything crossing the boundary is msgpack (see guest_sdk/ABI.md):
 * `nimbus_val` reads it without copying, `nimbus_buf` writes it. Memory comes from a
 * bump heap that lives as long as the invocation (a fresh instance per call), so
 * nothing is ever freed.
 */
#ifndef NIMBUS_H
#define NIMBUS_H

#include <stddef.h>
#include <stdint.h>

#define NIMBUS_IMPORT(name) __attribute__((import_module("nimbus"), import_name(#name)))
#define NIMBUS_EXPORT(name) __attribute__((export_name(#name)))

/* ---- host imports ------------------------------------------------------------------ */

NIMBUS_IMPORT(log) void nimbus__log(int32_t level, const void *ptr, uint32_t len);
NIMBUS_IMPORT(now) int64_t nimbus__now(void);
NIMBUS_IMPORT(random_bytes) void nimbus__random_bytes(void *ptr, uint32_t len);
NIMBUS_IMPORT(abort) _Noreturn void nimbus__abort(int32_t kind, const void *ptr, uint32_t len);
NIMBUS_IMPORT(kv_get) uint64_t nimbus__kv_get(const void *p, uint32_t n);
NIMBUS_IMPORT(kv_put) uint64_t nimbus__kv_put(const void *p, uint32_t n);
NIMBUS_IMPORT(kv_delete) uint64_t nimbus__kv_delete(const void *p, uint32_t n);
NIMBUS_IMPORT(kv_scan) uint64_t nimbus__kv_scan(const void *p, uint32_t n);
NIMBUS_IMPORT(kv_query) uint64_t nimbus__kv_query(const void *p, uint32_t n);
NIMBUS_IMPORT(blob_put) uint64_t nimbus__blob_put(const void *p, uint32_t n);
NIMBUS_IMPORT(blob_get) uint64_t nimbus__blob_get(const void *p, uint32_t n);
NIMBUS_IMPORT(blob_head) uint64_t nimbus__blob_head(const void *p, uint32_t n);
NIMBUS_IMPORT(blob_delete) uint64_t nimbus__blob_delete(const void *p, uint32_t n);
NIMBUS_IMPORT(blob_list) uint64_t nimbus__blob_list(const void *p, uint32_t n);
NIMBUS_IMPORT(queue_send) uint64_t nimbus__queue_send(const void *p, uint32_t n);
NIMBUS_IMPORT(event_publish) uint64_t nimbus__event_publish(const void *p, uint32_t n);
NIMBUS_IMPORT(http_fetch) uint64_t nimbus__http_fetch(const void *p, uint32_t n);
NIMBUS_IMPORT(secret_get) uint64_t nimbus__secret_get(const void *p, uint32_t n);

/* The compiler may emit calls to these; wasm bulk-memory instructions implement them. */
void *memcpy(void *d, const void *s, size_t n) { __builtin_memcpy(d, s, n); return d; }
void *memmove(void *d, const void *s, size_t n) { __builtin_memmove(d, s, n); return d; }
void *memset(void *d, int c, size_t n) { __builtin_memset(d, c, n); return d; }

static size_t nimbus_strlen(const char *s) { size_t n = 0; while (s[n]) n++; return n; }

/* ---- heap -------------------------------------------------------------------------- */

static uintptr_t nimbus__top, nimbus__end;

/* `n` bytes aligned to 8, or NULL when memory cannot grow (the function's cap). */
extern unsigned char __heap_base; /* defined by the linker: the end of data and stack */

static void *nimbus_try_alloc(uint32_t n) {
    if (nimbus__end == 0) { /* the free tail of the initial memory first, then grow */
        nimbus__end = __builtin_wasm_memory_size(0) * 65536u;
        nimbus__top = (uintptr_t)&__heap_base;
    }
    uintptr_t start = (nimbus__top + 7u) & ~(uintptr_t)7u;
    if (n > UINTPTR_MAX - start) return NULL;
    uintptr_t stop = start + n;
    if (stop > nimbus__end) {
        uintptr_t pages = (stop - nimbus__end + 65535u) / 65536u;
        if (__builtin_wasm_memory_grow(0, pages) == (size_t)-1) return NULL;
        nimbus__end += pages * 65536u;
    }
    nimbus__top = stop;
    return (void *)start;
}

/* Like nimbus_try_alloc, but ends the invocation as out of memory on failure. */
static void *nimbus_alloc_or_die(uint32_t n) {
    void *p = nimbus_try_alloc(n);
    if (!p && n) nimbus__abort(1, "out of memory", 13);
    return p;
}

/* ---- core ---------------------------------------------------------------------------- */

enum { NIMBUS_DEBUG = 0, NIMBUS_INFO = 1, NIMBUS_WARN = 2, NIMBUS_ERROR = 3 };

static void nimbus_log(int level, const char *message) {
    nimbus__log(level, message, nimbus_strlen(message));
}
static void nimbus_log_n(int level, const void *message, uint32_t len) { nimbus__log(level, message, len); }
/* Wall-clock nanoseconds since the Unix epoch. */
static int64_t nimbus_now(void) { return nimbus__now(); }
static void nimbus_random_bytes(void *buf, uint32_t len) {
    uint8_t *p = buf;
    while (len) {
        uint32_t n = len > 65536u ? 65536u : len;
        nimbus__random_bytes(p, n);
        p += n;
        len -= n;
    }
}
/* Ends the invocation as a crash carrying `message`. */
static _Noreturn void nimbus_panic(const char *message) {
    nimbus__abort(0, message, nimbus_strlen(message));
}

/* ---- msgpack: reading ---------------------------------------------------------------- */

typedef struct { const uint8_t *p; uint32_t n; } nimbus_bytes;

/* One encoded msgpack value (p == NULL: absent), bounded by `end`. */
typedef struct { const uint8_t *p; const uint8_t *end; } nimbus_val;

typedef enum {
    NIMBUS_ABSENT, NIMBUS_NIL, NIMBUS_BOOL, NIMBUS_INT, NIMBUS_FLOAT, NIMBUS_STR,
    NIMBUS_BIN, NIMBUS_ARRAY, NIMBUS_MAP, NIMBUS_MALFORMED
} nimbus_type;

static const nimbus_val nimbus_absent = {0, 0};

static uint64_t nimbus__be(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = (v << 8) | p[i];
    return v;
}

static int nimbus__room(nimbus_val v, uint64_t n) { return v.p && (uint64_t)(v.end - v.p) >= n; }

static nimbus_type nimbus_type_of(nimbus_val v) {
    if (!v.p) return NIMBUS_ABSENT;
    if (!nimbus__room(v, 1)) return NIMBUS_MALFORMED;
    uint8_t t = v.p[0];
    if (t <= 0x7f || t >= 0xe0 || (t >= 0xcc && t <= 0xd3)) return NIMBUS_INT;
    if (t <= 0x8f || t == 0xde || t == 0xdf) return NIMBUS_MAP;
    if (t <= 0x9f || t == 0xdc || t == 0xdd) return NIMBUS_ARRAY;
    if (t <= 0xbf || (t >= 0xd9 && t <= 0xdb)) return NIMBUS_STR;
    if (t == 0xc0) return NIMBUS_NIL;
    if (t == 0xc2 || t == 0xc3) return NIMBUS_BOOL;
    if (t >= 0xc4 && t <= 0xc6) return NIMBUS_BIN;
    if (t == 0xca || t == 0xcb) return NIMBUS_FLOAT;
    return NIMBUS_MALFORMED;
}

/* Header of a str/bin/array/map: its length (items or bytes) and header size. */
static int nimbus__head(nimbus_val v, uint32_t *len, uint32_t *hdr) {
    if (!nimbus__room(v, 1)) return 0;
    uint8_t t = v.p[0];
    int w = 0;
    if (t >= 0x80 && t <= 0x8f) { *len = t & 0x0f; *hdr = 1; return 1; }
    if (t >= 0x90 && t <= 0x9f) { *len = t & 0x0f; *hdr = 1; return 1; }
    if (t >= 0xa0 && t <= 0xbf) { *len = t & 0x1f; *hdr = 1; return 1; }
    switch (t) {
    case 0xc4: case 0xd9: w = 1; break;
    case 0xc5: case 0xda: case 0xdc: case 0xde: w = 2; break;
    case 0xc6: case 0xdb: case 0xdd: case 0xdf: w = 4; break;
    default: return 0;
    }
    if (!nimbus__room(v, 1 + w)) return 0;
    *len = (uint32_t)nimbus__be(v.p + 1, w);
    *hdr = 1 + w;
    return 1;
}

/* The value after `v`, or absent when `v` is malformed. */
static nimbus_val nimbus_skip(nimbus_val v) {
    if (!nimbus__room(v, 1)) return nimbus_absent;
    uint8_t t = v.p[0];
    uint32_t len, hdr, size = 0;
    nimbus_val next = v;
    switch (nimbus_type_of(v)) {
    case NIMBUS_NIL: case NIMBUS_BOOL: size = 1; break;
    case NIMBUS_INT:
        size = (t <= 0x7f || t >= 0xe0) ? 1 : (t == 0xcc || t == 0xd0) ? 2 : (t == 0xcd || t == 0xd1) ? 3
             : (t == 0xce || t == 0xd2) ? 5 : 9;
        break;
    case NIMBUS_FLOAT: size = t == 0xca ? 5 : 9; break;
    case NIMBUS_STR: case NIMBUS_BIN:
        if (!nimbus__head(v, &len, &hdr)) return nimbus_absent;
        size = hdr + len;
        break;
    case NIMBUS_ARRAY: case NIMBUS_MAP: {
        if (!nimbus__head(v, &len, &hdr)) return nimbus_absent;
        uint64_t items = (uint64_t)len * (nimbus_type_of(v) == NIMBUS_MAP ? 2 : 1);
        next.p += hdr;
        for (uint64_t i = 0; i < items; i++) {
            next = nimbus_skip(next);
            if (!next.p) return nimbus_absent;
        }
        return next;
    }
    default: return nimbus_absent;
    }
    if (!nimbus__room(v, size)) return nimbus_absent;
    next.p += size;
    return next;
}

/* The bytes of a str or bin (n == 0 and p == NULL otherwise). */
static nimbus_bytes nimbus_val_bytes(nimbus_val v) {
    nimbus_bytes b = {0, 0};
    uint32_t len, hdr;
    nimbus_type t = nimbus_type_of(v);
    if ((t == NIMBUS_STR || t == NIMBUS_BIN) && nimbus__head(v, &len, &hdr) && nimbus__room(v, (uint64_t)hdr + len)) {
        b.p = v.p + hdr;
        b.n = len;
    }
    return b;
}

/* An integer value into *out; 0 when `v` is not an integer. */
static int nimbus_val_int(nimbus_val v, int64_t *out) {
    if (nimbus_type_of(v) != NIMBUS_INT) return 0;
    uint8_t t = v.p[0];
    if (t <= 0x7f) { *out = t; return 1; }
    if (t >= 0xe0) { *out = (int8_t)t; return 1; }
    static const uint8_t widths[] = {1, 2, 4, 8, 1, 2, 4, 8};
    int w = widths[t - 0xcc];
    if (!nimbus__room(v, 1 + w)) return 0;
    uint64_t raw = nimbus__be(v.p + 1, w);
    if (t <= 0xcf) { *out = (int64_t)raw; return 1; }
    int shift = 64 - 8 * w;
    *out = (int64_t)(raw << shift) >> shift;
    return 1;
}

static int nimbus_val_bool(nimbus_val v) { return v.p && nimbus__room(v, 1) && v.p[0] == 0xc3; }

/* Items of an array, or pairs of a map. */
static uint32_t nimbus_val_count(nimbus_val v) {
    uint32_t len = 0, hdr;
    nimbus_type t = nimbus_type_of(v);
    if ((t == NIMBUS_ARRAY || t == NIMBUS_MAP) && nimbus__head(v, &len, &hdr)) return len;
    return 0;
}

/* The i-th item of an array (absent when out of range). */
static nimbus_val nimbus_array_at(nimbus_val v, uint32_t i) {
    uint32_t len, hdr;
    if (nimbus_type_of(v) != NIMBUS_ARRAY || !nimbus__head(v, &len, &hdr) || i >= len) return nimbus_absent;
    nimbus_val it = {v.p + hdr, v.end};
    while (i-- && it.p) it = nimbus_skip(it);
    return it;
}

static int nimbus_bytes_eq(nimbus_bytes b, const char *s, uint32_t n) {
    if (b.n != n) return 0;
    for (uint32_t i = 0; i < n; i++) if (b.p[i] != (uint8_t)s[i]) return 0;
    return 1;
}

/* The value under string key `key` of a map (absent when missing). */
static nimbus_val nimbus_map_get(nimbus_val map, const char *key) {
    uint32_t len, hdr, klen = nimbus_strlen(key);
    if (nimbus_type_of(map) != NIMBUS_MAP || !nimbus__head(map, &len, &hdr)) return nimbus_absent;
    nimbus_val k = {map.p + hdr, map.end};
    for (uint32_t i = 0; i < len && k.p; i++) {
        nimbus_val v = nimbus_skip(k);
        if (!v.p) return nimbus_absent;
        if (nimbus_bytes_eq(nimbus_val_bytes(k), key, klen)) return v;
        k = nimbus_skip(v);
    }
    return nimbus_absent;
}

/* ---- msgpack: writing ---------------------------------------------------------------- */

typedef struct { uint8_t *p; uint32_t len, cap; } nimbus_buf;

static uint8_t *nimbus__reserve(nimbus_buf *b, uint32_t n) {
    if (b->cap - b->len < n) {
        uint32_t cap = b->cap ? b->cap * 2 : 256;
        while (cap - b->len < n) cap *= 2;
        uint8_t *grown = nimbus_alloc_or_die(cap);
        if (b->len) memcpy(grown, b->p, b->len);
        b->p = grown;
        b->cap = cap;
    }
    uint8_t *out = b->p + b->len;
    b->len += n;
    return out;
}

static void nimbus__put_be(nimbus_buf *b, uint8_t tag, uint64_t v, int w) {
    uint8_t *o = nimbus__reserve(b, 1 + w);
    o[0] = tag;
    for (int i = w; i >= 1; i--) { o[i] = (uint8_t)v; v >>= 8; }
}

static void nimbus_mp_nil(nimbus_buf *b) { *nimbus__reserve(b, 1) = 0xc0; }
static void nimbus_mp_bool(nimbus_buf *b, int v) { *nimbus__reserve(b, 1) = v ? 0xc3 : 0xc2; }
static void nimbus_mp_uint(nimbus_buf *b, uint64_t v) {
    if (v < 0x80) *nimbus__reserve(b, 1) = (uint8_t)v;
    else if (v <= 0xff) nimbus__put_be(b, 0xcc, v, 1);
    else if (v <= 0xffff) nimbus__put_be(b, 0xcd, v, 2);
    else if (v <= 0xffffffffu) nimbus__put_be(b, 0xce, v, 4);
    else nimbus__put_be(b, 0xcf, v, 8);
}
static void nimbus_mp_int(nimbus_buf *b, int64_t v) {
    if (v >= 0) nimbus_mp_uint(b, (uint64_t)v);
    else if (v >= -32) *nimbus__reserve(b, 1) = (uint8_t)(int8_t)v;
    else nimbus__put_be(b, 0xd3, (uint64_t)v, 8);
}
static void nimbus__head_out(nimbus_buf *b, uint32_t n, uint8_t fix, uint32_t fixmax, uint8_t t8, uint8_t t16, uint8_t t32) {
    if (n <= fixmax) *nimbus__reserve(b, 1) = fix | (uint8_t)n;
    else if (t8 && n <= 0xff) nimbus__put_be(b, t8, n, 1);
    else if (n <= 0xffff) nimbus__put_be(b, t16, n, 2);
    else nimbus__put_be(b, t32, n, 4);
}
static void nimbus_mp_str_n(nimbus_buf *b, const void *s, uint32_t n) {
    nimbus__head_out(b, n, 0xa0, 31, 0xd9, 0xda, 0xdb);
    if (n) memcpy(nimbus__reserve(b, n), s, n);
}
static void nimbus_mp_str(nimbus_buf *b, const char *s) { nimbus_mp_str_n(b, s, nimbus_strlen(s)); }
static void nimbus_mp_bin(nimbus_buf *b, const void *p, uint32_t n) {
    if (n <= 0xff) nimbus__put_be(b, 0xc4, n, 1);
    else if (n <= 0xffff) nimbus__put_be(b, 0xc5, n, 2);
    else nimbus__put_be(b, 0xc6, n, 4);
    if (n) memcpy(nimbus__reserve(b, n), p, n);
}
static void nimbus_mp_array(nimbus_buf *b, uint32_t n) { nimbus__head_out(b, n, 0x90, 15, 0, 0xdc, 0xdd); }
static void nimbus_mp_map(nimbus_buf *b, uint32_t n) { nimbus__head_out(b, n, 0x80, 15, 0, 0xde, 0xdf); }
/* Appends a value read elsewhere, as is. */
static void nimbus_mp_val(nimbus_buf *b, nimbus_val v) {
    nimbus_val end = nimbus_skip(v);
    if (!end.p) { nimbus_mp_nil(b); return; }
    uint32_t n = (uint32_t)(end.p - v.p);
    memcpy(nimbus__reserve(b, n), v.p, n);
}
/* Appends already-encoded msgpack. */
static void nimbus_mp_raw(nimbus_buf *b, const nimbus_buf *encoded) {
    if (encoded->len) memcpy(nimbus__reserve(b, encoded->len), encoded->p, encoded->len);
}

/* ---- the event ------------------------------------------------------------------------ */

typedef struct { nimbus_val root; } nimbus_event;

/* Any envelope field (raw msgpack) — e.g. "messages" of a queue event, "payload" of a
 * bus event, "input" of an invoke or workflow event, "bucket" of a storage event. */
static nimbus_val nimbus_event_field(const nimbus_event *ev, const char *name) { return nimbus_map_get(ev->root, name); }
static nimbus_bytes nimbus_event_str(const nimbus_event *ev, const char *name) { return nimbus_val_bytes(nimbus_map_get(ev->root, name)); }
static nimbus_bytes nimbus_event_kind(const nimbus_event *ev) { return nimbus_event_str(ev, "kind"); }
static int nimbus_event_is(const nimbus_event *ev, const char *kind) {
    return nimbus_bytes_eq(nimbus_event_kind(ev), kind, nimbus_strlen(kind));
}
static nimbus_bytes nimbus__lookup(const nimbus_event *ev, const char *map, const char *name) {
    return nimbus_val_bytes(nimbus_map_get(nimbus_map_get(ev->root, map), name));
}
static nimbus_bytes nimbus_event_env(const nimbus_event *ev, const char *name) { return nimbus__lookup(ev, "env", name); }
static nimbus_bytes nimbus_http_method(const nimbus_event *ev) { return nimbus_event_str(ev, "method"); }
static nimbus_bytes nimbus_http_path(const nimbus_event *ev) { return nimbus_event_str(ev, "path"); }
static nimbus_bytes nimbus_http_param(const nimbus_event *ev, const char *name) { return nimbus__lookup(ev, "params", name); }
static nimbus_bytes nimbus_http_query(const nimbus_event *ev, const char *name) { return nimbus__lookup(ev, "query", name); }
/* A request header; `name` in lower case. */
static nimbus_bytes nimbus_http_header(const nimbus_event *ev, const char *name) { return nimbus__lookup(ev, "headers", name); }
static nimbus_bytes nimbus_http_body(const nimbus_event *ev) { return nimbus_event_str(ev, "body"); }
/* The caller on a route with an authentication policy (empty when the route has none):
 * kind ("api_key", "jwt", "authorizer"), subject, the API key's id, and a claim (a JWT's
 * claims, or an authorizer's context) by name. */
static nimbus_bytes nimbus_http_auth_kind(const nimbus_event *ev) { return nimbus__lookup(ev, "auth", "kind"); }
static nimbus_bytes nimbus_http_auth_subject(const nimbus_event *ev) { return nimbus__lookup(ev, "auth", "subject"); }
static nimbus_bytes nimbus_http_auth_key_id(const nimbus_event *ev) { return nimbus__lookup(ev, "auth", "key_id"); }
static nimbus_val nimbus_http_auth_claim(const nimbus_event *ev, const char *name) {
    return nimbus_map_get(nimbus_map_get(nimbus_map_get(ev->root, "auth"), "claims"), name);
}
/* An `authorizer` event (method, path, params, query and headers as for http): the
 * credential to judge and the caller's address. */
static nimbus_bytes nimbus_authorizer_identity(const nimbus_event *ev) { return nimbus_event_str(ev, "identity"); }
static nimbus_bytes nimbus_authorizer_source_ip(const nimbus_event *ev) { return nimbus_event_str(ev, "source_ip"); }

/* ---- the response --------------------------------------------------------------------- */

typedef struct {
    int status;
    nimbus_buf headers; /* msgpack pairs, header_count of them */
    uint32_t header_count;
    const void *body;
    uint32_t body_len;
    int has_body;
    nimbus_buf output; /* one msgpack value when has_output */
    int has_output;
    const char *error_kind;
    const char *error_message;
} nimbus_response;

static void nimbus_res_header(nimbus_response *res, const char *name, const void *value, uint32_t len) {
    nimbus_mp_str(&res->headers, name);
    nimbus_mp_str_n(&res->headers, value, len);
    res->header_count++;
}
static void nimbus_res_body(nimbus_response *res, int status, const char *content_type, const void *body, uint32_t len) {
    res->status = status;
    if (content_type) nimbus_res_header(res, "content-type", content_type, nimbus_strlen(content_type));
    res->body = body;
    res->body_len = len;
    res->has_body = 1;
}
static void nimbus_res_text(nimbus_response *res, int status, const char *text) {
    nimbus_res_body(res, status, "text/plain; charset=utf-8", text, nimbus_strlen(text));
}
/* The encoder for `output`: write exactly one msgpack value into it. */
static nimbus_buf *nimbus_res_output(nimbus_response *res) {
    res->has_output = 1;
    return &res->output;
}
/* An authorizer's answer: allow or deny, the caller's subject, and a context of
 * `context_entries` pairs that the caller writes (key, value, key, value…) into the
 * returned encoder; the gateway passes the context to the function as auth.claims. */
static nimbus_buf *nimbus_res_authorize(nimbus_response *res, int allow, const char *subject,
                                        uint32_t context_entries) {
    nimbus_buf *o = nimbus_res_output(res);
    nimbus_mp_map(o, 3);
    nimbus_mp_str(o, "allow");
    nimbus_mp_bool(o, allow);
    nimbus_mp_str(o, "subject");
    nimbus_mp_str(o, subject);
    nimbus_mp_str(o, "context");
    nimbus_mp_map(o, context_entries);
    return o;
}
/* Fails the invocation: its effects are discarded and the caller sees `kind`. */
static void nimbus_res_fail(nimbus_response *res, const char *kind, const char *message) {
    res->error_kind = kind;
    res->error_message = message;
}

/* ---- managed services ------------------------------------------------------------------ */

enum { NIMBUS_OK = 0, NIMBUS_PERMISSION_DENIED = 1, NIMBUS_INVALID = 2, NIMBUS_CONFLICT = 3,
       NIMBUS_TOO_LARGE = 4, NIMBUS_UNAVAILABLE = 5, NIMBUS_TIMEOUT = 6,
       NIMBUS_LIMIT_EXCEEDED = 7 };

/* A service reply: `status` from the table above; `value` the result (status 0) or a
 * message string (any other status). */
typedef struct { int status; nimbus_val value; } nimbus_reply;

typedef uint64_t (*nimbus__op)(const void *, uint32_t);

static nimbus_reply nimbus_call(nimbus__op op, const nimbus_buf *req) {
    uint64_t packed = op(req->p, req->len);
    const uint8_t *p = (const uint8_t *)(uintptr_t)(packed >> 32);
    nimbus_val reply = {p, p + (uint32_t)packed};
    nimbus_reply r = {NIMBUS_UNAVAILABLE, nimbus_absent};
    int64_t status;
    if (nimbus_val_count(reply) == 2 && nimbus_val_int(nimbus_array_at(reply, 0), &status)) {
        r.status = (int)status;
        r.value = nimbus_array_at(reply, 1);
    }
    return r;
}

static void nimbus__key(nimbus_buf *b, const char *field, const char *name) {
    nimbus_mp_str(b, field);
    nimbus_mp_str(b, name);
}
static void nimbus__bin(nimbus_buf *b, const char *field, const void *p, uint32_t n) {
    nimbus_mp_str(b, field);
    nimbus_mp_bin(b, p, n);
}

/* ok value: nil when absent, else {value, version}. */
static nimbus_reply nimbus_kv_get(const char *table, const void *key, uint32_t klen) {
    nimbus_buf b = {0};
    nimbus_mp_map(&b, 2);
    nimbus__key(&b, "table", table);
    nimbus__bin(&b, "key", key, klen);
    return nimbus_call(nimbus__kv_get, &b);
}
/* `value` is one encoded msgpack value. if_absent: only when the key is absent;
 * if_version >= 0: only when the stored version is that. ok value: {version}. */
static nimbus_reply nimbus_kv_put(const char *table, const void *key, uint32_t klen, const nimbus_buf *value, int if_absent, int64_t if_version) {
    nimbus_buf b = {0};
    nimbus_mp_map(&b, 3 + (if_absent ? 1 : 0) + (if_version >= 0 ? 1 : 0));
    nimbus__key(&b, "table", table);
    nimbus__bin(&b, "key", key, klen);
    nimbus_mp_str(&b, "value");
    nimbus_mp_raw(&b, value);
    if (if_absent) { nimbus_mp_str(&b, "if_absent"); nimbus_mp_bool(&b, 1); }
    if (if_version >= 0) { nimbus_mp_str(&b, "if_version"); nimbus_mp_int(&b, if_version); }
    return nimbus_call(nimbus__kv_put, &b);
}
/* ok value: {deleted}. */
static nimbus_reply nimbus_kv_delete(const char *table, const void *key, uint32_t klen, int64_t if_version) {
    nimbus_buf b = {0};
    nimbus_mp_map(&b, if_version >= 0 ? 3 : 2);
    nimbus__key(&b, "table", table);
    nimbus__bin(&b, "key", key, klen);
    if (if_version >= 0) { nimbus_mp_str(&b, "if_version"); nimbus_mp_int(&b, if_version); }
    return nimbus_call(nimbus__kv_delete, &b);
}
/* ok value: {items: [[key, value, version]...], cursor}. cursor NULL for the first page. */
static nimbus_reply nimbus_kv_scan(const char *table, const void *prefix, uint32_t plen, uint32_t limit, const void *cursor, uint32_t clen) {
    nimbus_buf b = {0};
    nimbus_mp_map(&b, cursor ? 4 : 3);
    nimbus__key(&b, "table", table);
    nimbus__bin(&b, "prefix", prefix, plen);
    nimbus_mp_str(&b, "limit");
    nimbus_mp_uint(&b, limit);
    if (cursor) nimbus__bin(&b, "cursor", cursor, clen);
    return nimbus_call(nimbus__kv_scan, &b);
}
/* A query on an index declared in nimbus.toml (guest_sdk/ABI.md, "Table indexes").
 * eq, or start (inclusive) and end (exclusive): each one encoded msgpack value of the
 * index's type (int, str or bin), or NULL. reverse: from the end down. cursor NULL for
 * the first page. ok value: {items: [[key, value, version]...], cursor}. */
static nimbus_reply nimbus_kv_query(const char *table, const char *index, const nimbus_buf *eq, const nimbus_buf *start,
                                    const nimbus_buf *end, uint32_t limit, int reverse, const void *cursor, uint32_t clen) {
    nimbus_buf b = {0};
    nimbus_mp_map(&b, 4 + (eq ? 1 : 0) + (start ? 1 : 0) + (end ? 1 : 0) + (cursor ? 1 : 0));
    nimbus__key(&b, "table", table);
    nimbus__key(&b, "index", index);
    nimbus_mp_str(&b, "limit");
    nimbus_mp_uint(&b, limit);
    nimbus_mp_str(&b, "reverse");
    nimbus_mp_bool(&b, reverse);
    if (eq) { nimbus_mp_str(&b, "eq"); nimbus_mp_raw(&b, eq); }
    if (start) { nimbus_mp_str(&b, "start"); nimbus_mp_raw(&b, start); }
    if (end) { nimbus_mp_str(&b, "end"); nimbus_mp_raw(&b, end); }
    if (cursor) nimbus__bin(&b, "cursor", cursor, clen);
    return nimbus_call(nimbus__kv_query, &b);
}
/* ok value: {size, etag}. */
static nimbus_reply nimbus_blob_put(const char *bucket, const void *key, uint32_t klen, const void *data, uint32_t dlen, const char *content_type) {
    nimbus_buf b = {0};
    nimbus_mp_map(&b, 4);
    nimbus__key(&b, "bucket", bucket);
    nimbus__bin(&b, "key", key, klen);
    nimbus__bin(&b, "data", data, dlen);
    nimbus__key(&b, "content_type", content_type ? content_type : "application/octet-stream");
    return nimbus_call(nimbus__blob_put, &b);
}
static nimbus_reply nimbus__blob_key_op(nimbus__op op, const char *bucket, const void *key, uint32_t klen) {
    nimbus_buf b = {0};
    nimbus_mp_map(&b, 2);
    nimbus__key(&b, "bucket", bucket);
    nimbus__bin(&b, "key", key, klen);
    return nimbus_call(op, &b);
}
/* ok value: nil, or {data, size, content_type, metadata, etag, modified_ms}. */
static nimbus_reply nimbus_blob_get(const char *bucket, const void *key, uint32_t klen) { return nimbus__blob_key_op(nimbus__blob_get, bucket, key, klen); }
/* ok value: nil, or {size, content_type, metadata, etag, modified_ms}. */
static nimbus_reply nimbus_blob_head(const char *bucket, const void *key, uint32_t klen) { return nimbus__blob_key_op(nimbus__blob_head, bucket, key, klen); }
/* ok value: {deleted}. */
static nimbus_reply nimbus_blob_delete(const char *bucket, const void *key, uint32_t klen) { return nimbus__blob_key_op(nimbus__blob_delete, bucket, key, klen); }
/* ok value: {items: [{key, size, etag, modified_ms}...], cursor}. */
static nimbus_reply nimbus_blob_list(const char *bucket, const void *prefix, uint32_t plen, uint32_t limit, const void *cursor, uint32_t clen) {
    nimbus_buf b = {0};
    nimbus_mp_map(&b, cursor ? 4 : 3);
    nimbus__key(&b, "bucket", bucket);
    nimbus__bin(&b, "prefix", prefix, plen);
    nimbus_mp_str(&b, "limit");
    nimbus_mp_uint(&b, limit);
    if (cursor) nimbus__bin(&b, "cursor", cursor, clen);
    return nimbus_call(nimbus__blob_list, &b);
}
/* `body` is one encoded msgpack value. ok value: {id}. */
static nimbus_reply nimbus_queue_send(const char *queue, const nimbus_buf *body, uint64_t delay_ms) {
    nimbus_buf b = {0};
    nimbus_mp_map(&b, 3);
    nimbus__key(&b, "queue", queue);
    nimbus_mp_str(&b, "body");
    nimbus_mp_raw(&b, body);
    nimbus_mp_str(&b, "delay_ms");
    nimbus_mp_uint(&b, delay_ms);
    return nimbus_call(nimbus__queue_send, &b);
}
/* `payload` is one encoded msgpack value. ok value: {id}. */
static nimbus_reply nimbus_event_publish(const char *topic, const nimbus_buf *payload) {
    nimbus_buf b = {0};
    nimbus_mp_map(&b, 2);
    nimbus__key(&b, "topic", topic);
    nimbus_mp_str(&b, "payload");
    nimbus_mp_raw(&b, payload);
    return nimbus_call(nimbus__event_publish, &b);
}

/* ---- outbound HTTP and secrets --------------------------------------------------------- */

/* One outbound request (see ABI.md, "Outbound HTTP"). `headers` is NULL or an encoded
 * msgpack map of str -> str; `body` may be NULL; timeout_ms 0 = the invocation's deadline.
 * ok value: {status, headers (map, names lower case), body (bin)}. Error statuses:
 * PERMISSION_DENIED (host not allowed: the message names it), TOO_LARGE (body over the
 * cap), TIMEOUT (timeout_ms passed), LIMIT_EXCEEDED (32 per invocation), UNAVAILABLE. */
static nimbus_reply nimbus_http_fetch(const char *method, const char *url, const nimbus_buf *headers,
                                      const void *body, uint32_t body_len, uint32_t timeout_ms) {
    nimbus_buf b = {0};
    nimbus_mp_map(&b, 2 + (headers ? 1 : 0) + (body ? 1 : 0) + (timeout_ms ? 1 : 0));
    nimbus__key(&b, "method", method ? method : "GET");
    nimbus__key(&b, "url", url);
    if (headers) { nimbus_mp_str(&b, "headers"); nimbus_mp_raw(&b, headers); }
    if (body) nimbus__bin(&b, "body", body, body_len);
    if (timeout_ms) { nimbus_mp_str(&b, "timeout_ms"); nimbus_mp_uint(&b, timeout_ms); }
    return nimbus_call(nimbus__http_fetch, &b);
}
/* A granted secret. ok value: bin, or nil when granted but not set. */
static nimbus_reply nimbus_secret_get(const char *name) {
    nimbus_buf b = {0};
    nimbus_mp_map(&b, 1);
    nimbus__key(&b, "name", name);
    return nimbus_call(nimbus__secret_get, &b);
}

/* ---- the ABI glue ---------------------------------------------------------------------- */

#ifndef NIMBUS_NO_GLUE
void handle(const nimbus_event *ev, nimbus_response *res);

NIMBUS_EXPORT(nimbus_abi_version) int32_t nimbus_abi_version(void) { return 1; }

NIMBUS_EXPORT(nimbus_alloc) void *nimbus_alloc(uint32_t len) { return nimbus_try_alloc(len); }

NIMBUS_EXPORT(nimbus_handle) uint64_t nimbus_handle(const uint8_t *ptr, uint32_t len) {
    nimbus_event ev = {{ptr, ptr + len}};
    nimbus_response res = {0};
    res.status = 200;
    handle(&ev, &res);
    nimbus_buf out = {0};
    nimbus_mp_map(&out, 2 + (res.has_body ? 1 : 0) + (res.has_output ? 1 : 0) + (res.error_kind ? 1 : 0));
    nimbus_mp_str(&out, "status");
    nimbus_mp_uint(&out, (uint64_t)res.status);
    nimbus_mp_str(&out, "headers");
    nimbus_mp_map(&out, res.header_count);
    nimbus_mp_raw(&out, &res.headers);
    if (res.has_body) { nimbus_mp_str(&out, "body"); nimbus_mp_bin(&out, res.body, res.body_len); }
    if (res.has_output) {
        nimbus_mp_str(&out, "output");
        if (res.output.len) nimbus_mp_raw(&out, &res.output); else nimbus_mp_nil(&out);
    }
    if (res.error_kind) {
        nimbus_mp_str(&out, "error");
        nimbus_mp_map(&out, 2);
        nimbus__key(&out, "kind", res.error_kind);
        nimbus__key(&out, "message", res.error_message ? res.error_message : "");
    }
    return ((uint64_t)(uintptr_t)out.p << 32) | out.len;
}
#endif

#endif /* NIMBUS_H */
