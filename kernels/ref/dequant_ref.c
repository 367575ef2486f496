/*  dequant_ref - fp32 values of a row stored as F32/F16/BF16 or a ggml block quant
 *
 *  ggml block layouts (32 elements per block, little-endian):
 *    Q8_0: f16 d, int8 q[32]                 x[i] = d * q[i]
 *    Q4_0: f16 d, u8 qs[16]                  x[i] = d * (nib(i) - 8)
 *    Q4_1: f16 d, f16 m, u8 qs[16]           x[i] = d * nib(i) + m
 *    Q5_0: f16 d, u32 qh, u8 qs[16]          x[i] = d * ((nib(i) | bit i of qh << 4) - 16)
 *    Q5_1: f16 d, f16 m, u32 qh, u8 qs[16]   x[i] = d * (nib(i) | bit i of qh << 4) + m
 *  where nib(i) for i < 16 is the low nibble of qs[i], for i >= 16 the high nibble of qs[i-16].
 *
 *  ggml K-quants (super-blocks of 256 elements, fields in this order):
 *    Q2_K (84):  u8 sc[16], u8 qs[64], f16 d, f16 dmin
 *        16 sub-blocks of 16; sub-block s: scale d * (sc[s] & 15), min dmin * (sc[s] >> 4);
 *        element i = 128 h + 32 j + l (h < 2, j < 4, l < 32) is 2-bit q = (qs[32 h + l] >> 2 j) & 3
 *        in sub-block s = 8 h + 2 j + l / 16:   x = (d sc_s) q - (dmin m_s)
 *    Q3_K (110): u8 hmask[32], u8 qs[64], u8 sc[12], f16 d
 *        16 signed 6-bit scales S_s = (lo | hi << 4) - 32 with lo = sc[s] & 15 (s < 8) or
 *        sc[s - 8] >> 4 (s >= 8) and hi = (sc[8 + s % 4] >> 2 (s / 4)) & 3; element
 *        i = 128 h + 32 j + l: q = (qs[32 h + l] >> 2 j) & 3, minus 4 unless bit 4 h + j of
 *        hmask[l] is set; sub-block s = 8 h + 2 j + l / 16:   x = (d S_s) q
 *    Q4_K (144): f16 d, f16 dmin, u8 sc[12], u8 qs[128]
 *        8 sub-blocks of 32 with a 6-bit scale and min (scale_min_k4 below); element
 *        i = 64 c + 32 u + l (c < 4, u < 2): q = nibble u of qs[32 c + l], sub-block 2 c + u:
 *        x = (d sc) q - (dmin m)
 *    Q5_K (176): f16 d, f16 dmin, u8 sc[12], u8 qh[32], u8 qs[128]
 *        as Q4_K, q plus 16 when bit 2 c + u of qh[l] is set
 *    Q6_K (210): u8 ql[128], u8 qh[64], i8 sc[16], f16 d
 *        element i = 128 h + 32 k + l (k < 4): q = (nibble k / 2 of ql[64 h + 32 (k % 2) + l]
 *        | ((qh[32 h + l] >> 2 k) & 3) << 4) - 32, sub-block s = 8 h + 2 k + l / 16:
 *        x = (d sc_s) q
 *  Every product d * scale is exact in fp32 (an 11-bit f16 significand times at most 8 bits),
 *  and so is (d sc) q for all but Q6_K, so each output is one rounding (Q6_K: the last
 *  product's) and a fused multiply-add cannot change it. The order of the operations is
 *  ggml's dequantize_row_q*_K.
 */
#include "kernels/kernels.h"
#include "kernels/dtype.h" /* defines: enum lmp_dtype */

#include <assert.h>
#include <stdbool.h>
#include <string.h>

static uint16_t rd16(const uint8_t *p) {
    return (uint16_t)(p[0] | (p[1] << 8));
}

/* Scale and min of sub-block j (< 8) from the 12 packed bytes of Q4_K / Q5_K: j < 4 the low
 * 6 bits of q[j] and q[j + 4]; j >= 4 a nibble of q[j + 4] with the top 2 bits of q[j - 4]
 * (scale) or of q[j] (min). */
static void scale_min_k4(int j, const uint8_t *q, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m  = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 15) | ((q[j - 4] >> 6) << 4);
        *m  = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* One super-block (256 outputs) of each K-quant. */
static void q2_k(const uint8_t *p, float *y) {
    const uint8_t *sc = p, *qs = p + 16;
    float          d = lmp_f16_to_f32(rd16(p + 80)), dmin = lmp_f16_to_f32(rd16(p + 82));
    for (int h = 0; h < 2; h++)
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 32; l++) {
                int   s  = 8 * h + 2 * j + l / 16;
                float dl = d * (float)(sc[s] & 15), ml = dmin * (float)(sc[s] >> 4);
                int   q                 = (qs[32 * h + l] >> (2 * j)) & 3;
                y[128 * h + 32 * j + l] = dl * (float)q - ml;
            }
}

static void q3_k(const uint8_t *p, float *y) {
    const uint8_t *hm = p, *qs = p + 32, *sc = p + 96;
    float          d = lmp_f16_to_f32(rd16(p + 108));
    int            S[16];
    for (int s = 0; s < 16; s++) {
        int lo = s < 8 ? sc[s] & 15 : sc[s - 8] >> 4;
        int hi = (sc[8 + s % 4] >> (2 * (s / 4))) & 3;
        S[s]   = (lo | hi << 4) - 32;
    }
    for (int h = 0; h < 2; h++)
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 32; l++) {
                float dl = d * (float)S[8 * h + 2 * j + l / 16];
                int   q  = ((qs[32 * h + l] >> (2 * j)) & 3) - ((hm[l] >> (4 * h + j)) & 1 ? 0 : 4);
                y[128 * h + 32 * j + l] = dl * (float)q;
            }
}

/* Q4_K (qh NULL) and Q5_K. */
static void q45_k(const uint8_t *p, const uint8_t *qh, const uint8_t *qs, float *y) {
    float d = lmp_f16_to_f32(rd16(p)), dmin = lmp_f16_to_f32(rd16(p + 2));
    for (int c = 0; c < 4; c++)
        for (int u = 0; u < 2; u++) {
            int sc, m;
            scale_min_k4(2 * c + u, p + 4, &sc, &m);
            float dl = d * (float)sc, ml = dmin * (float)m;
            for (int l = 0; l < 32; l++) {
                int q = (qs[32 * c + l] >> (4 * u)) & 15;
                if (qh != NULL && (qh[l] >> (2 * c + u)) & 1) q += 16;
                y[64 * c + 32 * u + l] = dl * (float)q - ml;
            }
        }
}

static void q6_k(const uint8_t *p, float *y) {
    const uint8_t *ql = p, *qh = p + 128;
    const int8_t  *sc = (const int8_t *)(p + 192);
    float          d  = lmp_f16_to_f32(rd16(p + 208));
    for (int h = 0; h < 2; h++)
        for (int k = 0; k < 4; k++)
            for (int l = 0; l < 32; l++) {
                int   lo                = (ql[64 * h + 32 * (k % 2) + l] >> (4 * (k / 2))) & 15;
                int   q                 = (lo | ((qh[32 * h + l] >> (2 * k)) & 3) << 4) - 32;
                float ds                = d * (float)sc[8 * h + 2 * k + l / 16];
                y[128 * h + 32 * k + l] = ds * (float)q;
            }
}

void lmp_dequant_row_ref(int dtype, const void *src, float *dst, int64_t n) {
    const uint8_t *p = src;
    switch ((enum lmp_dtype)dtype) {
    case LMP_DTYPE_F32:
        memcpy(dst, src, (size_t)n * sizeof(float));
        return;
    case LMP_DTYPE_F16:
        for (int64_t i = 0; i < n; i++) dst[i] = lmp_f16_to_f32(rd16(p + 2 * i));
        return;
    case LMP_DTYPE_BF16:
        for (int64_t i = 0; i < n; i++) dst[i] = lmp_bf16_to_f32(rd16(p + 2 * i));
        return;
    case LMP_DTYPE_Q8_0:
        assert(n % 32 == 0);
        for (int64_t b = 0; b < n / 32; b++, p += 34) {
            float d = lmp_f16_to_f32(rd16(p));
            for (int i = 0; i < 32; i++) dst[b * 32 + i] = d * (float)(int8_t)p[2 + i];
        }
        return;
    case LMP_DTYPE_Q4_0:
        assert(n % 32 == 0);
        for (int64_t b = 0; b < n / 32; b++, p += 18) {
            float d = lmp_f16_to_f32(rd16(p));
            for (int i = 0; i < 16; i++) {
                dst[b * 32 + i]      = d * (float)((p[2 + i] & 0x0f) - 8);
                dst[b * 32 + i + 16] = d * (float)((p[2 + i] >> 4) - 8);
            }
        }
        return;
    case LMP_DTYPE_Q4_1:
        assert(n % 32 == 0);
        for (int64_t b = 0; b < n / 32; b++, p += 20) {
            float d = lmp_f16_to_f32(rd16(p));
            float m = lmp_f16_to_f32(rd16(p + 2));
            for (int i = 0; i < 16; i++) {
                dst[b * 32 + i]      = d * (float)(p[4 + i] & 0x0f) + m;
                dst[b * 32 + i + 16] = d * (float)(p[4 + i] >> 4) + m;
            }
        }
        return;
    case LMP_DTYPE_Q5_0:
    case LMP_DTYPE_Q5_1: {
        const bool    q51 = (enum lmp_dtype)dtype == LMP_DTYPE_Q5_1;
        const int64_t bb  = q51 ? 24 : 22;
        assert(n % 32 == 0);
        for (int64_t b = 0; b < n / 32; b++, p += bb) {
            float          d = lmp_f16_to_f32(rd16(p));
            float          m = q51 ? lmp_f16_to_f32(rd16(p + 2)) : 0.0f;
            const uint8_t *h = p + (q51 ? 4 : 2), *qs = h + 4;
            uint32_t       qh =
                (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24;
            for (int i = 0; i < 32; i++) {
                int q = ((i < 16 ? qs[i] : qs[i - 16] >> 4) & 15) | (int)((qh >> i) & 1) << 4;
                dst[b * 32 + i] = q51 ? d * (float)q + m : d * (float)(q - 16);
            }
        }
        return;
    }
    case LMP_DTYPE_Q2_K:
        assert(n % 256 == 0);
        for (int64_t b = 0; b < n / 256; b++) q2_k(p + 84 * b, dst + 256 * b);
        return;
    case LMP_DTYPE_Q3_K:
        assert(n % 256 == 0);
        for (int64_t b = 0; b < n / 256; b++) q3_k(p + 110 * b, dst + 256 * b);
        return;
    case LMP_DTYPE_Q4_K:
        assert(n % 256 == 0);
        for (int64_t b = 0; b < n / 256; b++, p += 144) q45_k(p, NULL, p + 16, dst + 256 * b);
        return;
    case LMP_DTYPE_Q5_K:
        assert(n % 256 == 0);
        for (int64_t b = 0; b < n / 256; b++, p += 176) q45_k(p, p + 16, p + 48, dst + 256 * b);
        return;
    case LMP_DTYPE_Q6_K:
        assert(n % 256 == 0);
        for (int64_t b = 0; b < n / 256; b++) q6_k(p + 210 * b, dst + 256 * b);
        return;
    case LMP_DTYPE_COUNT:
        break;
    }
    assert(!"unknown dtype");
}
