/* Integer division by a divisor from the input (0 traps). */
#include "nimbus.h"
void handle(const nimbus_event *ev, nimbus_response *res) {
    int64_t divisor = 1;
    nimbus_val_int(nimbus_map_get(nimbus_event_field(ev, "input"), "divisor"), &divisor);
    volatile int32_t d = (int32_t)divisor;
    volatile int32_t n = 7;
    nimbus_mp_int(nimbus_res_output(res), n / d);
}
