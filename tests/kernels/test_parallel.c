/*  test_parallel - the kernel pool (kernels/cpu/parallel.c) through lmp_kernels_parallel:
 *  every tid of a call runs exactly once and before the call returns, with threads that
 *  park at once and with threads that spin between calls; two callers at once, a nested
 *  call and a call wider than the budget get threads of their own and still complete.
 */
#include "tests/check.h"     /* defines: CHECK, RUN, check_report */
#include "kernels/kernels.h" /* defines: lmp_kernels_parallel, lmp_kernels_set_spin_us */

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

enum { MAX_T = 8 };

struct call {
    atomic_int ran[MAX_T];
    atomic_int bad_n; /* a tid outside [0, n) or n not what was asked */
    int        want_n;
    int        nest; /* tid 0 makes a nested call of this width */
    atomic_int nested_ok;
};

static void busy_ns(long ns) {
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    do clock_gettime(CLOCK_MONOTONIC, &b);
    while ((b.tv_sec - a.tv_sec) * 1000000000L + (b.tv_nsec - a.tv_nsec) < ns);
}

static void fn(void *arg, int tid, int n);

static bool one_call(int n, int nest) {
    struct call c = {.want_n = n, .nest = nest};
    for (int t = 0; t < MAX_T; t++) atomic_init(&c.ran[t], 0);
    atomic_init(&c.bad_n, 0);
    atomic_init(&c.nested_ok, 0);
    lmp_kernels_parallel(n, fn, &c);
    bool ok = atomic_load(&c.bad_n) == 0;
    for (int t = 0; t < MAX_T; t++) ok = ok && atomic_load(&c.ran[t]) == (t < n ? 1 : 0);
    return ok && (nest == 0 || atomic_load(&c.nested_ok) == 1);
}

static void fn(void *arg, int tid, int n) {
    struct call *c = arg;
    if (n != c->want_n || tid < 0 || tid >= n || tid >= MAX_T) {
        atomic_fetch_add(&c->bad_n, 1);
        return;
    }
    if (tid != 0) busy_ns(2000 * tid); /* the caller's part ends first: the join must wait */
    if (tid == 0 && c->nest > 0) atomic_store(&c->nested_ok, one_call(c->nest, 0) ? 1 : 0);
    atomic_fetch_add(&c->ran[tid], 1);
}

static void test_every_tid_once(void) {
    for (int spin = 0; spin <= 1; spin++) {
        lmp_kernels_set_spin_us(spin ? 200 : 0);
        int bad = 0;
        for (int i = 0; i < 3000; i++) bad += !one_call(1 + i % 3, 0);
        CHECK(bad == 0);
        /* gaps between calls longer than the spin window: the threads park and wake */
        for (int i = 0; i < 20; i++) {
            busy_ns(spin ? 400000 : 1000);
            bad += !one_call(3, 0);
        }
        CHECK(bad == 0);
    }
    lmp_kernels_set_spin_us(0);
}

static void test_wider_and_nested(void) {
    lmp_kernels_set_spin_us(100);
    CHECK(one_call(5, 0)); /* more than the budget of 3: fresh threads */
    CHECK(one_call(3, 2)); /* tid 0 calls again while the pool runs the outer call */
    lmp_kernels_set_spin_us(0);
}

static void *caller_main(void *p) {
    int *bad = p;
    for (int i = 0; i < 1000; i++) *bad += !one_call(2 + i % 2, 0);
    return NULL;
}

static void test_two_callers(void) {
    for (int spin = 0; spin <= 1; spin++) {
        lmp_kernels_set_spin_us(spin ? 50 : 0);
        pthread_t th[2];
        int       bad[2] = {0, 0};
        for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, caller_main, &bad[i]);
        for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
        CHECK(bad[0] == 0 && bad[1] == 0);
    }
    lmp_kernels_set_spin_us(0);
}

int main(void) {
    lmp_kernels_set_threads(3);
    RUN(test_every_tid_once);
    RUN(test_wider_and_nested);
    RUN(test_two_callers);
    return check_report();
}
