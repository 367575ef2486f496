/*  qmatvec_avx512 - y = x W^T from Q8_0 / Q4_1 blocks or F16 rows, 16 lanes (AVX-512 F + BW)
 *
 *  Per block: its 32 codes widened to two vectors of 16 fp32 (Q8_0: sign-extended bytes;
 *  Q4_1: the low and high nibbles of 16 bytes; F16: converted halves, no scale), multiplied
 *  with the input's 32 values and added to the row's lane accumulators times the block's
 *  scale; Q4_1's m times the input block sum goes to a scalar. One horizontal sum per
 *  output. One input row (generation): 4 weight rows at a time, each with its own
 *  accumulator (one chain per row was bound by the FMA latency), the next rows prefetched.
 *  CPU reference: kernels/ref/qmatvec_ref.c (driver: kernels/cpu/qmatvec_cpu.h)
 */
#include "kernels/cpu/qmatvec_cpu.h"

#include <immintrin.h>

/* One input row (generation's head), R weight rows at a time: R independent accumulators,
 * and per block the product with the input summed before the block's scale (one FMA chain
 * step per block and row instead of two); the scale converted with F16C. */
static inline __attribute__((always_inline)) void rows1_r(const struct qmv_job *J, const float *x,
                                                          const float *xs, float *y, int64_t r,
                                                          const int R) {
    const int64_t  n_blk = J->n_blk;
    const bool     q8 = J->dtype == LMP_DTYPE_Q8_0, f16 = J->dtype == LMP_DTYPE_F16;
    const uint8_t *row[4];
    __m512         acc[4];
    float          macc[4] = {0};
    for (int i = 0; i < R; i++) {
        row[i] = J->w + (r + i) * J->row_bytes;
        acc[i] = _mm512_setzero_ps();
    }
    /* the head streams from memory once per token: the next rows' bytes are fetched ahead,
     * two lines per block step (R rows of row_bytes over n_blk steps, 2 rows' worth ahead) */
    const int64_t  pf_step = (R * J->row_bytes + n_blk - 1) / n_blk;
    const uint8_t *pf      = J->w + (r + R + 2 * R) * J->row_bytes;
    const uint8_t *w_end   = J->w + J->n_rows * J->row_bytes;
    for (int64_t b = 0; b < n_blk; b++) {
        if (pf + b * pf_step + 64 < w_end) {
            _mm_prefetch((const char *)(pf + b * pf_step), _MM_HINT_T0);
            _mm_prefetch((const char *)(pf + b * pf_step + 64), _MM_HINT_T0);
        }
        const __m512 xl = _mm512_loadu_ps(x + b * 32), xh = _mm512_loadu_ps(x + b * 32 + 16);
        for (int i = 0; i < R; i++) {
            __m512 lo, hi;
            if (f16) { /* halves: converted, no scale */
                const uint8_t *p = row[i] + b * 64;
                lo               = _mm512_cvtph_ps(_mm256_loadu_si256((const void *)p));
                hi               = _mm512_cvtph_ps(_mm256_loadu_si256((const void *)(p + 32)));
                acc[i]           = _mm512_fmadd_ps(hi, xh, _mm512_fmadd_ps(lo, xl, acc[i]));
            } else if (q8) {
                const uint8_t *p = row[i] + b * 34;
                lo               = _mm512_cvtepi32_ps(
                                  _mm512_cvtepi8_epi32(_mm_loadu_si128((const void *)(p + 2))));
                hi = _mm512_cvtepi32_ps(
                    _mm512_cvtepi8_epi32(_mm_loadu_si128((const void *)(p + 18))));
                const __m512 t = _mm512_fmadd_ps(hi, xh, _mm512_mul_ps(lo, xl));
                acc[i] =
                    _mm512_fmadd_ps(t, _mm512_set1_ps(_cvtsh_ss(*(const uint16_t *)p)), acc[i]);
            } else {
                const uint8_t *p = row[i] + b * 20;
                const __m512i  v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const void *)(p + 4)));
                lo               = _mm512_cvtepi32_ps(_mm512_and_si512(v, _mm512_set1_epi32(15)));
                hi               = _mm512_cvtepi32_ps(_mm512_srli_epi32(v, 4));
                const __m512 t   = _mm512_fmadd_ps(hi, xh, _mm512_mul_ps(lo, xl));
                acc[i] =
                    _mm512_fmadd_ps(t, _mm512_set1_ps(_cvtsh_ss(*(const uint16_t *)p)), acc[i]);
                macc[i] += _cvtsh_ss(*(const uint16_t *)(p + 2)) * xs[b];
            }
        }
    }
    for (int i = 0; i < R; i++) y[r + i] = _mm512_reduce_add_ps(acc[i]) + macc[i];
}

static void rows_avx512(const struct qmv_job *J, const float *x, const float *xs, int n_x, float *y,
                        int64_t r0, int64_t r1) {
    const int64_t n_blk = J->n_blk, n_cols = J->n_cols;
    const bool    q8 = J->dtype == LMP_DTYPE_Q8_0;
    if (n_x == 1) {
        int64_t r = r0;
        for (; r + 4 <= r1; r += 4) rows1_r(J, x, xs, y, r, 4);
        for (; r < r1; r++) rows1_r(J, x, xs, y, r, 1);
        return;
    }
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = J->w + r * J->row_bytes;
        __m512         acc[QMV_BATCH];
        float          macc[QMV_BATCH] = {0};
        for (int i = 0; i < n_x; i++) acc[i] = _mm512_setzero_ps();
        for (int64_t b = 0; b < n_blk; b++) {
            __m512 lo, hi;
            float  m = 0.0f;
            if (J->dtype == LMP_DTYPE_F16) {
                const uint8_t *p = row + b * 64;
                lo               = _mm512_cvtph_ps(_mm256_loadu_si256((const void *)p));
                hi               = _mm512_cvtph_ps(_mm256_loadu_si256((const void *)(p + 32)));
            } else if (q8) {
                const uint8_t *p = row + b * 34;
                lo               = _mm512_cvtepi32_ps(
                                  _mm512_cvtepi8_epi32(_mm_loadu_si128((const void *)(p + 2))));
                hi = _mm512_cvtepi32_ps(
                    _mm512_cvtepi8_epi32(_mm_loadu_si128((const void *)(p + 18))));
                const __m512 d = _mm512_set1_ps(qmv_f16(p));
                lo             = _mm512_mul_ps(lo, d);
                hi             = _mm512_mul_ps(hi, d);
            } else {
                const uint8_t *p = row + b * 20;
                const __m512i  v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const void *)(p + 4)));
                const __m512   d = _mm512_set1_ps(qmv_f16(p));
                lo = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_and_si512(v, _mm512_set1_epi32(15))),
                                   d);
                hi = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(v, 4)), d);
                m  = qmv_f16(p + 2);
            }
            for (int i = 0; i < n_x; i++) {
                const float *xb = x + i * n_cols + b * 32;
                acc[i]          = _mm512_fmadd_ps(lo, _mm512_loadu_ps(xb), acc[i]);
                acc[i]          = _mm512_fmadd_ps(hi, _mm512_loadu_ps(xb + 16), acc[i]);
                macc[i] += m * xs[i * n_blk + b];
            }
        }
        for (int i = 0; i < n_x; i++) y[i * J->n_rows + r] = _mm512_reduce_add_ps(acc[i]) + macc[i];
    }
}

int lmp_qmatvec_avx512(float *y, const float *x, int64_t n_batch, int dtype, const void *w,
                       int64_t n_rows, int64_t n_cols) {
    return qmv_run(y, x, n_batch, dtype, w, n_rows, n_cols, rows_avx512);
}
