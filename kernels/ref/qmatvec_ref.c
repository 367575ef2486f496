/*  qmatvec_ref - y = x W^T straight from 8-bit or 4-bit blocks (the quantized lm head),
 *  and the row quantizers that make those blocks
 *
 *  W (n_rows, n_cols) is stored row by row as n_cols / 32 blocks of 32 weights in ggml's
 *  layouts (kernels/ref/dequant_ref.c):
 *
 *      Q8_0 (34 bytes): f16 d, int8 q[32]              w[r, 32 b + t] = d_rb q_rbt
 *      Q4_1 (20 bytes): f16 d, f16 m, u8 qs[16]        w[r, 32 b + t] = d_rb q_rbt + m_rb
 *                       (q_t: the low nibble of qs[t] for t < 16, the high one of qs[t-16])
 *      F16  (64 bytes): f16 w[32]                      w[r, 32 b + t] = w_rbt
 *                       (a head whose fp32 values are all halves: model/transformer.c)
 *
 *  so that, with s_ib = sum_t x[i, 32 b + t] the block sums of the input,
 *
 *      y[i, r] = sum_b ( d_rb sum_t q_rbt x[i, 32 b + t]  +  m_rb s_ib )     (m = 0 for Q8_0;
 *                                                                   F16: d = 1, q = w, m = 0)
 *
 *  The reference sums each block's 32 products in order, scales the block sum, and adds
 *  the blocks in order, in fp32. The weight is never widened to a dense fp32 matrix: a
 *  row costs 34 (Q8_0) or 20 (Q4_1) bytes per 32 weights instead of 128.
 *
 *  Quantizers (one row at a time, fp32 in): the scale (and minimum) are rounded to fp16
 *  first and the codes chosen for the rounded values, so a stored row is the nearest one
 *  its scale can express:
 *      Q8_0: d = max |x| / 127,  q = round(x / d) in [-127, 127]
 *      Q4_1: m = min x, d = (max x - m) / 15,  q = round((x - m) / d) in [0, 15]
 *  A block whose d is 0 gets q = 0 (Q4_1: every weight is m). Q4_1 keeps the block's whole
 *  range on purpose: refitting d and m to the codes by least squares (tried, up to 8 rounds
 *  while the block's squared error fell) clips a row's outliers, and on SmolLM2's tied
 *  embedding and head that cost perplexity (WikiText-2 356.78 against 355.32), although
 *  stories260K gained (6.147 against 6.174).
 */
#include "kernels/kernels.h"
#include "base/status.h"   /* defines: LMP_EINVAL, LMP_ENOMEM */
#include "kernels/dtype.h" /* defines: LMP_DTYPE_Q8_0, LMP_DTYPE_Q4_1 */

#include <math.h>
#include <string.h>

static float rd_f16(const uint8_t *p) {
    return lmp_f16_to_f32((uint16_t)(p[0] | p[1] << 8));
}

static void wr_f16(uint8_t *p, uint16_t h) {
    p[0] = (uint8_t)(h & 0xff);
    p[1] = (uint8_t)(h >> 8);
}

/* One output of one input row: row w (n_cols / 32 blocks), x (n_cols), xs (n_cols / 32). */
static float qdot_ref(int dtype, const uint8_t *w, const float *x, const float *xs, int64_t n_blk) {
    float y = 0.0f;
    for (int64_t b = 0; b < n_blk; b++) {
        const float *xb  = x + b * 32;
        float        dot = 0.0f;
        if (dtype == LMP_DTYPE_Q8_0) {
            const uint8_t *p = w + b * 34;
            for (int t = 0; t < 32; t++) dot += (float)(int8_t)p[2 + t] * xb[t];
            y += rd_f16(p) * dot;
        } else if (dtype == LMP_DTYPE_F16) {
            const uint8_t *p = w + b * 64;
            for (int t = 0; t < 32; t++) dot += rd_f16(p + 2 * t) * xb[t];
            y += dot;
        } else {
            const uint8_t *p = w + b * 20;
            for (int t = 0; t < 16; t++) dot += (float)(p[4 + t] & 0x0f) * xb[t];
            for (int t = 0; t < 16; t++) dot += (float)(p[4 + t] >> 4) * xb[16 + t];
            y += rd_f16(p) * dot + rd_f16(p + 2) * xs[b];
        }
    }
    return y;
}

int lmp_qmatvec_ref(float *y, const float *x, int64_t n_batch, int dtype, const void *w,
                    int64_t n_rows, int64_t n_cols) {
    if ((dtype != LMP_DTYPE_Q8_0 && dtype != LMP_DTYPE_Q4_1 && dtype != LMP_DTYPE_F16) ||
        n_cols % 32 != 0)
        return LMP_EINVAL;
    const int64_t           n_blk = n_cols / 32, row_bytes = n_blk * (dtype == LMP_DTYPE_Q8_0  ? 34
                                                                      : dtype == LMP_DTYPE_F16 ? 64
                                                                                               : 20);
    struct lmp_scratch_mark mark = lmp_scratch_mark();
    float                  *xs   = lmp_scratch_alloc((size_t)(n_batch * n_blk + 1) * sizeof(float));
    if (xs == NULL) {
        lmp_scratch_reset(mark);
        return LMP_ENOMEM;
    }
    for (int64_t i = 0; i < n_batch; i++)
        for (int64_t b = 0; b < n_blk; b++) {
            float s = 0.0f;
            for (int t = 0; t < 32; t++) s += x[i * n_cols + b * 32 + t];
            xs[i * n_blk + b] = s;
        }
    for (int64_t i = 0; i < n_batch; i++)
        for (int64_t r = 0; r < n_rows; r++)
            y[i * n_rows + r] = qdot_ref(dtype, (const uint8_t *)w + r * row_bytes, x + i * n_cols,
                                         xs + i * n_blk, n_blk);
    lmp_scratch_reset(mark);
    return 0;
}

int lmp_quantize_row(int dtype, const float *src, void *dst, int64_t n) {
    if ((dtype != LMP_DTYPE_Q8_0 && dtype != LMP_DTYPE_Q4_1) || n % 32 != 0) return LMP_EINVAL;
    uint8_t *p = dst;
    for (int64_t b = 0; b < n / 32; b++) {
        const float *x  = src + b * 32;
        float        lo = x[0], hi = x[0], amax = 0.0f;
        for (int t = 0; t < 32; t++) {
            if (!isfinite(x[t])) return LMP_EINVAL;
            lo   = x[t] < lo ? x[t] : lo;
            hi   = x[t] > hi ? x[t] : hi;
            amax = fabsf(x[t]) > amax ? fabsf(x[t]) : amax;
        }
        if (dtype == LMP_DTYPE_Q8_0) {
            const uint16_t dh = lmp_f32_to_f16(amax / 127.0f);
            const float    d  = lmp_f16_to_f32(dh);
            if (!isfinite(d)) return LMP_EINVAL;
            wr_f16(p, dh);
            for (int t = 0; t < 32; t++) {
                float q  = d > 0.0f ? roundf(x[t] / d) : 0.0f;
                q        = q > 127.0f ? 127.0f : q < -127.0f ? -127.0f : q;
                p[2 + t] = (uint8_t)(int8_t)q;
            }
            p += 34;
        } else {
            const uint16_t mh = lmp_f32_to_f16(lo), dh = lmp_f32_to_f16((hi - lo) / 15.0f);
            const float    m = lmp_f16_to_f32(mh), d = lmp_f16_to_f32(dh);
            if (!isfinite(m) || !isfinite(d)) return LMP_EINVAL;
            wr_f16(p, dh);
            wr_f16(p + 2, mh);
            uint8_t q[32];
            for (int t = 0; t < 32; t++) {
                float v = d > 0.0f ? roundf((x[t] - m) / d) : 0.0f;
                q[t]    = (uint8_t)(v > 15.0f ? 15.0f : v < 0.0f ? 0.0f : v);
            }
            for (int t = 0; t < 16; t++) p[4 + t] = (uint8_t)(q[t] | q[16 + t] << 4);
            p += 20;
        }
    }
    return 0;
}
