/* LogAndAlert: the OrderFulfillmentWorkflow's handleError handler. Writes the failure
 * to the error log and publishes it on topic "alerts" for whoever watches them
 * (subscribe a function to "alerts", or `nimbus logs --function LogAndAlert`).
 * Input: {"order": the order as given, "error": {"kind", "message", "step", ...}}. */
#include "nimbus.h"

/* "<what><a>: <b>" as one error-level log line. */
static void log_error(const char *what, nimbus_bytes a, nimbus_bytes b) {
    uint32_t w = (uint32_t)nimbus_strlen(what), n = w + a.n + 2 + b.n;
    char *line = nimbus_alloc_or_die(n);
    memcpy(line, what, w);
    if (a.n) memcpy(line + w, a.p, a.n);
    line[w + a.n] = ':';
    line[w + a.n + 1] = ' ';
    if (b.n) memcpy(line + w + a.n + 2, b.p, b.n);
    nimbus_log_n(NIMBUS_ERROR, line, n);
}

void handle(const nimbus_event *ev, nimbus_response *res) {
    nimbus_val input = nimbus_event_field(ev, "input");
    nimbus_val order = nimbus_map_get(input, "order");
    nimbus_val error = nimbus_map_get(input, "error");
    nimbus_bytes order_id = nimbus_val_bytes(nimbus_map_get(order, "orderId"));
    nimbus_bytes message = nimbus_val_bytes(nimbus_map_get(error, "message"));
    log_error("order failed, order ", order_id, message);

    nimbus_buf alert = {0};
    nimbus_mp_map(&alert, 5);
    nimbus_mp_str(&alert, "source");
    nimbus_mp_str(&alert, "OrderFulfillmentWorkflow");
    nimbus_mp_str(&alert, "runId");
    nimbus_bytes run = nimbus_event_str(ev, "run_id");
    nimbus_mp_str_n(&alert, run.p, run.n);
    nimbus_mp_str(&alert, "orderId");
    nimbus_mp_str_n(&alert, order_id.p, order_id.n);
    nimbus_mp_str(&alert, "error");
    nimbus_mp_val(&alert, error);
    nimbus_mp_str(&alert, "at");
    nimbus_mp_int(&alert, nimbus_now() / 1000000);
    nimbus_reply sent = nimbus_event_publish("alerts", &alert);
    if (sent.status != NIMBUS_OK) {
        nimbus_res_fail(res, "AlertFailed", "could not publish on topic alerts");
        return;
    }
    nimbus_buf *out = nimbus_res_output(res);
    nimbus_mp_map(out, 2);
    nimbus_mp_str(out, "alerted");
    nimbus_mp_bool(out, 1);
    nimbus_mp_str(out, "orderId");
    nimbus_mp_str_n(out, order_id.p, order_id.n);
}
