/*  mem - see mem.h */
#include "base/mem.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

uint64_t lmp_mem_physical(void) {
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || page <= 0) return 0;
    return lmp_mem_mul((uint64_t)pages, (uint64_t)page, 1);
}

uint64_t lmp_mem_budget(void) {
    const char *e = getenv("LMP_MEM_BUDGET");
    if (e && e[0]) {
        char *end                    = NULL;
        errno                        = 0;
        const unsigned long long v   = strtoull(e, &end, 10);
        uint64_t                 mul = 1;
        if (*end == 'K' || *end == 'k')
            mul = 1ull << 10, end++;
        else if (*end == 'M' || *end == 'm')
            mul = 1ull << 20, end++;
        else if (*end == 'G' || *end == 'g')
            mul = 1ull << 30, end++;
        if (errno == 0 && end != e && *end == '\0' && v > 0) return lmp_mem_mul(v, mul, 1);
    }
    const uint64_t phys = lmp_mem_physical();
    return phys ? phys / 2 : UINT64_MAX;
}

uint64_t lmp_mem_mul(uint64_t a, uint64_t b, uint64_t c) {
    if (a == 0 || b == 0 || c == 0) return 0;
    if (a > UINT64_MAX / b) return UINT64_MAX;
    const uint64_t ab = a * b;
    return ab > UINT64_MAX / c ? UINT64_MAX : ab * c;
}
