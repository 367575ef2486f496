/*  aq_matvec_avx2 - y = x W_hat^T from the codes, through lookup tables (AVX2 + FMA)
 *
 *  For CPUs without AVX-512: the drivers of kernels/cpu/aq_matvec_cpu.h with a chunk's
 *  tables built 8 entries per FMA (codebook transposed to (M, g, K)) and the lookups
 *  gathered 8 codes at a time; the chunk's last positions are scalar.
 *  CPU reference: kernels/ref/aq_matvec_ref.c
 */
#include "kernels/cpu/aq_matvec_cpu.h"

#include <immintrin.h>

static void lut_chunk_avx2(float *part, float *tab, const float *x, int64_t n_batch,
                           const uint16_t *codes, const float *cT, const struct lmp_aq_shape *s,
                           int64_t j0, int64_t nj) {
    const int64_t K = s->K, g = s->g, M = s->M, n_in = s->n_in, n_grp = n_in / g;
    const int64_t n_out = s->n_out, P = nj * M, P8 = P / 8 * 8, TS = (int64_t)AQMV_CHUNK * M * K;
    for (int64_t b = 0; b < n_batch; b++)
        for (int64_t jj = 0; jj < nj; jj++) {
            const float *xg = x + b * n_in + (j0 + jj) * g;
            for (int64_t m = 0; m < M; m++) {
                float       *tp = tab + b * TS + (jj * M + m) * K;
                const float *cm = cT + m * g * K;
                for (int64_t k = 0; k < K; k += 8) {
                    __m256 acc = _mm256_mul_ps(_mm256_set1_ps(xg[0]), _mm256_loadu_ps(cm + k));
                    for (int64_t t = 1; t < g; t++)
                        acc = _mm256_fmadd_ps(_mm256_set1_ps(xg[t]),
                                              _mm256_loadu_ps(cm + t * K + k), acc);
                    _mm256_storeu_ps(tp + k, acc);
                }
            }
        }
    /* position p of the chunk reads tab[p K + code]: lane i of a step at p adds (p + i) K */
    const __m256i lane =
        _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32((int)K));
    for (int64_t o = 0; o < n_out; o++) {
        const uint16_t *co = codes + (o * n_grp + j0) * M;
        __m256          acc[AQMV_LUT_BATCH];
        for (int64_t b = 0; b < n_batch; b++) acc[b] = _mm256_setzero_ps();
        for (int64_t p = 0; p < P8; p += 8) {
            const __m256i c = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(co + p)));
            const __m256i idx =
                _mm256_add_epi32(_mm256_add_epi32(c, lane), _mm256_set1_epi32((int)(p * K)));
            for (int64_t b = 0; b < n_batch; b++)
                acc[b] = _mm256_add_ps(acc[b], _mm256_i32gather_ps(tab + b * TS, idx, 4));
        }
        for (int64_t b = 0; b < n_batch; b++) {
            __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc[b]), _mm256_extractf128_ps(acc[b], 1));
            h        = _mm_add_ps(h, _mm_movehl_ps(h, h));
            h        = _mm_add_ss(h, _mm_movehdup_ps(h));
            float sum = _mm_cvtss_f32(h);
            for (int64_t p = P8; p < P; p++) sum += tab[b * TS + p * K + co[p]]; /* scalar tail */
            part[b * n_out + o] = sum;
        }
    }
}

int lmp_aq_matvec_avx2(float *y, const float *x, int64_t n_batch, const uint16_t *codes,
                       const float *cb, const float *scale, const struct lmp_aq_shape *s) {
    return aqmv_run(y, x, n_batch, codes, cb, scale, s, lut_chunk_avx2, 8, lmp_aq_decode_ref);
}
