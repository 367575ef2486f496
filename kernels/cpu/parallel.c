/*  parallel - see parallel.h (plain C; lives in cpu/ because only the CPU variants use it)
 *
 *  One pool per process: lmp_kernels_threads() - 1 threads, started on the first parallel
 *  call and kept (parked on a condition variable) until the process exits. One fork/join
 *  runs on it at a time; a call that finds it busy (another in-process worker's kernel,
 *  or a nested call) or asks for more threads than it has gets threads of its own for
 *  that call, as every call did before the pool, so a call never waits for another.
 */
#include "kernels/cpu/parallel.h"
#include "kernels/cpu/cpu_variants.h" /* defines: lmp_cpu_threads() */

#include <pthread.h>
#include <stdbool.h>

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
    pthread_mutex_t busy; /* held by the call that runs on the pool */
    pthread_mutex_t mu;
    pthread_cond_t  go, done;
    int             n_workers; /* started threads (tids 1..n_workers) */
    uint64_t        gen;       /* bumped per run */
    int             n_busy;    /* workers still inside the current run */
    lmp_par_fn     *fn;
    void           *arg;
    int             n; /* threads of the current run, the caller included */
} g_pool = {
    .busy = PTHREAD_MUTEX_INITIALIZER,
    .mu   = PTHREAD_MUTEX_INITIALIZER,
    .go   = PTHREAD_COND_INITIALIZER,
    .done = PTHREAD_COND_INITIALIZER,
};
static pthread_once_t g_pool_once = PTHREAD_ONCE_INIT;

static void *pool_main(void *p) {
    const int tid  = (int)(intptr_t)p;
    uint64_t  seen = 0;
    pthread_mutex_lock(&g_pool.mu);
    for (;;) {
        while (g_pool.gen == seen) pthread_cond_wait(&g_pool.go, &g_pool.mu);
        seen = g_pool.gen;
        if (tid >= g_pool.n) continue; /* not in this run */
        lmp_par_fn *fn  = g_pool.fn;
        void       *arg = g_pool.arg;
        const int   n   = g_pool.n;
        pthread_mutex_unlock(&g_pool.mu);
        fn(arg, tid, n);
        pthread_mutex_lock(&g_pool.mu);
        if (--g_pool.n_busy == 0) pthread_cond_signal(&g_pool.done);
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
    g_pool.fn     = fn;
    g_pool.arg    = arg;
    g_pool.n      = n_threads;
    g_pool.n_busy = n_threads - 1;
    g_pool.gen++;
    pthread_cond_broadcast(&g_pool.go);
    pthread_mutex_unlock(&g_pool.mu);
    fn(arg, 0, n_threads);
    pthread_mutex_lock(&g_pool.mu);
    while (g_pool.n_busy > 0) pthread_cond_wait(&g_pool.done, &g_pool.mu);
    pthread_mutex_unlock(&g_pool.mu);
    pthread_mutex_unlock(&g_pool.busy);
}
