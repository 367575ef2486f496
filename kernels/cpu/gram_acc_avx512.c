/*  gram_acc_avx512 - h += x^T x through OpenBLAS dsyrk on blocks converted to double
 *
 *  Converting to double keeps every product exact (as in the reference) while the
 *  BLAS does the O(n_tok n_in^2) work; only the upper triangle is updated by dsyrk and
 *  mirrored at the end (h is symmetric on entry).
 *  CPU reference: kernels/ref/gram_acc_ref.c
 */
#include "kernels/cpu/cpu_variants.h"

#include <cblas.h>
#include <stdlib.h>

enum { GRAM_BLOCK = 256 }; /* tokens per dsyrk call: 256 x n_in doubles stay in L2 for n_in <= 1k */

void lmp_gram_acc_avx512(double *h, const float *x, int64_t n_tok, int64_t n_in) {
    struct lmp_scratch_mark mark = lmp_scratch_mark();
    double                 *xd   = lmp_scratch_alloc((size_t)(GRAM_BLOCK * n_in) * sizeof(double));
    if (xd == NULL) {
        lmp_scratch_reset(mark);
        lmp_gram_acc_ref(h, x, n_tok, n_in);
        return;
    }
    for (int64_t t0 = 0; t0 < n_tok; t0 += GRAM_BLOCK) {
        int64_t nb = n_tok - t0 < GRAM_BLOCK ? n_tok - t0 : GRAM_BLOCK;
        for (int64_t i = 0; i < nb * n_in; i++) xd[i] = (double)x[t0 * n_in + i];
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (blasint)n_in, (blasint)nb, 1.0, xd,
                    (blasint)n_in, 1.0, h, (blasint)n_in);
    }
    for (int64_t a = 0; a < n_in; a++)
        for (int64_t b = a + 1; b < n_in; b++) h[b * n_in + a] = h[a * n_in + b];
    lmp_scratch_reset(mark);
}
