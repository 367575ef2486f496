/*  aq_decode_avx512 - decode with 256-bit codeword loads, 8 weights of a group per step
 *  (a masked last step when g is not a multiple of 8, e.g. g4).
 *  CPU reference: kernels/ref/aq_decode_ref.c
 */
#include "kernels/cpu/cpu_variants.h"

#include <immintrin.h>

void lmp_aq_decode_avx512(float *w, const uint16_t *codes, const float *cb, const float *scale,
                          const struct lmp_aq_shape *s) {
    const int64_t n_grp = s->n_in / s->g;
    const int     g = s->g, M = s->M;
    for (int64_t o = 0; o < s->n_out; o++) {
        const __m256    so = _mm256_set1_ps(scale[o]);
        const uint16_t *co = codes + o * n_grp * M;
        for (int64_t j = 0; j < n_grp; j++) {
            for (int t = 0; t < g; t += 8) {
                const __mmask8 mk  = g - t >= 8 ? (__mmask8)0xFF : (__mmask8)((1u << (g - t)) - 1);
                __m256         acc = _mm256_setzero_ps();
                for (int m = 0; m < M; m++)
                    acc = _mm256_add_ps(acc,
                                        _mm256_maskz_loadu_ps(
                                            mk, cb + ((int64_t)m * s->K + co[j * M + m]) * g + t));
                _mm256_mask_storeu_ps(w + o * s->n_in + j * g + t, mk, _mm256_mul_ps(acc, so));
            }
        }
    }
}
