/* The C SDK's outbound HTTP and secrets: POSTs input.body to input.url with an
 * Authorization header built from the secret input.secret, and returns
 * [[status, value] of the fetch, [status, value] of the secret]. */
#include "nimbus.h"

static void record(nimbus_buf *out, nimbus_reply r) {
    nimbus_mp_array(out, 2);
    nimbus_mp_int(out, r.status);
    if (r.value.p) nimbus_mp_val(out, r.value); else nimbus_mp_nil(out);
}

static char *cstr(nimbus_bytes b) {
    char *s = nimbus_alloc_or_die(b.n + 1);
    for (uint32_t i = 0; i < b.n; i++) s[i] = (char)b.p[i];
    s[b.n] = 0;
    return s;
}

void handle(const nimbus_event *ev, nimbus_response *res) {
    nimbus_val input = nimbus_event_field(ev, "input");
    char *url = cstr(nimbus_val_bytes(nimbus_map_get(input, "url")));
    char *name = cstr(nimbus_val_bytes(nimbus_map_get(input, "secret")));
    nimbus_bytes body = nimbus_val_bytes(nimbus_map_get(input, "body"));

    nimbus_reply secret = nimbus_secret_get(name);
    nimbus_bytes key = nimbus_val_bytes(secret.value);
    nimbus_buf headers = {0};
    nimbus_mp_map(&headers, 2);
    nimbus_mp_str(&headers, "content-type");
    nimbus_mp_str(&headers, "application/json");
    nimbus_mp_str(&headers, "authorization");
    nimbus_mp_str_n(&headers, key.p, secret.status == NIMBUS_OK ? key.n : 0);
    nimbus_reply fetched = nimbus_http_fetch("POST", url, &headers, body.p, body.n, 0);

    nimbus_buf *out = nimbus_res_output(res);
    nimbus_mp_array(out, 2);
    record(out, fetched);
    record(out, secret);
}
