/*  gemm_blas - the OpenBLAS-backed slots of the CPU tables, and the process's thread budget
 *
 *  lmp_sgemm_blas calls cblas_sgemm with the arguments the stages pass (row-major, the same
 *  transposes, sizes, leading dimensions, alpha and beta); a big call is cut into fixed
 *  blocks of rows of C (SGEMM_ROWS each, by shape only), one cblas_sgemm per block.
 *
 *  Thread invariance: OpenBLAS always runs one thread. Its results depend on its thread
 *  count (the threaded split, and the sgemm_direct and small-matrix paths it picks by the
 *  CPUs available), so with OpenBLAS at the process budget `--threads 1` and `--threads 2`
 *  gave different activations and artifacts. Parallelism comes from our own threads
 *  instead: the row blocks of a big sgemm run on the kernel pool (kernels/cpu/parallel.c),
 *  and which blocks there are never depends on the thread count, so every result is the
 *  same bits for every budget (and, as far as tested, the bits OpenBLAS gave at one
 *  thread before: a row of C does not depend on the other rows of its call).
 *
 *  Threads: this file is the only caller of openblas_set_num_threads. The budget is fixed
 *  once (lmp_kernels_set_threads: first call wins). A caller whose own threads run GEMMs
 *  concurrently (the transformer's attention) brackets them with a counted serial section;
 *  inside one, lmp_sgemm_blas runs its row blocks on the calling thread.
 *  CPU reference: kernels/ref/sgemm_ref.c
 */
#include "kernels/cpu/cpu_variants.h"
#include "kernels/cpu/parallel.h"

#include <cblas.h> /* defines: cblas_sgemm, openblas_set_num_threads */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

enum {
    SGEMM_ROWS  = 256,     /* rows of C per block of a big call */
    SGEMM_SPLIT = 1 << 21, /* m n k from which a call is cut into blocks */
};

static int g_serial; /* open serial sections (below) */

static void sgemm_one(enum lmp_trans ta, enum lmp_trans tb, int64_t m, int64_t n, int64_t k,
                      float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                      float beta, float *c, int64_t ldc) {
    cblas_sgemm(CblasRowMajor, ta == LMP_TRANS ? CblasTrans : CblasNoTrans,
                tb == LMP_TRANS ? CblasTrans : CblasNoTrans, (blasint)m, (blasint)n, (blasint)k,
                alpha, a, (blasint)lda, b, (blasint)ldb, beta, c, (blasint)ldc);
}

struct sgemm_job {
    enum lmp_trans ta, tb;
    int64_t        m, n, k, lda, ldb, ldc, n_blk;
    float          alpha, beta;
    const float   *a, *b;
    float         *c;
};

static void sgemm_blocks(void *arg, int tid, int n_threads) {
    const struct sgemm_job *j = arg;
    int64_t                 lo, hi;
    lmp_par_range(j->n_blk, tid, n_threads, &lo, &hi);
    for (int64_t blk = lo; blk < hi; blk++) {
        const int64_t r0 = blk * SGEMM_ROWS;
        const int64_t m  = j->m - r0 < SGEMM_ROWS ? j->m - r0 : SGEMM_ROWS;
        const float  *a  = j->ta == LMP_TRANS ? j->a + r0 : j->a + r0 * j->lda;
        sgemm_one(j->ta, j->tb, m, j->n, j->k, j->alpha, a, j->lda, j->b, j->ldb, j->beta,
                  j->c + r0 * j->ldc, j->ldc);
    }
}

void lmp_sgemm_blas(enum lmp_trans ta, enum lmp_trans tb, int64_t m, int64_t n, int64_t k,
                    float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                    float beta, float *c, int64_t ldc) {
    /* the blocks depend on the shape only; the threads only share them out */
    if (m < 2 * SGEMM_ROWS || (double)m * (double)n * (double)k < SGEMM_SPLIT) {
        sgemm_one(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    struct sgemm_job j  = {.ta    = ta,
                           .tb    = tb,
                           .m     = m,
                           .n     = n,
                           .k     = k,
                           .lda   = lda,
                           .ldb   = ldb,
                           .ldc   = ldc,
                           .n_blk = (m + SGEMM_ROWS - 1) / SGEMM_ROWS,
                           .alpha = alpha,
                           .beta  = beta,
                           .a     = a,
                           .b     = b,
                           .c     = c};
    int              nt = __atomic_load_n(&g_serial, __ATOMIC_RELAXED) > 0 ? 1 : lmp_cpu_threads();
    if (nt > j.n_blk) nt = (int)j.n_blk;
    lmp_cpu_parallel(nt, sgemm_blocks, &j);
}

/* ---- the thread budget ---------------------------------------------------------------- */

static pthread_once_t g_one_once = PTHREAD_ONCE_INIT;

static void set_one(void) {
    openblas_set_num_threads(1);
}

/* OpenBLAS runs one thread whatever the budget (thread invariance, above); every table
 * with a BLAS slot calls this when it is made, before any kernel reaches OpenBLAS */
void lmp_blas_one_thread(void) {
    pthread_once(&g_one_once, set_one);
}

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static int             g_threads; /* the budget; 0 until fixed */

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
        lmp_blas_one_thread();
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

/* OpenBLAS is at one thread already; a section only keeps lmp_sgemm_blas's blocks on the
 * calling thread (the caller's threads own the cores). */
void lmp_kernels_blas_serial_begin(void) {
    lmp_blas_one_thread();
    __atomic_add_fetch(&g_serial, 1, __ATOMIC_RELAXED);
}

void lmp_kernels_blas_serial_end(void) {
    __atomic_sub_fetch(&g_serial, 1, __ATOMIC_RELAXED);
}

const char *lmp_kernels_blas_better_core(void) {
    const char *set = getenv("OPENBLAS_CORETYPE"), *keep = getenv("LMP_BLAS_CORE");
    if ((set && *set) || (keep && strcmp(keep, "keep") == 0)) return NULL;
    const char *core = openblas_get_corename();
    if (core == NULL) return NULL;
    static const char *const avx512_cores[] = {"skylakex", "cooperlake", "sapphirerapids"};
    static const char *const weak_cores[]   = {"prescott", "core2",       "penryn", "dunnington",
                                               "nehalem",  "sandybridge", "atom",   "unknown"};
    __builtin_cpu_init();
    const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
                        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
                        __builtin_cpu_supports("avx512vl");
    bool weak = false;
    for (size_t i = 0; i < sizeof(weak_cores) / sizeof(weak_cores[0]); i++)
        if (strcasecmp(core, weak_cores[i]) == 0) weak = true;
    if (avx512) {
        for (size_t i = 0; i < sizeof(avx512_cores) / sizeof(avx512_cores[0]); i++)
            if (strcasecmp(core, avx512_cores[i]) == 0) return NULL;
        if (weak || strcasecmp(core, "haswell") == 0 || strcasecmp(core, "zen") == 0)
            return "SkylakeX";
        return NULL;
    }
    if (weak && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
    return NULL;
}
