/* Responds with a body of input.size bytes (for the response cap). */
#include "nimbus.h"
void handle(const nimbus_event *ev, nimbus_response *res) {
    int64_t size = 0;
    nimbus_val_int(nimbus_map_get(nimbus_event_field(ev, "input"), "size"), &size);
    uint8_t *body = nimbus_alloc_or_die((uint32_t)size);
    memset(body, 'z', (size_t)size);
    nimbus_res_body(res, 200, "application/octet-stream", body, (uint32_t)size);
}
