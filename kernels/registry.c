/*  registry - fills the kernel tables: references first, then overrides
 *
 *  Tables, each the one before with more slots overridden:
 *      ref     every slot the scalar reference (kernels/ref/)
 *      blas    + sgemm by OpenBLAS (the GEMMs the stages ran before the table had them)
 *      avx2    blas + the AVX2 + FMA variants (kernels/cpu/<op>_avx2.c), where the CPU
 *              has them (every slot the avx512 table overrides; aq_matvec_pk none: the
 *              transformer then runs aq_matvec)
 *      avx512  blas + the AVX-512 variants (kernels/cpu/<op>_avx512.c), where the CPU
 *              has them (aq_matvec_pk: with VBMI too, else none)
 *  "best" is avx512, else avx2, else blas: the best this CPU runs. All are host tables
 *  (device CPU, host memory slots).
 */
#include "kernels/kernels.h"
#include "kernels/cpu/cpu_variants.h" /* defines: the optimized CPU variants */
#include "base/log.h"                 /* defines: lmp_log_warn */

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

void lmp_kernels_init_ref(struct lmp_kernels *k) {
    *k = (struct lmp_kernels){
        .name          = "ref",
        .device        = LMP_DEVICE_CPU,
        .mem_alloc     = lmp_mem_alloc_host,
        .mem_free      = lmp_mem_free_host,
        .mem_copy      = lmp_mem_copy_host,
        .sgemm         = lmp_sgemm_ref,
        .dequant_row   = lmp_dequant_row_ref,
        .gram_acc      = lmp_gram_acc_ref,
        .kmeans_assign = lmp_kmeans_assign_ref,
        .kmeans_update = lmp_kmeans_update_ref,
        .aq_beam       = lmp_aq_beam_ref,
        .aq_grad       = lmp_aq_grad_ref,
        .aq_grad_dw    = lmp_aq_grad_dw_ref,
        .aq_decode     = lmp_aq_decode_ref,
        .aq_matvec     = lmp_aq_matvec_ref,
        .qmatvec       = lmp_qmatvec_ref,
        .aq_matvec_pk  = lmp_aq_matvec_pk_ref,
        .attn_row      = lmp_attn_row_ref,
    };
}

static void init_blas(struct lmp_kernels *k) {
    lmp_kernels_init_ref(k); /* every slot filled first */
    k->name  = "blas";
    k->sgemm = lmp_sgemm_blas;
    lmp_blas_one_thread(); /* thread invariance: see kernels/cpu/gemm_blas.c */
}

static bool have_avx512(void) {
#ifdef LMP_HAVE_AVX512
    return lmp_cpu_has_avx512();
#else
    return false;
#endif
}

static bool have_avx2(void) {
#ifdef LMP_HAVE_AVX2
    return lmp_cpu_has_avx2();
#else
    return false;
#endif
}

static void init_avx2(struct lmp_kernels *k) {
    init_blas(k);
#ifdef LMP_HAVE_AVX2
    k->name          = "avx2";
    k->dequant_row   = lmp_dequant_row_avx2;
    k->gram_acc      = lmp_gram_acc_avx2;
    k->kmeans_assign = lmp_kmeans_assign_avx2;
    k->kmeans_update = lmp_kmeans_update_avx2;
    k->aq_beam       = lmp_aq_beam_avx2;
    k->aq_grad       = lmp_aq_grad_avx2;
    k->aq_decode     = lmp_aq_decode_avx2;
    k->aq_matvec     = lmp_aq_matvec_avx2;
    k->qmatvec       = lmp_qmatvec_avx2;
    k->aq_matvec_pk  = NULL; /* no byte permutes: aq_matvec's gathers */
    k->attn_row      = NULL; /* the transformer's sgemms */
#endif
}

static void init_avx512(struct lmp_kernels *k) {
    init_blas(k);
#ifdef LMP_HAVE_AVX512
    k->name = "avx512";
    /* variants register here: k->op = lmp_op_avx512; */
    k->dequant_row   = lmp_dequant_row_avx512;
    k->gram_acc      = lmp_gram_acc_avx512;
    k->kmeans_assign = lmp_kmeans_assign_avx512;
    k->kmeans_update = lmp_kmeans_update_avx512;
    k->aq_beam       = lmp_aq_beam_avx512;
    k->aq_grad       = lmp_aq_grad_avx512;
    k->aq_decode     = lmp_aq_decode_avx512;
    k->aq_matvec     = lmp_aq_matvec_avx512;
    k->qmatvec       = lmp_qmatvec_avx512;
    k->aq_matvec_pk  = lmp_cpu_has_avx512vbmi() ? lmp_aq_matvec_pk_avx512 : NULL;
    k->attn_row      = lmp_attn_row_avx512;
#endif
}

void lmp_kernels_init_best(struct lmp_kernels *k) {
    if (have_avx512())
        init_avx512(k);
    else if (have_avx2())
        init_avx2(k);
    else
        init_blas(k);
}

const char *const *lmp_kernels_names(void) {
    static const char *const with_avx512[] = {"ref", "blas", "avx2", "avx512", NULL};
    static const char *const with_avx2[]   = {"ref", "blas", "avx2", NULL};
    static const char *const without[]     = {"ref", "blas", NULL};
    return have_avx512() && have_avx2() ? with_avx512 : have_avx2() ? with_avx2 : without;
}

bool lmp_kernels_init_named(struct lmp_kernels *k, const char *name) {
    if (strcmp(name, "ref") == 0)
        lmp_kernels_init_ref(k);
    else if (strcmp(name, "best") == 0)
        lmp_kernels_init_best(k);
    else if (strcmp(name, "blas") == 0)
        init_blas(k);
    else if (strcmp(name, "avx2") == 0 && have_avx2())
        init_avx2(k);
    else if (strcmp(name, "avx512") == 0 && have_avx512())
        init_avx512(k);
    else
        return false;
    return true;
}

static struct lmp_kernels g_table;
static pthread_once_t     g_once = PTHREAD_ONCE_INIT;
static bool               g_selected;

bool lmp_kernels_select(const char *name) {
    struct lmp_kernels k;
    if (!lmp_kernels_init_named(&k, name)) return false;
    g_table    = k;
    g_selected = true;
    return true;
}

static void select_default(void) {
    if (g_selected) return;
    const char *e = getenv("LMP_KERNELS");
    if (e && *e && lmp_kernels_init_named(&g_table, e)) return;
    if (e && *e)
        lmp_log_warn("LMP_KERNELS='%s' is not a kernel table this CPU runs (ref, blas%s%s, "
                     "best); using best",
                     e, have_avx2() ? ", avx2" : "", have_avx512() ? ", avx512" : "");
    lmp_kernels_init_best(&g_table);
}

const struct lmp_kernels *lmp_kernels_get(void) {
    pthread_once(&g_once, select_default);
    return &g_table;
}

bool lmp_cpu_has_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

bool lmp_cpu_has_avx512vbmi(void) {
    __builtin_cpu_init();
    return lmp_cpu_has_avx512() && __builtin_cpu_supports("avx512vbmi");
}

bool lmp_cpu_has_avx512(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl");
}
