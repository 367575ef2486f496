/*  aq_grad - the AQLM objective and its codebook and scale gradients (the codebook update's)
 *
 *  CPU reference: kernels/ref/aq_grad_ref.c (the math is in its header).
 *
 *  Version 1 (this one), all in double as the reference, rows in chunks of GRAD_ROWS:
 *  - decode: u (rows, n_in) = the rows' unscaled codeword sums, r = w - s u (one thread per
 *    weight, the reference's order);
 *  - q = r H by cublasDgemm with H widened to double once (the row-major product through the
 *    column-major identity, as sgemm);
 *  - per row (one warp): loss_o = r_o . q_o and g_scale[o] = -2 q_o . u_o;
 *  - g_cb gathered as in aq_grad_dw.cu (one thread per codebook coordinate, rows and groups
 *    in the reference's order), added over the chunks in row order;
 *  - *loss = the row losses summed in row order by one thread.
 *  The dot products run in another order than the reference's (DGEMM, warp sums): results
 *  agree to double rounding, not bit for bit. Deterministic (no atomics).
 */
#include "kernels/cuda/cuda_internal.cuh"

/* rows per chunk: 3 x GRAD_ROWS x n_in doubles of scratch (the emulator sets a small one) */
#ifndef LMP_CUDA_GRAD_ROWS
#define LMP_CUDA_GRAD_ROWS 1024
#endif
static const int64_t GRAD_ROWS = LMP_CUDA_GRAD_ROWS;

__global__ void grad_decode_kernel(double *u, double *r, const float *w, const uint16_t *codes,
                                   const float *cb, const float *scale, int64_t o0, int64_t rows,
                                   int64_t n_in, int M, int K, int g) {
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= rows * n_in) return;
    const int64_t   o = o0 + i / n_in, col = i % n_in, j = col / g, t = col % g;
    const uint16_t *c   = codes + (o * (n_in / g) + j) * M;
    double          acc = 0.0;
    for (int m = 0; m < M; m++) acc += cb[((int64_t)m * K + c[m]) * g + t];
    u[i] = acc;
    r[i] = (double)w[o * n_in + col] - scale[o] * acc;
}

__global__ void grad_widen_kernel(double *hd, const float *h, int64_t n) {
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < n) hd[i] = (double)h[i];
}

/* one warp per row: row_loss[o] = r . q, g_scale[o] = -2 q . u; q becomes gr = -2 q */
__global__ void grad_rows_kernel(double *row_loss, float *g_scale, double *q, const double *r,
                                 const double *u, int64_t o0, int64_t rows, int64_t n_in) {
    const int64_t ro   = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) / 32;
    const int     lane = threadIdx.x % 32;
    if (ro >= rows) return;
    double l = 0.0, gs = 0.0;
    for (int64_t i = lane; i < n_in; i += 32) {
        const double qi = q[ro * n_in + i];
        l += r[ro * n_in + i] * qi;
        gs += -2.0 * qi * u[ro * n_in + i];
        q[ro * n_in + i] = -2.0 * qi;
    }
    for (int off = 16; off > 0; off >>= 1) {
        l += __shfl_down_sync(0xffffffffu, l, off);
        gs += __shfl_down_sync(0xffffffffu, gs, off);
    }
    if (lane == 0) {
        row_loss[o0 + ro] = l;
        g_scale[o0 + ro]  = (float)gs;
    }
}

/* gc[m, k, t] += sum over the chunk's rows o and groups j with codes[o, j, m] = k of
 * scale[o] gr[o, j g + t] */
__global__ void grad_gather_kernel(double *gc, const double *gr, const uint16_t *codes,
                                   const float *scale, int64_t o0, int64_t rows, int64_t n_in,
                                   int M, int K, int g) {
    const int64_t x = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (x >= (int64_t)M * K * g) return;
    const int64_t m = x / ((int64_t)K * g), k = (x / g) % K, t = x % g, n_grp = n_in / g;
    double        acc = gc[x];
    for (int64_t ro = 0; ro < rows; ro++)
        for (int64_t j = 0; j < n_grp; j++)
            if (codes[((o0 + ro) * n_grp + j) * M + m] == k)
                acc = __dadd_rn(acc, __dmul_rn((double)scale[o0 + ro], gr[ro * n_in + j * g + t]));
    gc[x] = acc;
}

__global__ void grad_finish_kernel(double *loss, float *g_cb, const double *gc,
                                   const double *row_loss, int64_t n_out, int64_t n_cb) {
    const int64_t x = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (x < n_cb) g_cb[x] = (float)gc[x];
    if (x == 0) {
        double l = 0.0;
        for (int64_t o = 0; o < n_out; o++) l += row_loss[o];
        *loss = l;
    }
}

extern "C" int lmp_aq_grad_cuda(double *loss, float *g_cb, float *g_scale, const uint16_t *codes,
                                const float *w, const float *scale, const float *cb, const float *h,
                                const struct lmp_aq_shape *s) {
    cudaStream_t   st = lmp_cuda_stream_get();
    cublasHandle_t hb = lmp_cuda_blas_get();
    if (st == NULL || hb == NULL) return LMP_ENOMEM;
    const int64_t n_in = s->n_in, n_cb = (int64_t)s->M * s->K * s->g;
    const int64_t chunk = s->n_out < GRAD_ROWS ? (s->n_out > 0 ? s->n_out : 1) : GRAD_ROWS;
    double       *hd    = (double *)lmp_cuda_scratch((size_t)(n_in * n_in) * sizeof(double));
    double       *u     = (double *)lmp_cuda_scratch((size_t)(3 * chunk * n_in) * sizeof(double));
    double       *gc    = (double *)lmp_cuda_scratch((size_t)n_cb * sizeof(double));
    double       *row_loss = (double *)lmp_cuda_scratch((size_t)(s->n_out > 0 ? s->n_out : 1) * 8);
    int           rc       = 0;
    if (hd == NULL || u == NULL || gc == NULL || row_loss == NULL) {
        rc = LMP_ENOMEM;
        goto out;
    }
    {
        double      *r = u + chunk * n_in, *q = r + chunk * n_in;
        const double one = 1.0, zero = 0.0;
        lmp_cuda_zero(gc, (size_t)n_cb * sizeof(double));
        grad_widen_kernel<<<lmp_cuda_blocks(n_in * n_in, 256), 256, 0, st>>>(hd, h, n_in * n_in);
        for (int64_t o0 = 0; o0 < s->n_out && rc == 0; o0 += chunk) {
            const int64_t rows = s->n_out - o0 < chunk ? s->n_out - o0 : chunk;
            grad_decode_kernel<<<lmp_cuda_blocks(rows * n_in, 256), 256, 0, st>>>(
                u, r, w, codes, cb, scale, o0, rows, n_in, s->M, s->K, s->g);
            /* column-major: q^T (n_in, rows) = H^T (n_in, n_in) r^T (n_in, rows) */
            if (!lmp_cuda_check_launch("aq_grad: decode") ||
                !lmp_cuda_check_blas(cublasDgemm(hb, CUBLAS_OP_N, CUBLAS_OP_N, (int)n_in, (int)rows,
                                                 (int)n_in, &one, hd, (int)n_in, r, (int)n_in,
                                                 &zero, q, (int)n_in),
                                     "aq_grad: cublasDgemm")) {
                rc = LMP_ENOMEM;
                break;
            }
            grad_rows_kernel<<<lmp_cuda_blocks(rows, 8), 256, 0, st>>>(row_loss, g_scale, q, r, u,
                                                                       o0, rows, n_in);
            grad_gather_kernel<<<lmp_cuda_blocks(n_cb, 128), 128, 0, st>>>(
                gc, q, codes, scale, o0, rows, n_in, s->M, s->K, s->g);
            if (!lmp_cuda_check_launch("aq_grad: rows")) rc = LMP_ENOMEM;
        }
        if (rc == 0) {
            grad_finish_kernel<<<lmp_cuda_blocks(n_cb, 256), 256, 0, st>>>(loss, g_cb, gc, row_loss,
                                                                           s->n_out, n_cb);
            if (!lmp_cuda_check_launch("aq_grad: finish")) rc = LMP_ENOMEM;
        }
    }
out:
    lmp_cuda_scratch_free(row_loss);
    lmp_cuda_scratch_free(gc);
    lmp_cuda_scratch_free(u);
    lmp_cuda_scratch_free(hd);
    return rc;
}
