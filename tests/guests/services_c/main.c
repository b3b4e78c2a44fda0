/* Exercises every service wrapper of the C SDK once, in a fixed order, and returns
 * [status, value] of each in `output` (table "t", bucket "b", queue "q", topic
 * "order.created"; key and data from input.key / input.data). */
#include "nimbus.h"

static void record(nimbus_buf *out, nimbus_reply r) {
    nimbus_mp_array(out, 2);
    nimbus_mp_int(out, r.status);
    if (r.value.p) nimbus_mp_val(out, r.value); else nimbus_mp_nil(out);
}

void handle(const nimbus_event *ev, nimbus_response *res) {
    nimbus_val input = nimbus_event_field(ev, "input");
    nimbus_bytes key = nimbus_val_bytes(nimbus_map_get(input, "key"));
    nimbus_bytes data = nimbus_val_bytes(nimbus_map_get(input, "data"));
    nimbus_buf value = {0};
    nimbus_mp_map(&value, 1);
    nimbus_mp_str(&value, "n");
    nimbus_mp_int(&value, 42);

    nimbus_buf *out = nimbus_res_output(res);
    nimbus_mp_array(out, 12);
    record(out, nimbus_kv_put("t", key.p, key.n, &value, 0, -1));
    record(out, nimbus_kv_get("t", key.p, key.n));
    record(out, nimbus_kv_put("t", key.p, key.n, &value, 1, -1)); /* if_absent: conflict */
    record(out, nimbus_kv_scan("t", 0, 0, 10, 0, 0));
    record(out, nimbus_kv_delete("t", key.p, key.n, -1));
    record(out, nimbus_blob_put("b", key.p, key.n, data.p, data.n, "text/plain"));
    record(out, nimbus_blob_get("b", key.p, key.n));
    record(out, nimbus_blob_head("b", key.p, key.n));
    record(out, nimbus_blob_list("b", 0, 0, 10, 0, 0));
    record(out, nimbus_queue_send("q", &value, 0));
    record(out, nimbus_event_publish("order.created", &value));
    record(out, nimbus_kv_get("forbidden", key.p, key.n));
}
