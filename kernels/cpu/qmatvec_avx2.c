/*  qmatvec_avx2 - y = x W^T from Q8_0 / Q4_1 blocks or F16 rows, 8 lanes (AVX2 + FMA)
 *
 *  For CPUs without AVX-512: as qmatvec_avx512.c, a block's 32 codes widened to four
 *  vectors of 8 fp32, scaled, and multiplied with the input into the row's lane
 *  accumulators; Q4_1's m times the input block sum goes to a scalar; one input row: 4
 *  weight rows at a time. F16 rows (no F16C in this table): widened by dequant_row.
 *  CPU reference: kernels/ref/qmatvec_ref.c (driver: kernels/cpu/qmatvec_cpu.h)
 */
#include "kernels/cpu/qmatvec_cpu.h"

#include <immintrin.h>

static inline __m256 i8x8(const uint8_t *p) { /* 8 signed bytes -> fp32 */
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const void *)p)));
}

/* One input row (generation's head), R weight rows at a time: R independent accumulators,
 * and per block the product with the input summed before the block's scale (one FMA chain
 * step per block and row instead of four); the next rows fetched ahead. */
static inline __attribute__((always_inline)) void rows1_r(const struct qmv_job *J, const float *x,
                                                          const float *xs, float *y, int64_t r,
                                                          const int R) {
    const int64_t  n_blk = J->n_blk;
    const bool     q8    = J->dtype == LMP_DTYPE_Q8_0;
    const uint8_t *row[4];
    __m256         acc[4];
    float          macc[4] = {0};
    for (int i = 0; i < R; i++) {
        row[i] = J->w + (r + i) * J->row_bytes;
        acc[i] = _mm256_setzero_ps();
    }
    const int64_t  pf_step = (R * J->row_bytes + n_blk - 1) / n_blk;
    const uint8_t *pf      = J->w + (r + 3 * R) * J->row_bytes;
    const uint8_t *w_end   = J->w + J->n_rows * J->row_bytes;
    for (int64_t b = 0; b < n_blk; b++) {
        if (pf + b * pf_step + 64 < w_end) {
            _mm_prefetch((const char *)(pf + b * pf_step), _MM_HINT_T0);
            _mm_prefetch((const char *)(pf + b * pf_step + 64), _MM_HINT_T0);
        }
        const float *xb = x + b * 32;
        const __m256 x0 = _mm256_loadu_ps(xb), x1 = _mm256_loadu_ps(xb + 8);
        const __m256 x2 = _mm256_loadu_ps(xb + 16), x3 = _mm256_loadu_ps(xb + 24);
        for (int i = 0; i < R; i++) {
            __m256 t;
            float  d;
            if (q8) {
                const uint8_t *p = row[i] + b * 34;
                t                = _mm256_mul_ps(i8x8(p + 2), x0);
                t                = _mm256_fmadd_ps(i8x8(p + 10), x1, t);
                t                = _mm256_fmadd_ps(i8x8(p + 18), x2, t);
                t                = _mm256_fmadd_ps(i8x8(p + 26), x3, t);
                d                = qmv_f16(p);
            } else {
                const uint8_t *p  = row[i] + b * 20;
                const __m256i  v0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const void *)(p + 4)));
                const __m256i  v1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const void *)(p + 12)));
                const __m256i  mk = _mm256_set1_epi32(15);
                t                 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_and_si256(v0, mk)), x0);
                t = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_and_si256(v1, mk)), x1, t);
                t = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(v0, 4)), x2, t);
                t = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(v1, 4)), x3, t);
                d = qmv_f16(p);
                macc[i] += qmv_f16(p + 2) * xs[b];
            }
            acc[i] = _mm256_fmadd_ps(t, _mm256_set1_ps(d), acc[i]);
        }
    }
    for (int i = 0; i < R; i++) {
        __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc[i]), _mm256_extractf128_ps(acc[i], 1));
        h        = _mm_add_ps(h, _mm_movehl_ps(h, h));
        h        = _mm_add_ss(h, _mm_movehdup_ps(h));
        y[r + i] = _mm_cvtss_f32(h) + macc[i];
    }
}

/* F16 rows (no F16C in this table's flags): each row widened by the AVX2 dequant_row into
 * the thread's scratch, then 8-lane dot products with every input, one block at a time. */
static void rows_f16_avx2(const struct qmv_job *J, const float *x, int n_x, float *y, int64_t r0,
                          int64_t r1) {
    const int64_t           n_cols = J->n_cols;
    struct lmp_scratch_mark mark   = lmp_scratch_mark();
    float                  *row    = lmp_scratch_alloc((size_t)n_cols * sizeof(float));
    for (int64_t r = r0; r < r1; r++) {
        if (row == NULL) { /* no scratch: the reference's order, slowly */
            for (int i = 0; i < n_x; i++) {
                float acc = 0.0f;
                for (int64_t b = 0; b < J->n_blk; b++) {
                    float dot = 0.0f;
                    for (int t = 0; t < 32; t++)
                        dot += qmv_f16(J->w + r * J->row_bytes + (b * 32 + t) * 2) *
                               x[i * n_cols + b * 32 + t];
                    acc += dot;
                }
                y[i * J->n_rows + r] = acc;
            }
            continue;
        }
        lmp_dequant_row_avx2(LMP_DTYPE_F16, J->w + r * J->row_bytes, row, n_cols);
        for (int i = 0; i < n_x; i++) {
            const float *xi  = x + i * n_cols;
            __m256       acc = _mm256_setzero_ps();
            for (int64_t c = 0; c < n_cols; c += 8)
                acc = _mm256_fmadd_ps(_mm256_loadu_ps(row + c), _mm256_loadu_ps(xi + c), acc);
            __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
            h        = _mm_add_ps(h, _mm_movehl_ps(h, h));
            h        = _mm_add_ss(h, _mm_movehdup_ps(h));
            y[i * J->n_rows + r] = _mm_cvtss_f32(h);
        }
    }
    lmp_scratch_reset(mark);
}

static void rows_avx2(const struct qmv_job *J, const float *x, const float *xs, int n_x, float *y,
                      int64_t r0, int64_t r1) {
    const int64_t n_blk = J->n_blk, n_cols = J->n_cols;
    const bool    q8 = J->dtype == LMP_DTYPE_Q8_0;
    if (J->dtype == LMP_DTYPE_F16) {
        rows_f16_avx2(J, x, n_x, y, r0, r1);
        return;
    }
    if (n_x == 1) {
        int64_t r = r0;
        for (; r + 4 <= r1; r += 4) rows1_r(J, x, xs, y, r, 4);
        for (; r < r1; r++) rows1_r(J, x, xs, y, r, 1);
        return;
    }
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = J->w + r * J->row_bytes;
        __m256         acc[QMV_BATCH];
        float          macc[QMV_BATCH] = {0};
        for (int i = 0; i < n_x; i++) acc[i] = _mm256_setzero_ps();
        for (int64_t b = 0; b < n_blk; b++) {
            __m256 q[4]; /* elements 0-7, 8-15, 16-23, 24-31 */
            float  m = 0.0f;
            if (q8) {
                const uint8_t *p = row + b * 34;
                const __m256   d = _mm256_set1_ps(qmv_f16(p));
                for (int k = 0; k < 4; k++) q[k] = _mm256_mul_ps(i8x8(p + 2 + 8 * k), d);
            } else {
                const uint8_t *p  = row + b * 20;
                const __m256   d  = _mm256_set1_ps(qmv_f16(p));
                const __m256i  v0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const void *)(p + 4)));
                const __m256i  v1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const void *)(p + 12)));
                const __m256i  mk = _mm256_set1_epi32(15);
                q[0]              = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_and_si256(v0, mk)), d);
                q[1]              = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_and_si256(v1, mk)), d);
                q[2]              = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(v0, 4)), d);
                q[3]              = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(v1, 4)), d);
                m                 = qmv_f16(p + 2);
            }
            for (int i = 0; i < n_x; i++) {
                const float *xb = x + i * n_cols + b * 32;
                for (int k = 0; k < 4; k++)
                    acc[i] = _mm256_fmadd_ps(q[k], _mm256_loadu_ps(xb + 8 * k), acc[i]);
                macc[i] += m * xs[i * n_blk + b];
            }
        }
        for (int i = 0; i < n_x; i++) {
            __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc[i]), _mm256_extractf128_ps(acc[i], 1));
            h        = _mm_add_ps(h, _mm_movehl_ps(h, h));
            h        = _mm_add_ss(h, _mm_movehdup_ps(h));
            y[i * J->n_rows + r] = _mm_cvtss_f32(h) + macc[i];
        }
    }
}

int lmp_qmatvec_avx2(float *y, const float *x, int64_t n_batch, int dtype, const void *w,
                     int64_t n_rows, int64_t n_cols) {
    return qmv_run(y, x, n_batch, dtype, w, n_rows, n_cols, rows_avx2);
}
