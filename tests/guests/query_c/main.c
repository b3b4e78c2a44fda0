/* kv_query through the C SDK, in a fixed order on table "orders" (index "at", int):
 * three puts, one put that lacks the field, then queries: eq, a range one item per
 * page following the cursor, reverse, and an index that does not exist. Returns
 * [status, value] of each in `output`. */
#include "nimbus.h"

static void record(nimbus_buf *out, nimbus_reply r) {
    nimbus_mp_array(out, 2);
    nimbus_mp_int(out, r.status);
    if (r.value.p) nimbus_mp_val(out, r.value); else nimbus_mp_nil(out);
}

static nimbus_reply put_at(const char *key, int64_t at) {
    nimbus_buf value = {0};
    nimbus_mp_map(&value, 2);
    nimbus_mp_str(&value, "at");
    nimbus_mp_int(&value, at);
    nimbus_mp_str(&value, "from");
    nimbus_mp_str(&value, "c");
    return nimbus_kv_put("orders", key, nimbus_strlen(key), &value, 0, -1);
}

static nimbus_buf int_value(int64_t v) {
    nimbus_buf b = {0};
    nimbus_mp_int(&b, v);
    return b;
}

void handle(const nimbus_event *ev, nimbus_response *res) {
    (void)ev;
    nimbus_buf *out = nimbus_res_output(res);
    nimbus_mp_array(out, 10);
    record(out, put_at("c1", 3));
    record(out, put_at("c2", -1));
    record(out, put_at("c3", 2));
    nimbus_buf lacking = {0};
    nimbus_mp_map(&lacking, 1);
    nimbus_mp_str(&lacking, "n");
    nimbus_mp_int(&lacking, 1);
    record(out, nimbus_kv_put("orders", "c4", 2, &lacking, 0, -1)); /* status 2 */

    nimbus_buf two = int_value(2), low = int_value(-1), high = int_value(3);
    record(out, nimbus_kv_query("orders", "at", &two, 0, 0, 10, 0, 0, 0));
    nimbus_reply first = nimbus_kv_query("orders", "at", 0, &low, &high, 1, 0, 0, 0);
    record(out, first);
    nimbus_bytes cursor = nimbus_val_bytes(nimbus_map_get(first.value, "cursor"));
    record(out, nimbus_kv_query("orders", "at", 0, &low, &high, 1, 0, cursor.p, cursor.n));
    record(out, nimbus_kv_query("orders", "at", 0, 0, 0, 10, 1, 0, 0));
    record(out, nimbus_kv_query("orders", "missing", 0, 0, 0, 10, 0, 0, 0)); /* status 2 */
    record(out, nimbus_kv_query("orders", "at", 0, &low, &high, 1, 1, cursor.p, cursor.n)); /* 2 */
}
