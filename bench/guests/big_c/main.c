/* A large function for cold-start benchmarks: a 1.25 MiB table in its data segment
 * plus a few hundred generated functions, so the module is well over 1 MiB. */
#include "nimbus.h"

#define R16(x) x x x x x x x x x x x x x x x x
#define R256(x) R16(R16(x))
#define R4K(x) R16(R256(x))
#define R64K(x) R16(R4K(x))
static const char table[] = R64K("nimbus cold start..."); /* 20 x 65536 bytes */

#define F(n) __attribute__((noinline)) static uint32_t f##n(uint32_t x) { \
    for (uint32_t i = 0; i < (x & 7u) + n; i++) x = x * 2654435761u + (uint8_t)table[(x ^ i) % sizeof table]; \
    return x; }
#define F10(p) F(p##0) F(p##1) F(p##2) F(p##3) F(p##4) F(p##5) F(p##6) F(p##7) F(p##8) F(p##9)
F10(1) F10(2) F10(3) F10(4) F10(5) F10(6) F10(7) F10(8) F10(9)
#define C(n) x = f##n(x);
#define C10(p) C(p##0) C(p##1) C(p##2) C(p##3) C(p##4) C(p##5) C(p##6) C(p##7) C(p##8) C(p##9)

void handle(const nimbus_event *ev, nimbus_response *res) {
    uint32_t x = nimbus_http_path(ev).n;
    C10(1) C10(2) C10(3) C10(4) C10(5) C10(6) C10(7) C10(8) C10(9)
    nimbus_mp_uint(nimbus_res_output(res), x);
    nimbus_res_text(res, 200, "big\n");
}
