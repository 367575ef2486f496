/*  cpu_variants - declarations of the optimized CPU kernels (same signatures as the
 *  references in kernels/kernels.h). Each file in kernels/cpu/ is compiled with the
 *  instruction-set flags its suffix names and is only called after a cpuid check.
 */
#ifndef LMP_KERNELS_CPU_VARIANTS_H
#define LMP_KERNELS_CPU_VARIANTS_H

#include "kernels/kernels.h"

lmp_sgemm_fn       lmp_sgemm_blas;            /* gemm_blas.c: OpenBLAS cblas_sgemm */
void               lmp_blas_one_thread(void); /* gemm_blas.c: OpenBLAS at one thread, once */
lmp_dequant_row_fn lmp_dequant_row_avx512;    /* dequant_avx512.c (+F16C) */

/* AQLM ops (kernels/cpu/<op>_avx512.c). */
lmp_gram_acc_fn      lmp_gram_acc_avx512;
lmp_kmeans_assign_fn lmp_kmeans_assign_avx512;
lmp_kmeans_update_fn lmp_kmeans_update_avx512;
lmp_aq_beam_fn       lmp_aq_beam_avx512;
lmp_aq_grad_fn       lmp_aq_grad_avx512;
lmp_aq_decode_fn     lmp_aq_decode_avx512;
lmp_aq_matvec_fn     lmp_aq_matvec_avx512;
lmp_qmatvec_fn       lmp_qmatvec_avx512;
/* 24-bit tables on packed codes: AVX-512 VBMI as well (lmp_cpu_has_avx512vbmi) */
lmp_aq_matvec_pk_fn lmp_aq_matvec_pk_avx512;
bool                lmp_cpu_has_avx512vbmi(void); /* registry.c */
lmp_attn_row_fn     lmp_attn_row_avx512;

/* AVX2 + FMA variants (kernels/cpu/<op>_avx2.c), for CPUs without AVX-512. */
lmp_dequant_row_fn   lmp_dequant_row_avx2; /* dequant_avx2.c (no F16C) */
lmp_gram_acc_fn      lmp_gram_acc_avx2;
lmp_kmeans_assign_fn lmp_kmeans_assign_avx2;
lmp_kmeans_update_fn lmp_kmeans_update_avx2;
lmp_aq_beam_fn       lmp_aq_beam_avx2;
lmp_aq_grad_fn       lmp_aq_grad_avx2;
lmp_aq_decode_fn     lmp_aq_decode_avx2;
lmp_aq_matvec_fn     lmp_aq_matvec_avx2;
lmp_qmatvec_fn       lmp_qmatvec_avx2;

/* Threads the CPU variants split a call over: the process budget, lmp_kernels_threads()
 * ($LMP_THREADS or the online CPUs unless a program fixed it). */
int lmp_cpu_threads(void);

#endif /* LMP_KERNELS_CPU_VARIANTS_H */
