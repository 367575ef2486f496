/*  aq_matvec_avx512 - y = W_hat x through lookup tables (the fast CPU decode path)
 *
 *  For each input vector, table[(j, m), k] = cb_m[k] . x_j is built once (n_grp M K g
 *  FMAs, 16 entries per vector with the codebook transposed to (g, K)); then each
 *  output is scale[o] times the sum of the n_grp M table entries its codes select,
 *  gathered 16 at a time. For 2x8g8 this replaces n_in multiply-adds per output by
 *  n_in/4 lookups. Codebooks with more than 4096 entries (1x16) make the table larger
 *  than the weights: they take the reference.
 *  CPU reference: kernels/ref/aq_matvec_ref.c
 */
#include "kernels/cpu/cpu_variants.h"
#include "base/status.h" /* defines: LMP_ENOMEM */

#include <immintrin.h>
#include <stdlib.h>

int lmp_aq_matvec_avx512(float *y, const float *x, int64_t n_batch, const uint16_t *codes,
                         const float *cb, const float *scale, const struct lmp_aq_shape *s) {
    const int64_t K = s->K, g = s->g, M = s->M, n_grp = s->n_in / g, P = n_grp * M;
    if (K > 4096 || K % 16 != 0) return lmp_aq_matvec_ref(y, x, n_batch, codes, cb, scale, s);
    struct lmp_scratch_mark mark = lmp_scratch_mark();
    float *cT  = lmp_scratch_alloc((size_t)(M * g * K) * sizeof(float)); /* (M, g, K) */
    float *tab = lmp_scratch_alloc((size_t)(P * K) * sizeof(float));     /* (n_grp, M, K) */
    if (cT == NULL || tab == NULL) {
        lmp_scratch_reset(mark);
        return LMP_ENOMEM;
    }
    for (int64_t m = 0; m < M; m++)
        for (int64_t k = 0; k < K; k++)
            for (int64_t t = 0; t < g; t++) cT[(m * g + t) * K + k] = cb[(m * K + k) * g + t];
    const __m512i step =
        _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                           _mm512_set1_epi32((int)K));
    const int64_t P16 = P / 16 * 16;
    for (int64_t b = 0; b < n_batch; b++) {
        const float *xb = x + b * s->n_in;
        for (int64_t j = 0; j < n_grp; j++)
            for (int64_t m = 0; m < M; m++) {
                float       *tp = tab + (j * M + m) * K;
                const float *cm = cT + m * g * K;
                for (int64_t k = 0; k < K; k += 16) {
                    __m512 acc = _mm512_setzero_ps();
                    for (int64_t t = 0; t < g; t++)
                        acc = _mm512_fmadd_ps(_mm512_set1_ps(xb[j * g + t]),
                                              _mm512_loadu_ps(cm + t * K + k), acc);
                    _mm512_storeu_ps(tp + k, acc);
                }
            }
        for (int64_t o = 0; o < s->n_out; o++) {
            const uint16_t *co  = codes + o * P;
            __m512          acc = _mm512_setzero_ps();
            for (int64_t p = 0; p < P16; p += 16) {
                __m512i c = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(co + p)));
                __m512i idx =
                    _mm512_add_epi32(_mm512_add_epi32(c, step), _mm512_set1_epi32((int)(p * K)));
                acc = _mm512_add_ps(acc, _mm512_i32gather_ps(idx, tab, 4));
            }
            float sum = _mm512_reduce_add_ps(acc);
            for (int64_t p = P16; p < P; p++) sum += tab[p * K + co[p]]; /* scalar tail */
            y[b * s->n_out + o] = sum * scale[o];
        }
    }
    lmp_scratch_reset(mark);
    return 0;
}
