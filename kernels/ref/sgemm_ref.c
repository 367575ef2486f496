/*  sgemm_ref - C (m, n) = alpha op(A) op(B) + beta C, row-major (the definition)
 *
 *  A plain triple loop: each C element is the sum over p of op(A)[i, p] op(B)[p, j] in
 *  order p = 0 .. k-1, accumulated in double (so the reference is closer to the exact
 *  product than any fp32 BLAS), then alpha * sum + beta * C[i, j] rounded to float once.
 *  beta == 0 writes C without reading it (BLAS semantics: old NaNs do not propagate).
 *  op(A)[i, p] = A[i lda + p], or A[p lda + i] for LMP_TRANS; op(B)[p, j] = B[p ldb + j],
 *  or B[j ldb + p] for LMP_TRANS.
 *  Variants: kernels/cpu/gemm_blas.c (cblas_sgemm).
 */
#include "kernels/kernels.h"

void lmp_sgemm_ref(enum lmp_trans ta, enum lmp_trans tb, int64_t m, int64_t n, int64_t k,
                   float alpha, const float *a, int64_t lda, /* op(A) (m, k) */
                   const float *b, int64_t ldb,              /* op(B) (k, n) */
                   float beta, float *c, int64_t ldc) {      /* C (m, n) in/out */
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double acc = 0.0;
            for (int64_t p = 0; p < k; p++) {
                const float av = ta == LMP_TRANS ? a[p * lda + i] : a[i * lda + p];
                const float bv = tb == LMP_TRANS ? b[j * ldb + p] : b[p * ldb + j];
                acc += (double)av * (double)bv;
            }
            const double prev = beta == 0.0f ? 0.0 : (double)beta * c[i * ldc + j];
            c[i * ldc + j]    = (float)((double)alpha * acc + prev);
        }
}
