/* A module without nimbus_handle: refused with the missing export named. */
#include <stdint.h>
__attribute__((export_name("nimbus_abi_version"))) int32_t nimbus_abi_version(void) { return 1; }
__attribute__((export_name("nimbus_alloc"))) int32_t nimbus_alloc(int32_t n) { (void)n; return 0; }
