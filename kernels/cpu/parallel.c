/*  parallel - see parallel.h (plain C; lives in cpu/ because only the CPU variants use it) */
#include "kernels/cpu/parallel.h"
#include "kernels/cpu/cpu_variants.h"   /* defines: lmp_cpu_threads() */

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

int lmp_cpu_threads(void) {
    const char *e = getenv("LMP_THREADS");
    if (e) {
        long v = strtol(e, NULL, 10);
        if (v >= 1 && v <= 256) return (int) v;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 256 ? 256 : (int) n;
}

struct par_job { lmp_par_fn *fn; void *arg; int tid, n; };

static void *par_main(void *p) {
    struct par_job *j = p;
    j->fn(j->arg, j->tid, j->n);
    return NULL;
}

void lmp_cpu_parallel(int n_threads, lmp_par_fn *fn, void *arg) {
    if (n_threads <= 1) { fn(arg, 0, 1); return; }
    if (n_threads > 256) n_threads = 256;
    pthread_t th[256];
    struct par_job jobs[256];
    int started[256] = {0};
    for (int t = 1; t < n_threads; t++) {
        jobs[t] = (struct par_job){ fn, arg, t, n_threads };
        started[t] = pthread_create(&th[t], NULL, par_main, &jobs[t]) == 0;
    }
    fn(arg, 0, n_threads);
    for (int t = 1; t < n_threads; t++) {
        if (started[t]) pthread_join(th[t], NULL);
        else fn(arg, t, n_threads);
    }
}
