/* An authorizer function: allows "Bearer alice" (subject alice, context role=admin),
 * denies every other credential. Any other event kind answers 400. */
#include "nimbus.h"

void handle(const nimbus_event *ev, nimbus_response *res) {
    if (!nimbus_event_is(ev, "authorizer")) {
        nimbus_res_text(res, 400, "not an authorizer event");
        return;
    }
    nimbus_bytes who = nimbus_authorizer_identity(ev);
    if (nimbus_bytes_eq(who, "Bearer alice", 12)) {
        nimbus_buf *context = nimbus_res_authorize(res, 1, "alice", 1);
        nimbus_mp_str(context, "role");
        nimbus_mp_str(context, "admin");
    } else {
        nimbus_res_authorize(res, 0, "", 0);
    }
}
