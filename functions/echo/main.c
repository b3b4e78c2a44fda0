/* POST /echo: the request body back, with its content type and x-echo-* headers. */
#include "nimbus.h"

void handle(const nimbus_event *ev, nimbus_response *res) {
    nimbus_bytes ct = nimbus_http_header(ev, "content-type");
    nimbus_bytes method = nimbus_http_method(ev);
    nimbus_bytes path = nimbus_http_path(ev);
    nimbus_bytes body = nimbus_http_body(ev);
    res->status = 200;
    if (ct.p) nimbus_res_header(res, "content-type", ct.p, ct.n);
    nimbus_res_header(res, "x-echo-method", method.p, method.n);
    nimbus_res_header(res, "x-echo-path", path.p, path.n);
    nimbus_res_body(res, 200, 0, body.p, body.n);
    nimbus_log(NIMBUS_INFO, "echoed a request");
}
