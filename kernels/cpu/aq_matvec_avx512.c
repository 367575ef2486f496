/*  aq_matvec_avx512 - y = x W_hat^T from the codes, through lookup tables
 *
 *  The drivers (tables, decode-dot, decoded tiles + sgemm; which one for which shape;
 *  threads) are kernels/cpu/aq_matvec_cpu.h. Here: a chunk's tables, 16 entries per
 *  FMA with the codebook transposed to (M, g, K), and the lookups, 16 codes per
 *  gather (a masked gather for the chunk's last positions).
 *  CPU reference: kernels/ref/aq_matvec_ref.c
 */
#include "kernels/cpu/aq_matvec_cpu.h"

#include <immintrin.h>

static void lut_chunk_avx512(float *part, float *tab, const float *x, int64_t n_batch,
                             const uint16_t *codes, const float *cT, const struct lmp_aq_shape *s,
                             int64_t j0, int64_t nj) {
    const int64_t K = s->K, g = s->g, M = s->M, n_in = s->n_in, n_grp = n_in / g;
    const int64_t n_out = s->n_out, P = nj * M, TS = (int64_t)AQMV_CHUNK * M * K;
    for (int64_t b = 0; b < n_batch; b++)
        for (int64_t jj = 0; jj < nj; jj++) {
            const float *xg = x + b * n_in + (j0 + jj) * g;
            for (int64_t m = 0; m < M; m++) {
                float       *tp = tab + b * TS + (jj * M + m) * K;
                const float *cm = cT + m * g * K;
                for (int64_t k = 0; k < K; k += 16) {
                    __m512 acc = _mm512_mul_ps(_mm512_set1_ps(xg[0]), _mm512_loadu_ps(cm + k));
                    for (int64_t t = 1; t < g; t++)
                        acc = _mm512_fmadd_ps(_mm512_set1_ps(xg[t]),
                                              _mm512_loadu_ps(cm + t * K + k), acc);
                    _mm512_storeu_ps(tp + k, acc);
                }
            }
        }
    /* position p of the chunk reads tab[p K + code]: lane i of a step at p adds (p + i) K */
    const __m512i lane =
        _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                           _mm512_set1_epi32((int)K));
    for (int64_t o = 0; o < n_out; o++) {
        const uint16_t *co = codes + (o * n_grp + j0) * M;
        __m512          acc[AQMV_LUT_BATCH];
        for (int64_t b = 0; b < n_batch; b++) acc[b] = _mm512_setzero_ps();
        for (int64_t p = 0; p < P; p += 16) {
            const __mmask16 mk = P - p >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (P - p)) - 1);
            const __m512i   c  = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mk, co + p));
            const __m512i   idx =
                _mm512_add_epi32(_mm512_add_epi32(c, lane), _mm512_set1_epi32((int)(p * K)));
            for (int64_t b = 0; b < n_batch; b++)
                acc[b] = _mm512_add_ps(acc[b], _mm512_mask_i32gather_ps(_mm512_setzero_ps(), mk,
                                                                        idx, tab + b * TS, 4));
        }
        for (int64_t b = 0; b < n_batch; b++) part[b * n_out + o] = _mm512_reduce_add_ps(acc[b]);
    }
}

int lmp_aq_matvec_avx512(float *y, const float *x, int64_t n_batch, const uint16_t *codes,
                         const float *cb, const float *scale, const struct lmp_aq_shape *s) {
    return aqmv_run(y, x, n_batch, codes, cb, scale, s, lut_chunk_avx512, 16, lmp_aq_decode_avx512);
}
