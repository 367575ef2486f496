/*  dequant_avx512 - lmp_dequant_row with AVX-512 (F, BW, VL) and F16C
 *
 *  Bit-identical to kernels/ref/dequant_ref.c: each output is the same IEEE operation
 *  as there (a conversion, d * q, or d * q followed by + m). d * q is exact in fp32 (an
 *  11-bit f16 mantissa times an integer of at most 8 bits), so fusing d * q + m into one
 *  FMA, as the compiler may do in the reference under -march=native, cannot change a
 *  result either; the explicit-rounding intrinsics keep the two steps separate anyway.
 *  Elements past the last full vector of a plain row go through the reference.
 *
 *  K-quants: Q4_K, Q5_K and Q6_K here, 16 outputs (one sub-block of Q6_K, half of one of
 *  Q4_K/Q5_K) per vector, the scale products d * sc and dmin * m formed as scalars exactly
 *  as the reference forms them (exact in fp32), then (d sc) q and - (dmin m) rounded
 *  separately (Q6_K: (d sc) q, its one rounding). Q2_K, Q3_K, Q5_0 and Q5_1 take the
 *  reference (they are rare in published files: Q2_K/Q3_K only in the smallest mixes).
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

/* 16 bytes -> 16 unsigned 32-bit lanes. */
static __m512i u8x16(const uint8_t *p) {
    return _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p));
}

/* Q4_K (qh NULL) and Q5_K super-blocks: see the reference for the layout. */
static void q45_k_avx512(const uint8_t *p, const uint8_t *qh, const uint8_t *qs, float *y) {
    const float    d = f16_at(p), dmin = f16_at(p + 2);
    const uint8_t *sm  = p + 4;
    const __m512i  nib = _mm512_set1_epi32(15), one = _mm512_set1_epi32(1);
    for (int j = 0; j < 8; j++) { /* sub-block j: chunk c = j / 2, nibble u = j % 2 */
        int c = j / 2, u = j % 2, sc, m;
        if (j < 4)
            sc = sm[j] & 63, m = sm[j + 4] & 63;
        else
            sc = (sm[j + 4] & 15) | ((sm[j - 4] >> 6) << 4),
            m  = (sm[j + 4] >> 4) | ((sm[j] >> 6) << 4);
        const __m512 dl = _mm512_set1_ps(d * (float)sc), ml = _mm512_set1_ps(dmin * (float)m);
        for (int h = 0; h < 32; h += 16) {
            __m512i q = _mm512_and_si512(_mm512_srli_epi32(u8x16(qs + 32 * c + h), 4 * u), nib);
            if (qh != NULL) {
                __m512i hb = _mm512_and_si512(_mm512_srli_epi32(u8x16(qh + h), j), one);
                q          = _mm512_or_si512(q, _mm512_slli_epi32(hb, 4));
            }
            _mm512_storeu_ps(y + 32 * j + h, _mm512_sub_round_ps(scale_i32(q, dl), ml, RNE));
        }
    }
}

static void q6_k_avx512(const uint8_t *p, float *y) {
    const uint8_t *ql = p, *qh = p + 128;
    const int8_t  *sc  = (const int8_t *)(p + 192);
    const float    d   = f16_at(p + 208);
    const __m512i  nib = _mm512_set1_epi32(15), two = _mm512_set1_epi32(3),
                  off = _mm512_set1_epi32(32);
    for (int h = 0; h < 2; h++)
        for (int k = 0; k < 4; k++)
            for (int l = 0; l < 32; l += 16) {
                __m512i lo = _mm512_and_si512(
                    _mm512_srli_epi32(u8x16(ql + 64 * h + 32 * (k % 2) + l), 4 * (k / 2)), nib);
                __m512i hi =
                    _mm512_and_si512(_mm512_srli_epi32(u8x16(qh + 32 * h + l), 2 * k), two);
                __m512i q  = _mm512_sub_epi32(_mm512_or_si512(lo, _mm512_slli_epi32(hi, 4)), off);
                __m512  ds = _mm512_set1_ps(d * (float)sc[8 * h + 2 * k + l / 16]);
                _mm512_storeu_ps(y + 128 * h + 32 * k + l, scale_i32(q, ds));
            }
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
    case LMP_DTYPE_Q4_K:
        for (; i + 256 <= n; i += 256, p += 144) q45_k_avx512(p, NULL, p + 16, dst + i);
        return;
    case LMP_DTYPE_Q5_K:
        for (; i + 256 <= n; i += 256, p += 176) q45_k_avx512(p, p + 16, p + 48, dst + i);
        return;
    case LMP_DTYPE_Q6_K:
        for (; i + 256 <= n; i += 256, p += 210) q6_k_avx512(p, dst + i);
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
    /* plain types: the last n % 16 elements; an unknown dtype: the reference asserts */
    lmp_dequant_row_ref(dtype, p + ((enum lmp_dtype)dtype == LMP_DTYPE_COUNT ? 0 : 2 * i), dst + i,
                        n - i);
}
