/* Busy-loops for ?ms=N (http) or input.ms milliseconds using the clock, then answers. */
#include "nimbus.h"
void handle(const nimbus_event *ev, nimbus_response *res) {
    int64_t ms = 0;
    nimbus_bytes q = nimbus_http_query(ev, "ms");
    for (uint32_t i = 0; i < q.n && q.p[i] >= '0' && q.p[i] <= '9'; i++) ms = ms * 10 + (q.p[i] - '0');
    if (!q.p) nimbus_val_int(nimbus_map_get(nimbus_event_field(ev, "input"), "ms"), &ms);
    int64_t until = nimbus_now() + ms * 1000000;
    while (nimbus_now() < until) {}
    nimbus_res_text(res, 200, "done\n");
}
