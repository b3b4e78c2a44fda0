/* Imports functions the host does not offer: refused at deploy with both named. */
#include "nimbus.h"
__attribute__((import_module("nimbus"), import_name("teleport"))) int32_t teleport(int32_t);
__attribute__((import_module("env"), import_name("foo"))) int32_t foo(void);
void handle(const nimbus_event *ev, nimbus_response *res) {
    (void)ev;
    res->status = 200 + teleport(foo());
}
