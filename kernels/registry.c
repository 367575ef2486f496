/*  registry - fills the kernel table: references first, then overrides */
#include "kernels/kernels.h"
#include "kernels/cpu/cpu_variants.h"   /* defines: the optimized CPU variants */

#include <string.h>

void lmp_kernels_init_ref(struct lmp_kernels *k) {
    *k = (struct lmp_kernels){
        .name        = "ref",
        .device      = LMP_DEVICE_CPU,
        .dequant_row = lmp_dequant_row_ref,
        .gram_acc      = lmp_gram_acc_ref,
        .kmeans_assign = lmp_kmeans_assign_ref,
        .kmeans_update = lmp_kmeans_update_ref,
        .aq_beam       = lmp_aq_beam_ref,
        .aq_grad       = lmp_aq_grad_ref,
        .aq_grad_dw    = lmp_aq_grad_dw_ref,
        .aq_decode     = lmp_aq_decode_ref,
        .aq_matvec     = lmp_aq_matvec_ref,
    };
}

void lmp_kernels_init_best(struct lmp_kernels *k) {
    lmp_kernels_init_ref(k);   /* every slot filled first */
    k->name = "best";
#ifdef LMP_HAVE_AVX512
    if (lmp_cpu_has_avx512()) {
        k->name = "avx512";
        /* variants register here: k->op = lmp_op_avx512; */
        k->dequant_row = lmp_dequant_row_avx512;
        k->gram_acc      = lmp_gram_acc_avx512;
        k->kmeans_assign = lmp_kmeans_assign_avx512;
        k->kmeans_update = lmp_kmeans_update_avx512;
        k->aq_beam       = lmp_aq_beam_avx512;
        k->aq_grad       = lmp_aq_grad_avx512;
        k->aq_decode     = lmp_aq_decode_avx512;
        k->aq_matvec     = lmp_aq_matvec_avx512;
    }
#endif
}

static struct lmp_kernels g_table;
static bool               g_ready;

bool lmp_kernels_select(const char *name) {
    if (strcmp(name, "ref") == 0) lmp_kernels_init_ref(&g_table);
    else if (strcmp(name, "best") == 0) lmp_kernels_init_best(&g_table);
    else return false;
    g_ready = true;
    return true;
}

const struct lmp_kernels *lmp_kernels_get(void) {
    if (!g_ready) lmp_kernels_select("best");
    return &g_table;
}

bool lmp_cpu_has_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

bool lmp_cpu_has_avx512(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl");
}
