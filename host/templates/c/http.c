/* {{name}}: an HTTP function. GET /{{name}}/{name} answers JSON.
 * Build and try it: nimbus invoke {{name}} --http GET /{{name}}/ada */
#include "nimbus.h"

/* One log line: `what`, then `a`, then a space and `b` when there is one. */
static void log_line(const char *what, nimbus_bytes a, nimbus_bytes b) {
    uint32_t w = (uint32_t)nimbus_strlen(what), n = w + a.n + (b.n ? 1 + b.n : 0);
    char *line = nimbus_alloc_or_die(n);
    memcpy(line, what, w);
    if (a.n) memcpy(line + w, a.p, a.n);
    if (b.n) {
        line[w + a.n] = ' ';
        memcpy(line + w + a.n + 1, b.p, b.n);
    }
    nimbus_log_n(NIMBUS_INFO, line, n);
}

static void put_str(nimbus_buf *out, const char *key, nimbus_bytes value) {
    nimbus_mp_str(out, key);
    nimbus_mp_str_n(out, value.p, value.n);
}

void handle(const nimbus_event *ev, nimbus_response *res) {
    nimbus_bytes name = nimbus_http_param(ev, "name");
    if (!name.p) name = nimbus_http_query(ev, "name");
    if (!name.p) name = (nimbus_bytes){(const uint8_t *)"world", 5};
    log_line("http event: ", nimbus_http_method(ev), nimbus_http_path(ev));
    char *message = nimbus_alloc_or_die(7 + name.n);
    memcpy(message, "hello, ", 7);
    memcpy(message + 7, name.p, name.n);
    /* a value written as the output becomes a JSON body */
    nimbus_buf *out = nimbus_res_output(res);
    nimbus_mp_map(out, 3);
    nimbus_mp_str(out, "message");
    nimbus_mp_str_n(out, message, 7 + name.n);
    put_str(out, "kind", nimbus_event_kind(ev));
    put_str(out, "function", nimbus_event_str(ev, "function"));
    nimbus_res_header(res, "content-type", "application/json", 16);
}
