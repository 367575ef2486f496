/*  aq_decode_avx512 - decode with 256-bit codeword loads when g is a multiple of 8
 *  (the usual g8); other group sizes take the reference.
 *  CPU reference: kernels/ref/aq_decode_ref.c
 */
#include "kernels/cpu/cpu_variants.h"

#include <immintrin.h>

void lmp_aq_decode_avx512(float *w, const uint16_t *codes, const float *cb, const float *scale,
                          const struct lmp_aq_shape *s) {
    if (s->g % 8 != 0) { lmp_aq_decode_ref(w, codes, cb, scale, s); return; }
    const int64_t n_grp = s->n_in / s->g;
    const int g = s->g, M = s->M;
    for (int64_t o = 0; o < s->n_out; o++) {
        const __m256 so = _mm256_set1_ps(scale[o]);
        const uint16_t *co = codes + o * n_grp * M;
        for (int64_t j = 0; j < n_grp; j++) {
            for (int t = 0; t < g; t += 8) {
                __m256 acc = _mm256_setzero_ps();
                for (int m = 0; m < M; m++)
                    acc = _mm256_add_ps(acc, _mm256_loadu_ps(cb + ((int64_t) m * s->K + co[j * M + m]) * g + t));
                _mm256_storeu_ps(w + o * s->n_in + j * g + t, _mm256_mul_ps(acc, so));
            }
        }
    }
}
