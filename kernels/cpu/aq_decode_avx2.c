/*  aq_decode_avx2 - decode with 256-bit codeword loads, 8 weights of a group per step
 *  (a masked last step when g is not a multiple of 8, e.g. g4). The same operations as
 *  the reference in the same order (0 + c_0 + ... + c_{M-1}, times the scale): the same
 *  bits as aq_decode_ref and aq_decode_avx512.
 *  CPU reference: kernels/ref/aq_decode_ref.c
 */
#include "kernels/cpu/cpu_variants.h"
#include "kernels/cpu/avx2_util.h" /* defines: avx2_mask8 */

#include <immintrin.h>

void lmp_aq_decode_avx2(float *w, const uint16_t *codes, const float *cb, const float *scale,
                        const struct lmp_aq_shape *s) {
    const int64_t n_grp = s->n_in / s->g;
    const int     g = s->g, M = s->M;
    for (int64_t o = 0; o < s->n_out; o++) {
        const __m256    so = _mm256_set1_ps(scale[o]);
        const uint16_t *co = codes + o * n_grp * M;
        float          *wo = w + o * s->n_in;
        for (int64_t j = 0; j < n_grp; j++) {
            int t = 0;
            for (; t + 8 <= g; t += 8) {
                __m256 acc = _mm256_setzero_ps();
                for (int m = 0; m < M; m++)
                    acc = _mm256_add_ps(
                        acc, _mm256_loadu_ps(cb + ((int64_t)m * s->K + co[j * M + m]) * g + t));
                _mm256_storeu_ps(wo + j * g + t, _mm256_mul_ps(acc, so));
            }
            if (t < g) {
                const __m256i mk  = avx2_mask8(g - t);
                __m256        acc = _mm256_setzero_ps();
                for (int m = 0; m < M; m++)
                    acc = _mm256_add_ps(
                        acc,
                        _mm256_maskload_ps(cb + ((int64_t)m * s->K + co[j * M + m]) * g + t, mk));
                _mm256_maskstore_ps(wo + j * g + t, mk, _mm256_mul_ps(acc, so));
            }
        }
    }
}
