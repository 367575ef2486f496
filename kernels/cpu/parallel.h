/*  parallel - fork/join helper for the CPU variants: run fn(arg, tid, n_threads) on
 *  n_threads threads (tid 0 on the caller's thread) and wait for all of them.
 *  If a thread cannot be created its share runs on the caller's thread, so the call
 *  always completes. No state survives the call.
 */
#ifndef LMP_KERNELS_CPU_PARALLEL_H
#define LMP_KERNELS_CPU_PARALLEL_H

#include <stdint.h>

typedef void lmp_par_fn(void *arg, int tid, int n_threads);

void lmp_cpu_parallel(int n_threads, lmp_par_fn *fn, void *arg);

/* [*lo, *hi): the tid-th of n_threads near-equal parts of [0, n). */
static inline void lmp_par_range(int64_t n, int tid, int n_threads, int64_t *lo, int64_t *hi) {
    *lo = n * tid / n_threads;
    *hi = n * (tid + 1) / n_threads;
}

#endif /* LMP_KERNELS_CPU_PARALLEL_H */
