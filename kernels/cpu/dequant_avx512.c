/*  dequant_avx512 - lmp_dequant_row with AVX-512 (F, BW, VL) and F16C
 *
 *  Bit-identical to kernels/ref/dequant_ref.c: each output is the same IEEE operation
 *  as there (a conversion, d * q, or d * q followed by + m). d * q is exact in fp32 (an
 *  11-bit f16 mantissa times an integer of at most 8 bits), so fusing d * q + m into one
 *  FMA, as the compiler may do in the reference under -march=native, cannot change a
 *  result either; the explicit-rounding intrinsics keep the two steps separate anyway.
 *  Elements past the last full vector of a plain row go through the reference.
 */
#include "kernels/cpu/cpu_variants.h"
#include "kernels/dtype.h" /* defines: enum lmp_dtype */

#include <immintrin.h>
#include <string.h>

#define RNE (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)

/* A block scale. The hardware conversion differs from lmp_f16_to_f32 only by quieting a
 * signalling NaN, which the product with it quiets anyway: the outputs are the same. */
static float f16_at(const uint8_t *p) {
    return _cvtsh_ss((unsigned short)(p[0] | p[1] << 8));
}

/* 16 halves -> 16 floats. vcvtph2ps quiets signalling NaNs, the reference keeps their
 * payload bits as they are: lanes with exponent 31 are rebuilt with integer ops. */
static __m512 f16x16(__m256i h) {
    __m512    f   = _mm512_cvtph_ps(h);
    __m512i   w   = _mm512_cvtepu16_epi32(h);
    __mmask16 nan = _mm512_cmpeq_epi32_mask(_mm512_and_si512(w, _mm512_set1_epi32(0x7c00)),
                                            _mm512_set1_epi32(0x7c00));
    if (nan) {
        __m512i bits = _mm512_or_si512(
            _mm512_or_si512(_mm512_slli_epi32(_mm512_and_si512(w, _mm512_set1_epi32(0x8000)), 16),
                            _mm512_set1_epi32(0x7f800000)),
            _mm512_slli_epi32(_mm512_and_si512(w, _mm512_set1_epi32(0x3ff)), 13));
        f = _mm512_mask_mov_ps(f, nan, _mm512_castsi512_ps(bits));
    }
    return f;
}

/* 16 signed integers as floats times d. */
static __m512 scale_i32(__m512i q, __m512 d) {
    return _mm512_mul_round_ps(_mm512_cvtepi32_ps(q), d, RNE);
}

void lmp_dequant_row_avx512(int dtype, const void *src, float *dst, int64_t n) {
    const uint8_t *p = src;
    int64_t        i = 0;
    switch ((enum lmp_dtype)dtype) {
    case LMP_DTYPE_F32:
        memcpy(dst, src, (size_t)n * sizeof(float));
        return;
    case LMP_DTYPE_F16:
        for (; i + 16 <= n; i += 16)
            _mm512_storeu_ps(dst + i, f16x16(_mm256_loadu_si256((const __m256i *)(p + 2 * i))));
        break;
    case LMP_DTYPE_BF16:
        for (; i + 16 <= n; i += 16) {
            __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(p + 2 * i)));
            _mm512_storeu_ps(dst + i, _mm512_castsi512_ps(_mm512_slli_epi32(w, 16)));
        }
        break;
    case LMP_DTYPE_Q8_0:
        for (; i + 32 <= n; i += 32, p += 34) {
            __m512  d  = _mm512_set1_ps(f16_at(p));
            __m128i lo = _mm_loadu_si128((const __m128i *)(p + 2));
            __m128i hi = _mm_loadu_si128((const __m128i *)(p + 18));
            _mm512_storeu_ps(dst + i, scale_i32(_mm512_cvtepi8_epi32(lo), d));
            _mm512_storeu_ps(dst + i + 16, scale_i32(_mm512_cvtepi8_epi32(hi), d));
        }
        return;
    case LMP_DTYPE_Q4_0:
        for (; i + 32 <= n; i += 32, p += 18) {
            __m512  d     = _mm512_set1_ps(f16_at(p));
            __m128i qs    = _mm_loadu_si128((const __m128i *)(p + 2));
            __m128i mask  = _mm_set1_epi8(0x0f);
            __m512i eight = _mm512_set1_epi32(8);
            __m512i lo    = _mm512_cvtepu8_epi32(_mm_and_si128(qs, mask));
            __m512i hi    = _mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(qs, 4), mask));
            _mm512_storeu_ps(dst + i, scale_i32(_mm512_sub_epi32(lo, eight), d));
            _mm512_storeu_ps(dst + i + 16, scale_i32(_mm512_sub_epi32(hi, eight), d));
        }
        return;
    case LMP_DTYPE_Q4_1:
        for (; i + 32 <= n; i += 32, p += 20) {
            __m512  d    = _mm512_set1_ps(f16_at(p));
            __m512  m    = _mm512_set1_ps(f16_at(p + 2));
            __m128i qs   = _mm_loadu_si128((const __m128i *)(p + 4));
            __m128i mask = _mm_set1_epi8(0x0f);
            __m512i lo   = _mm512_cvtepu8_epi32(_mm_and_si128(qs, mask));
            __m512i hi   = _mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(qs, 4), mask));
            _mm512_storeu_ps(dst + i, _mm512_add_round_ps(scale_i32(lo, d), m, RNE));
            _mm512_storeu_ps(dst + i + 16, _mm512_add_round_ps(scale_i32(hi, d), m, RNE));
        }
        return;
    case LMP_DTYPE_COUNT:
        break;
    }
    /* plain types: the last n % 16 elements; an unknown dtype: the reference asserts */
    lmp_dequant_row_ref(dtype, p + ((enum lmp_dtype)dtype == LMP_DTYPE_COUNT ? 0 : 2 * i), dst + i,
                        n - i);
}
