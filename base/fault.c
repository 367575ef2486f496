/*  fault - see fault.h */
#include "base/fault.h"

#include <stdlib.h>
#include <time.h>

void lmp_fault_sleep(const char *var) {
    const char *s  = getenv(var);
    const long  ms = s ? atol(s) : 0;
    if (ms <= 0) return;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}
