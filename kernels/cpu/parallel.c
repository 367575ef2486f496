/*  parallel - see parallel.h (plain C; lives in cpu/ because only the CPU variants use it)
 *
 *  One pool per process: lmp_kernels_threads() - 1 threads, started on the first parallel
 *  call and kept until the process exits. One fork/join runs on it at a time; a call that
 *  finds it busy (another in-process worker's kernel, or a nested call) or asks for more
 *  threads than it has gets threads of its own for that call, as every call did before the
 *  pool, so a call never waits for another.
 *
 *  Between runs the threads park on a condition variable: a wake costs a futex call and a
 *  reschedule (10-14 us on the shared VM), fine for a compression's long calls, a large
 *  share of a decoding step's 150 short ones. With a spin window (lmp_kernels_set_spin_us:
 *  `generate`, where one process owns the cores) a thread that finishes a run watches for
 *  the next one that long before it parks, and the caller watches its workers finish
 *  before it sleeps on them; a window of 0 (the default) parks at once.
 */
#include "kernels/cpu/parallel.h"
#include "kernels/cpu/cpu_variants.h" /* defines: lmp_cpu_threads() */
#include "kernels/kernels.h"          /* defines: lmp_kernels_parallel, lmp_kernels_set_spin_us */

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h> /* _mm_pause */
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

int lmp_cpu_threads(void) {
    return lmp_kernels_threads();
}

/* ---- fresh threads for one call (the fallback) ------------------------------------------- */

struct par_job {
    lmp_par_fn *fn;
    void       *arg;
    int         tid, n;
};

static void *par_main(void *p) {
    struct par_job *j = p;
    j->fn(j->arg, j->tid, j->n);
    return NULL;
}

static void run_fresh(int n_threads, lmp_par_fn *fn, void *arg) {
    pthread_t      th[256];
    struct par_job jobs[256];
    int            started[256] = {0};
    for (int t = 1; t < n_threads; t++) {
        jobs[t]    = (struct par_job){fn, arg, t, n_threads};
        started[t] = pthread_create(&th[t], NULL, par_main, &jobs[t]) == 0;
    }
    fn(arg, 0, n_threads);
    for (int t = 1; t < n_threads; t++) {
        if (started[t])
            pthread_join(th[t], NULL);
        else
            fn(arg, t, n_threads);
    }
}

/* ---- the process's pool ------------------------------------------------------------------ */

static struct {
    pthread_mutex_t  busy; /* held by the call that runs on the pool */
    pthread_mutex_t  mu;
    pthread_cond_t   go, done;
    int              n_workers; /* started threads (tids 1..n_workers) */
    _Atomic uint64_t gen;       /* bumped per run (under mu) */
    atomic_int       n_busy;    /* workers still inside the current run */
    lmp_par_fn      *fn;        /* the current run's, under mu */
    void            *arg;
    int              n; /* threads of the current run, the caller included */
} g_pool = {
    .busy = PTHREAD_MUTEX_INITIALIZER,
    .mu   = PTHREAD_MUTEX_INITIALIZER,
    .go   = PTHREAD_COND_INITIALIZER,
    .done = PTHREAD_COND_INITIALIZER,
};
static pthread_once_t g_pool_once = PTHREAD_ONCE_INIT;
static atomic_int     g_spin_us; /* lmp_kernels_set_spin_us */

void lmp_kernels_set_spin_us(int us) {
    atomic_store(&g_spin_us, us < 0 ? 0 : us > 100000 ? 100000 : us);
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Watch the pool for up to the spin window: until the run counter leaves `seen` (a worker
 * waiting for work, seen != 0 ignored when waiting_done) or no worker is busy (the caller,
 * waiting_done). Returns early on either; the caller then takes the lock as it would have. */
static void spin(bool waiting_done, uint64_t seen) {
    const int us = atomic_load_explicit(&g_spin_us, memory_order_relaxed);
    if (us <= 0) return;
    const int64_t end = now_ns() + (int64_t)us * 1000;
    for (;;) {
        for (int i = 0; i < 64; i++) {
            if (waiting_done ? atomic_load_explicit(&g_pool.n_busy, memory_order_acquire) == 0
                             : atomic_load_explicit(&g_pool.gen, memory_order_acquire) != seen)
                return;
            cpu_relax();
        }
        if (now_ns() >= end) return;
        sched_yield(); /* a core shared with other work: let it run while we watch */
    }
}

static void *pool_main(void *p) {
    const int tid  = (int)(intptr_t)p;
    uint64_t  seen = 0;
    for (;;) {
        spin(false, seen);
        pthread_mutex_lock(&g_pool.mu);
        while (atomic_load(&g_pool.gen) == seen) pthread_cond_wait(&g_pool.go, &g_pool.mu);
        seen = atomic_load(&g_pool.gen);
        if (tid >= g_pool.n) { /* not in this run */
            pthread_mutex_unlock(&g_pool.mu);
            continue;
        }
        lmp_par_fn *fn  = g_pool.fn;
        void       *arg = g_pool.arg;
        const int   n   = g_pool.n;
        pthread_mutex_unlock(&g_pool.mu);
        fn(arg, tid, n);
        /* the last one out wakes the caller if it sleeps: it checks n_busy under mu before
         * it waits, so taking mu here orders the two */
        if (atomic_fetch_sub_explicit(&g_pool.n_busy, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&g_pool.mu);
            pthread_cond_signal(&g_pool.done);
            pthread_mutex_unlock(&g_pool.mu);
        }
    }
    return NULL;
}

static void pool_start(void) {
    const int      want = lmp_kernels_threads() - 1;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    for (int t = 1; t <= want; t++) {
        pthread_t th;
        if (pthread_create(&th, &attr, pool_main, (void *)(intptr_t)t) != 0) break;
        g_pool.n_workers = t;
    }
    pthread_attr_destroy(&attr);
}

void lmp_cpu_parallel(int n_threads, lmp_par_fn *fn, void *arg) {
    if (n_threads <= 1) {
        fn(arg, 0, 1);
        return;
    }
    if (n_threads > 256) n_threads = 256;
    pthread_once(&g_pool_once, pool_start);
    if (n_threads - 1 > g_pool.n_workers || pthread_mutex_trylock(&g_pool.busy) != 0) {
        run_fresh(n_threads, fn, arg);
        return;
    }
    pthread_mutex_lock(&g_pool.mu);
    g_pool.fn  = fn;
    g_pool.arg = arg;
    g_pool.n   = n_threads;
    atomic_store(&g_pool.n_busy, n_threads - 1);
    atomic_fetch_add_explicit(&g_pool.gen, 1, memory_order_release);
    pthread_cond_broadcast(&g_pool.go);
    pthread_mutex_unlock(&g_pool.mu);
    fn(arg, 0, n_threads);
    spin(true, 0);
    pthread_mutex_lock(&g_pool.mu);
    while (atomic_load(&g_pool.n_busy) > 0) pthread_cond_wait(&g_pool.done, &g_pool.mu);
    pthread_mutex_unlock(&g_pool.mu);
    pthread_mutex_unlock(&g_pool.busy);
}

void lmp_kernels_parallel(int n_threads, lmp_kernels_par_fn *fn, void *arg) {
    lmp_cpu_parallel(n_threads, fn, arg);
}
