/* Executes `unreachable`. */
#include "nimbus.h"
void handle(const nimbus_event *ev, nimbus_response *res) {
    (void)ev; (void)res;
    __builtin_trap();
}
