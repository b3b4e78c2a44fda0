/* An allocator that answers with a pointer far outside its memory. */
#define NIMBUS_NO_GLUE
#include "nimbus.h"
NIMBUS_EXPORT(nimbus_abi_version) int32_t nimbus_abi_version(void) { return 1; }
NIMBUS_EXPORT(nimbus_alloc) void *nimbus_alloc(uint32_t len) {
    (void)len;
    return (void *)0xfff00000u;
}
NIMBUS_EXPORT(nimbus_handle) uint64_t nimbus_handle(const uint8_t *ptr, uint32_t len) {
    (void)ptr; (void)len;
    return 0;
}
