/*  avx2_util - small helpers shared by the AVX2 + FMA variants (kernels/cpu/<op>_avx2.c):
 *  lane masks for partial vectors (AVX2 has no mask registers: vmaskmov takes a vector
 *  whose lanes' sign bits select) and the horizontal reductions in the order the AVX-512
 *  variants' _mm512_reduce_* use, so a sum taken 8 (double) lanes wide rounds the same.
 *  Include only from files compiled with -mavx2 -mfma.
 */
#ifndef LMP_KERNELS_CPU_AVX2_UTIL_H
#define LMP_KERNELS_CPU_AVX2_UTIL_H

#include <immintrin.h>
#include <stdint.h>

/* Lanes [0, rem) of 8 set (rem <= 0: none, >= 8: all). */
static inline __m256i avx2_mask8(int64_t rem) {
    const int r = rem <= 0 ? 0 : rem >= 8 ? 8 : (int)rem;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(r), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* Lanes [0, rem) of 4 doubles set. */
static inline __m256i avx2_mask4(int64_t rem) {
    const int r = rem <= 0 ? 0 : rem >= 4 ? 4 : (int)rem;
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(r), _mm256_setr_epi64x(0, 1, 2, 3));
}

/* Sum of 8 doubles held as lanes 0-3 (lo) and 4-7 (hi), added as _mm512_reduce_add_pd
 * adds them: the two halves, then the 128-bit halves, then the last pair. */
static inline double avx2_reduce8_pd(__m256d lo, __m256d hi) {
    const __m256d s4 = _mm256_add_pd(hi, lo);
    const __m128d s2 = _mm_add_pd(_mm256_extractf128_pd(s4, 1), _mm256_castpd256_pd128(s4));
    return _mm_cvtsd_f64(s2) + _mm_cvtsd_f64(_mm_unpackhi_pd(s2, s2));
}

/* Sum of 8 floats: the 128-bit halves, then pairs, as the g = 8 step of the AVX-512 beam. */
static inline float avx2_hsum8(__m256 v) {
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h        = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h        = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

#endif /* LMP_KERNELS_CPU_AVX2_UTIL_H */
