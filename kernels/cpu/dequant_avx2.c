/*  dequant_avx2 - lmp_dequant_row with AVX2 + FMA (no F16C: the avx2 table's cpuid check
 *  asks for AVX2 and FMA only)
 *
 *  Bit-identical to kernels/ref/dequant_ref.c, as dequant_avx512.c, 8 outputs per vector
 *  instead of 16: each output is the same IEEE operation as in the reference (a
 *  conversion, d * q, or d * q followed by + m or - m). d * q is exact in fp32 (an 11-bit
 *  f16 significand times an integer of at most 8 bits), so a compiler that fuses d * q + m
 *  into one FMA cannot change a result (AVX2 has no explicit-rounding arithmetic to keep
 *  the steps apart; none is needed). Block scales go through lmp_f16_to_f32 (the
 *  reference's conversion); F16 rows are converted with integer ops (and one exact
 *  subtraction for subnormal halves), inf and NaN rebuilt bit for bit.
 *  Elements past the last full vector of a plain row go through the reference.
 *
 *  K-quants: Q4_K, Q5_K and Q6_K, as the AVX-512 variant (the scale products d * sc and
 *  dmin * m formed as scalars exactly as the reference forms them); Q2_K, Q3_K, Q5_0 and
 *  Q5_1 take the reference there and here.
 *  CPU reference: kernels/ref/dequant_ref.c
 */
#include "kernels/cpu/cpu_variants.h"
#include "kernels/dtype.h" /* defines: enum lmp_dtype */

#include <immintrin.h>
#include <string.h>

static float f16_at(const uint8_t *p) {
    return lmp_f16_to_f32((uint16_t)(p[0] | p[1] << 8));
}

/* 8 halves -> 8 floats, exactly lmp_f16_to_f32 (NaN payloads kept), with integer ops and
 * no denormal operand (those cost a microcode assist per instruction): exponent and
 * mantissa moved to the f32 fields and the exponent rebased by 112 (normal halves), by 224
 * (inf, NaN: f32 exponent 255); subnormal halves m 2^-24 as (1 + m / 1024) 2^-14 - 2^-14,
 * exact. */
static __m256 f16x8(__m128i h) {
    const __m256i w    = _mm256_cvtepu16_epi32(h);
    const __m256i sign = _mm256_slli_epi32(_mm256_and_si256(w, _mm256_set1_epi32(0x8000)), 16);
    const __m256i u    = _mm256_slli_epi32(_mm256_and_si256(w, _mm256_set1_epi32(0x7fff)), 13);
    const __m256i e    = _mm256_and_si256(u, _mm256_set1_epi32(0x0f800000));
    const __m256i step = _mm256_set1_epi32(112 << 23);
    __m256i       n    = _mm256_add_epi32(u, step);
    n = _mm256_add_epi32(n, _mm256_and_si256(_mm256_cmpeq_epi32(e, _mm256_set1_epi32(0x0f800000)),
                                             step)); /* inf, NaN */
    const __m256 sub =
        _mm256_sub_ps(_mm256_castsi256_ps(_mm256_add_epi32(u, _mm256_set1_epi32(113 << 23))),
                      _mm256_castsi256_ps(_mm256_set1_epi32(113 << 23)));
    const __m256 f =
        _mm256_blendv_ps(_mm256_castsi256_ps(n), sub,
                         _mm256_castsi256_ps(_mm256_cmpeq_epi32(e, _mm256_setzero_si256())));
    return _mm256_or_ps(f, _mm256_castsi256_ps(sign));
}

/* 8 signed integers as floats times d. */
static __m256 scale_i32(__m256i q, __m256 d) {
    return _mm256_mul_ps(_mm256_cvtepi32_ps(q), d);
}

/* 8 bytes -> 8 unsigned / signed 32-bit lanes. */
static __m256i u8x8(const uint8_t *p) {
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
}

static __m256i i8x8(const uint8_t *p) {
    return _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p));
}

/* Q4_K (qh NULL) and Q5_K super-blocks: see the reference for the layout. */
static void q45_k_avx2(const uint8_t *p, const uint8_t *qh, const uint8_t *qs, float *y) {
    const float    d = f16_at(p), dmin = f16_at(p + 2);
    const uint8_t *sm  = p + 4;
    const __m256i  nib = _mm256_set1_epi32(15), one = _mm256_set1_epi32(1);
    for (int j = 0; j < 8; j++) { /* sub-block j: chunk c = j / 2, nibble u = j % 2 */
        int c = j / 2, u = j % 2, sc, m;
        if (j < 4)
            sc = sm[j] & 63, m = sm[j + 4] & 63;
        else
            sc = (sm[j + 4] & 15) | ((sm[j - 4] >> 6) << 4),
            m  = (sm[j + 4] >> 4) | ((sm[j] >> 6) << 4);
        const __m256 dl = _mm256_set1_ps(d * (float)sc), ml = _mm256_set1_ps(dmin * (float)m);
        for (int h = 0; h < 32; h += 8) {
            __m256i q = _mm256_and_si256(_mm256_srli_epi32(u8x8(qs + 32 * c + h), 4 * u), nib);
            if (qh != NULL) {
                __m256i hb = _mm256_and_si256(_mm256_srli_epi32(u8x8(qh + h), j), one);
                q          = _mm256_or_si256(q, _mm256_slli_epi32(hb, 4));
            }
            _mm256_storeu_ps(y + 32 * j + h, _mm256_sub_ps(scale_i32(q, dl), ml));
        }
    }
}

static void q6_k_avx2(const uint8_t *p, float *y) {
    const uint8_t *ql = p, *qh = p + 128;
    const int8_t  *sc  = (const int8_t *)(p + 192);
    const float    d   = f16_at(p + 208);
    const __m256i  nib = _mm256_set1_epi32(15), two = _mm256_set1_epi32(3),
                  off = _mm256_set1_epi32(32);
    for (int h = 0; h < 2; h++)
        for (int k = 0; k < 4; k++)
            for (int l = 0; l < 32; l += 8) {
                __m256i lo = _mm256_and_si256(
                    _mm256_srli_epi32(u8x8(ql + 64 * h + 32 * (k % 2) + l), 4 * (k / 2)), nib);
                __m256i hi = _mm256_and_si256(_mm256_srli_epi32(u8x8(qh + 32 * h + l), 2 * k), two);
                __m256i q  = _mm256_sub_epi32(_mm256_or_si256(lo, _mm256_slli_epi32(hi, 4)), off);
                __m256  ds = _mm256_set1_ps(d * (float)sc[8 * h + 2 * k + l / 16]);
                _mm256_storeu_ps(y + 128 * h + 32 * k + l, scale_i32(q, ds));
            }
}

void lmp_dequant_row_avx2(int dtype, const void *src, float *dst, int64_t n) {
    const uint8_t *p = src;
    int64_t        i = 0;
    switch ((enum lmp_dtype)dtype) {
    case LMP_DTYPE_F32:
        memcpy(dst, src, (size_t)n * sizeof(float));
        return;
    case LMP_DTYPE_F16:
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(dst + i, f16x8(_mm_loadu_si128((const __m128i *)(p + 2 * i))));
        break;
    case LMP_DTYPE_BF16:
        for (; i + 8 <= n; i += 8) {
            __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p + 2 * i)));
            _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)));
        }
        break;
    case LMP_DTYPE_Q8_0:
        for (; i + 32 <= n; i += 32, p += 34) {
            const __m256 d = _mm256_set1_ps(f16_at(p));
            for (int l = 0; l < 32; l += 8)
                _mm256_storeu_ps(dst + i + l, scale_i32(i8x8(p + 2 + l), d));
        }
        return;
    case LMP_DTYPE_Q4_0:
        for (; i + 32 <= n; i += 32, p += 18) {
            const __m256  d       = _mm256_set1_ps(f16_at(p));
            const __m128i qs      = _mm_loadu_si128((const __m128i *)(p + 2));
            const __m128i mask    = _mm_set1_epi8(0x0f);
            const __m256i eight   = _mm256_set1_epi32(8);
            const __m128i lo      = _mm_and_si128(qs, mask),
                          hi      = _mm_and_si128(_mm_srli_epi16(qs, 4), mask);
            const __m128i part[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
            for (int l = 0; l < 4; l++)
                _mm256_storeu_ps(
                    dst + i + 8 * l,
                    scale_i32(_mm256_sub_epi32(_mm256_cvtepu8_epi32(part[l]), eight), d));
        }
        return;
    case LMP_DTYPE_Q4_1:
        for (; i + 32 <= n; i += 32, p += 20) {
            const __m256  d       = _mm256_set1_ps(f16_at(p));
            const __m256  m       = _mm256_set1_ps(f16_at(p + 2));
            const __m128i qs      = _mm_loadu_si128((const __m128i *)(p + 4));
            const __m128i mask    = _mm_set1_epi8(0x0f);
            const __m128i lo      = _mm_and_si128(qs, mask),
                          hi      = _mm_and_si128(_mm_srli_epi16(qs, 4), mask);
            const __m128i part[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
            for (int l = 0; l < 4; l++)
                _mm256_storeu_ps(dst + i + 8 * l,
                                 _mm256_add_ps(scale_i32(_mm256_cvtepu8_epi32(part[l]), d), m));
        }
        return;
    case LMP_DTYPE_Q4_K:
        for (; i + 256 <= n; i += 256, p += 144) q45_k_avx2(p, NULL, p + 16, dst + i);
        return;
    case LMP_DTYPE_Q5_K:
        for (; i + 256 <= n; i += 256, p += 176) q45_k_avx2(p, p + 16, p + 48, dst + i);
        return;
    case LMP_DTYPE_Q6_K:
        for (; i + 256 <= n; i += 256, p += 210) q6_k_avx2(p, dst + i);
        return;
    case LMP_DTYPE_Q5_0:
    case LMP_DTYPE_Q5_1:
    case LMP_DTYPE_Q2_K:
    case LMP_DTYPE_Q3_K:
        lmp_dequant_row_ref(dtype, src, dst, n);
        return;
    case LMP_DTYPE_COUNT:
        break;
    }
    /* plain types: the last n % 8 elements; an unknown dtype: the reference asserts */
    lmp_dequant_row_ref(dtype, p + ((enum lmp_dtype)dtype == LMP_DTYPE_COUNT ? 0 : 2 * i), dst + i,
                        n - i);
}
