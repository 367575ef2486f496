/*  qmatvec_cpu - the driver of the SIMD qmatvec variants (y = x W^T from Q8_0 / Q4_1 blocks)
 *
 *  Included by kernels/cpu/qmatvec_avx512.c and qmatvec_avx2.c, each of which supplies
 *  qmv_rows_fn: outputs [r0, r1) of up to QMV_BATCH input rows. The driver computes the
 *  inputs' block sums (for Q4_1's minimum term), splits the rows over the kernel pool in
 *  near-equal ranges, and walks the batch QMV_BATCH rows at a time, so each block of W is
 *  converted once per QMV_BATCH inputs. Every output is summed by one thread in a fixed
 *  order: the result does not depend on the thread count.
 *  CPU reference: kernels/ref/qmatvec_ref.c
 */
#ifndef LMP_KERNELS_CPU_QMATVEC_CPU_H
#define LMP_KERNELS_CPU_QMATVEC_CPU_H

#include "kernels/kernels.h"
#include "base/status.h"              /* defines: LMP_EINVAL, LMP_ENOMEM */
#include "kernels/dtype.h"            /* defines: LMP_DTYPE_Q8_0, LMP_DTYPE_Q4_1 */
#include "kernels/cpu/cpu_variants.h" /* defines: lmp_cpu_threads */
#include "kernels/cpu/parallel.h"     /* defines: lmp_cpu_parallel, lmp_par_range */

enum { QMV_BATCH = 4 }; /* input rows sharing one conversion of a block */

struct qmv_job;
/* y[i, r] for i < n_x (<= QMV_BATCH), r in [r0, r1); x (n_x, n_cols), xs (n_x, n_cols/32). */
typedef void qmv_rows_fn(const struct qmv_job *J, const float *x, const float *xs, int n_x,
                         float *y, int64_t r0, int64_t r1);

struct qmv_job {
    float         *y;
    const float   *x, *xs;
    const uint8_t *w;
    int64_t        n_batch, n_rows, n_cols, n_blk, row_bytes;
    int            dtype;
    qmv_rows_fn   *rows;
};

static inline float qmv_f16(const uint8_t *p) {
    return lmp_f16_to_f32((uint16_t)(p[0] | p[1] << 8));
}

static void qmv_part(void *arg, int tid, int nt) {
    const struct qmv_job *J = arg;
    int64_t               lo, hi;
    lmp_par_range(J->n_rows, tid, nt, &lo, &hi);
    if (hi <= lo) return;
    for (int64_t i = 0; i < J->n_batch; i += QMV_BATCH) {
        const int n_x = (int)(J->n_batch - i < QMV_BATCH ? J->n_batch - i : QMV_BATCH);
        J->rows(J, J->x + i * J->n_cols, J->xs + i * J->n_blk, n_x, J->y + i * J->n_rows, lo, hi);
    }
}

static inline int qmv_run(float *y, const float *x, int64_t n_batch, int dtype, const void *w,
                          int64_t n_rows, int64_t n_cols, qmv_rows_fn *rows) {
    if ((dtype != LMP_DTYPE_Q8_0 && dtype != LMP_DTYPE_Q4_1 && dtype != LMP_DTYPE_F16) ||
        n_cols % 32 != 0)
        return LMP_EINVAL;
    struct qmv_job J = {.y       = y,
                        .x       = x,
                        .w       = w,
                        .n_batch = n_batch,
                        .n_rows  = n_rows,
                        .n_cols  = n_cols,
                        .n_blk   = n_cols / 32,
                        .dtype   = dtype,
                        .rows    = rows};
    J.row_bytes      = J.n_blk * (dtype == LMP_DTYPE_Q8_0 ? 34 : dtype == LMP_DTYPE_F16 ? 64 : 20);
    struct lmp_scratch_mark mark = lmp_scratch_mark();
    float                  *xs = lmp_scratch_alloc((size_t)(n_batch * J.n_blk + 1) * sizeof(float));
    if (xs == NULL) {
        lmp_scratch_reset(mark);
        return LMP_ENOMEM;
    }
    for (int64_t i = 0; i < n_batch; i++) /* in the reference's order */
        for (int64_t b = 0; b < J.n_blk; b++) {
            float s = 0.0f;
            for (int t = 0; t < 32; t++) s += x[i * n_cols + b * 32 + t];
            xs[i * J.n_blk + b] = s;
        }
    J.xs = xs;
    /* 512 rows a thread at least: below that the fork costs more than the rows */
    int64_t nt = lmp_cpu_threads(), want = n_rows / 512 > 0 ? n_rows / 512 : 1;
    lmp_cpu_parallel((int)(want < nt ? want : nt), qmv_part, &J);
    lmp_scratch_reset(mark);
    return 0;
}

#endif /* LMP_KERNELS_CPU_QMATVEC_CPU_H */
