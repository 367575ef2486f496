/*  qmatvec_avx2 - y = x W^T from Q8_0 / Q4_1 blocks, 8 lanes (AVX2 + FMA, F16C)
 *
 *  For CPUs without AVX-512: as qmatvec_avx512.c, a block's 32 codes widened to four
 *  vectors of 8 fp32, scaled, and multiplied with the input into the row's lane
 *  accumulators; Q4_1's m times the input block sum goes to a scalar.
 *  CPU reference: kernels/ref/qmatvec_ref.c (driver: kernels/cpu/qmatvec_cpu.h)
 */
#include "kernels/cpu/qmatvec_cpu.h"

#include <immintrin.h>

static inline __m256 i8x8(const uint8_t *p) { /* 8 signed bytes -> fp32 */
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const void *)p)));
}

static void rows_avx2(const struct qmv_job *J, const float *x, const float *xs, int n_x, float *y,
                      int64_t r0, int64_t r1) {
    const int64_t n_blk = J->n_blk, n_cols = J->n_cols;
    const bool    q8 = J->dtype == LMP_DTYPE_Q8_0;
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
