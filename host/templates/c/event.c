/* {{name}}: runs on bus events whose topic matches "{{resource}}".
 * Try it: nimbus publish {{topic}} '{"id": 1}'   (or: nimbus invoke {{name}} --trigger event) */
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
    nimbus_bytes topic = nimbus_event_str(ev, "topic");
    log_line("event event: topic ", topic, (nimbus_bytes){0, 0});
    nimbus_buf *out = nimbus_res_output(res);
    nimbus_mp_map(out, 3);
    put_str(out, "kind", nimbus_event_kind(ev));
    put_str(out, "topic", topic);
    nimbus_mp_str(out, "payload");
    nimbus_mp_val(out, nimbus_event_field(ev, "payload"));
}
