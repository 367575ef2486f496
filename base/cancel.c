/*  cancel - see cancel.h */
#include "base/cancel.h"

/* lock-free on every target we build for, so the store in a signal handler is safe */
static atomic_int shutdown_flag;

void lmp_cancel_shutdown(void) {
    atomic_store_explicit(&shutdown_flag, 1, memory_order_relaxed);
}

bool lmp_cancel_is_shutdown(void) {
    return atomic_load_explicit(&shutdown_flag, memory_order_relaxed) != 0;
}

bool lmp_cancelled(const atomic_int *flag) {
    return (flag && atomic_load_explicit(flag, memory_order_relaxed) != 0) ||
           lmp_cancel_is_shutdown();
}
