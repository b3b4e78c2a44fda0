/* Returns bytes that are not msgpack (a truncated map). */
#define NIMBUS_NO_GLUE
#include "nimbus.h"
NIMBUS_EXPORT(nimbus_abi_version) int32_t nimbus_abi_version(void) { return 1; }
NIMBUS_EXPORT(nimbus_alloc) void *nimbus_alloc(uint32_t len) { return nimbus_try_alloc(len); }
static const uint8_t garbage[] = {0x85, 0xa6, 's', 't', 'a'};
NIMBUS_EXPORT(nimbus_handle) uint64_t nimbus_handle(const uint8_t *ptr, uint32_t len) {
    (void)ptr; (void)len;
    return ((uint64_t)(uintptr_t)garbage << 32) | sizeof garbage;
}
