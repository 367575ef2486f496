/*  gram_acc_avx2 - h += x^T x through OpenBLAS dsyrk on blocks converted to double, as
 *  gram_acc_avx512.c (the conversion 8 floats per step): the same dsyrk calls on the
 *  same doubles, so the same bits as the AVX-512 variant.
 *
 *  Converting to double keeps every product exact (as in the reference) while the
 *  BLAS does the O(n_tok n_in^2) work; only the upper triangle is updated by dsyrk and
 *  mirrored at the end (h is symmetric on entry).
 *  CPU reference: kernels/ref/gram_acc_ref.c
 */
#include "kernels/cpu/cpu_variants.h"

#include <cblas.h>
#include <immintrin.h>
#include <stdlib.h>

enum { GRAM_BLOCK = 256 }; /* tokens per dsyrk call: 256 x n_in doubles stay in L2 for n_in <= 1k */

void lmp_gram_acc_avx2(double *h, const float *x, int64_t n_tok, int64_t n_in) {
    struct lmp_scratch_mark mark = lmp_scratch_mark();
    double                 *xd   = lmp_scratch_alloc((size_t)(GRAM_BLOCK * n_in) * sizeof(double));
    if (xd == NULL) {
        lmp_scratch_reset(mark);
        lmp_gram_acc_ref(h, x, n_tok, n_in);
        return;
    }
    for (int64_t t0 = 0; t0 < n_tok; t0 += GRAM_BLOCK) {
        const int64_t nb = n_tok - t0 < GRAM_BLOCK ? n_tok - t0 : GRAM_BLOCK, n = nb * n_in;
        const float  *xs = x + t0 * n_in;
        int64_t       i  = 0;
        for (; i + 8 <= n; i += 8) {
            const __m256 v = _mm256_loadu_ps(xs + i);
            _mm256_storeu_pd(xd + i, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
            _mm256_storeu_pd(xd + i + 4, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
        }
        for (; i < n; i++) xd[i] = (double)xs[i];
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (blasint)n_in, (blasint)nb, 1.0, xd,
                    (blasint)n_in, 1.0, h, (blasint)n_in);
    }
    for (int64_t a = 0; a < n_in; a++)
        for (int64_t b = a + 1; b < n_in; b++) h[b * n_in + a] = h[a * n_in + b];
    lmp_scratch_reset(mark);
}
