/*  dequant_ref - fp32 values of a row stored as F32/F16/BF16 or a ggml block quant
 *
 *  ggml block layouts (32 elements per block, little-endian):
 *    Q8_0: f16 d, int8 q[32]                 x[i] = d * q[i]
 *    Q4_0: f16 d, u8 qs[16]                  x[i] = d * (nib(i) - 8)
 *    Q4_1: f16 d, f16 m, u8 qs[16]           x[i] = d * nib(i) + m
 *  where nib(i) for i < 16 is the low nibble of qs[i], for i >= 16 the high nibble of qs[i-16].
 */
#include "kernels/kernels.h"
#include "kernels/dtype.h" /* defines: enum lmp_dtype */

#include <assert.h>
#include <string.h>

static uint16_t rd16(const uint8_t *p) {
    return (uint16_t)(p[0] | (p[1] << 8));
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
    case LMP_DTYPE_COUNT:
        break;
    }
    assert(!"unknown dtype");
}
