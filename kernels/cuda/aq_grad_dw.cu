/*  aq_grad_dw - codebook and scale gradients from a dense weight gradient (codes frozen)
 *
 *  CPU reference: kernels/ref/aq_grad_dw_ref.c.
 *
 *      g_scale[o]       = sum_j sum_m sum_t dw[o, j g + t] cb_m[codes[o, j, m]][t]
 *      g_cb[m][k][t]    = sum over (o, j) with codes[o, j, m] = k of scale[o] dw[o, j g + t]
 *
 *  Version 1 (this one), deterministic, no atomics: g_scale one warp per row (double, lanes
 *  over the row's weights: another summation order than the reference, fp32 result within
 *  rounding); g_cb one thread per codebook entry coordinate (m, k, t), scanning the rows and
 *  groups in the reference's order and adding where the code is k (no contraction): the
 *  reference's bits. O(n_out n_grp) per thread: a gather instead of the reference's scatter.
 */
#include "kernels/cuda/cuda_internal.cuh"

__global__ void grad_scale_kernel(float *g_scale, const float *dw, const uint16_t *codes,
                                  const float *cb, int64_t n_out, int64_t n_in, int M, int K,
                                  int g) {
    const int64_t o    = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) / 32;
    const int     lane = threadIdx.x % 32;
    if (o >= n_out) return;
    const int64_t n_grp = n_in / g;
    double        acc   = 0.0;
    for (int64_t col = lane; col < n_in; col += 32) {
        const int64_t   j = col / g, t = col % g;
        const uint16_t *c = codes + (o * n_grp + j) * M;
        for (int m = 0; m < M; m++)
            acc += (double)dw[o * n_in + col] * cb[((int64_t)m * K + c[m]) * g + t];
    }
    for (int off = 16; off > 0; off >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, off);
    if (lane == 0) g_scale[o] = (float)acc;
}

__global__ void grad_cb_kernel(float *g_cb, const float *dw, const uint16_t *codes,
                               const float *scale, int64_t n_out, int64_t n_in, int M, int K,
                               int g) {
    const int64_t x = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (x >= (int64_t)M * K * g) return;
    const int64_t m = x / ((int64_t)K * g), k = (x / g) % K, t = x % g, n_grp = n_in / g;
    double        acc = 0.0;
    for (int64_t o = 0; o < n_out; o++)
        for (int64_t j = 0; j < n_grp; j++)
            if (codes[(o * n_grp + j) * M + m] == k)
                acc = __dadd_rn(acc, __dmul_rn((double)scale[o], (double)dw[o * n_in + j * g + t]));
    g_cb[x] = (float)acc;
}

extern "C" int lmp_aq_grad_dw_cuda(float *g_cb, float *g_scale, const float *dw,
                                   const uint16_t *codes, const float *cb, const float *scale,
                                   const struct lmp_aq_shape *s) {
    cudaStream_t st = lmp_cuda_stream_get();
    if (st == NULL) return LMP_ENOMEM;
    const int64_t n_cb = (int64_t)s->M * s->K * s->g;
    grad_cb_kernel<<<lmp_cuda_blocks(n_cb, 128), 128, 0, st>>>(g_cb, dw, codes, scale, s->n_out,
                                                               s->n_in, s->M, s->K, s->g);
    if (s->n_out > 0)
        grad_scale_kernel<<<lmp_cuda_blocks(s->n_out, 8), 256, 0, st>>>(
            g_scale, dw, codes, cb, s->n_out, s->n_in, s->M, s->K, s->g);
    return lmp_cuda_check_launch("aq_grad_dw") ? 0 : LMP_ENOMEM;
}
