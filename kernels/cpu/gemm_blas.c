/*  gemm_blas - the OpenBLAS-backed slots of the CPU tables, and the process's thread budget
 *
 *  lmp_sgemm_blas calls cblas_sgemm with exactly the arguments the stages passed before
 *  GEMMs went through the table (row-major, the same transposes, sizes, leading
 *  dimensions, alpha and beta), so routing changes no bit of any result.
 *
 *  Threads: this file is the only caller of openblas_set_num_threads. OpenBLAS 0.3.21 has
 *  one thread count per process (no per-call or per-thread setting), so the budget is
 *  fixed once (lmp_kernels_set_threads: first call wins) and a caller's own threads that
 *  run GEMMs concurrently ask for one-thread GEMMs with a counted serial section instead
 *  of setting and restoring the count themselves (which, from several in-process workers,
 *  raced and could leave the wrong count behind).
 *  CPU reference: kernels/ref/sgemm_ref.c
 */
#include "kernels/cpu/cpu_variants.h"

#include <cblas.h> /* defines: cblas_sgemm, openblas_set_num_threads */
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

void lmp_sgemm_blas(enum lmp_trans ta, enum lmp_trans tb, int64_t m, int64_t n, int64_t k,
                    float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                    float beta, float *c, int64_t ldc) {
    cblas_sgemm(CblasRowMajor, ta == LMP_TRANS ? CblasTrans : CblasNoTrans,
                tb == LMP_TRANS ? CblasTrans : CblasNoTrans, (blasint)m, (blasint)n, (blasint)k,
                alpha, a, (blasint)lda, b, (blasint)ldb, beta, c, (blasint)ldc);
}

/* ---- the thread budget ---------------------------------------------------------------- */

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static int             g_threads;      /* the budget; 0 until fixed */
static int             g_blas_threads; /* OpenBLAS's count outside serial sections */
static int             g_serial;       /* open serial sections */

static int default_threads(void) {
    const char *e = getenv("LMP_THREADS");
    if (e) {
        long v = strtol(e, NULL, 10);
        if (v >= 1 && v <= 256) return (int)v;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 256 ? 256 : (int)n;
}

int lmp_kernels_set_threads(int n) {
    pthread_mutex_lock(&g_mu);
    if (g_threads == 0) {
        if (n > 256) n = 256;
        g_threads = n > 0 ? n : default_threads();
        /* an explicit count is OpenBLAS's too; the default leaves OpenBLAS's own
         * (OPENBLAS_NUM_THREADS or the online CPUs) as it was */
        if (n > 0)
            g_blas_threads = n;
        else if (g_serial == 0)
            g_blas_threads = openblas_get_num_threads();
        /* (inside a serial section serial_begin recorded it) */
        if (n > 0 && g_serial == 0) openblas_set_num_threads(n);
    }
    int v = g_threads;
    pthread_mutex_unlock(&g_mu);
    return v;
}

int lmp_kernels_threads(void) {
    pthread_mutex_lock(&g_mu);
    int v = g_threads;
    pthread_mutex_unlock(&g_mu);
    return v > 0 ? v : lmp_kernels_set_threads(0);
}

void lmp_kernels_blas_serial_begin(void) {
    pthread_mutex_lock(&g_mu);
    if (g_serial++ == 0) {
        if (g_blas_threads == 0) g_blas_threads = openblas_get_num_threads();
        openblas_set_num_threads(1);
    }
    pthread_mutex_unlock(&g_mu);
}

void lmp_kernels_blas_serial_end(void) {
    pthread_mutex_lock(&g_mu);
    if (g_serial > 0 && --g_serial == 0) openblas_set_num_threads(g_blas_threads);
    pthread_mutex_unlock(&g_mu);
}
