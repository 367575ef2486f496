/*  aq_matvec - y = x W_hat^T straight from the codes (the quantized linear's inference)
 *
 *  CPU reference: kernels/ref/aq_matvec_ref.c (the same two algorithms).
 *
 *  Version 1 (this one):
 *  - K <= 256 (Kx8 codebooks): lookup tables lut[b, j, m, k] = cb[m][k] . x[b, j g ..]
 *    (fp32, one thread per entry, the dot in the reference's order), then one warp per
 *    output (b, o): each lane sums the entries its codes select over a strided share of
 *    the n_grp M positions in double, a warp shuffle adds the lanes, y = sum * scale[o].
 *    Tables for a chunk of input rows at a time (at most 64 MiB).
 *  - K > 256 (1x16): decode-dot, one warp per output, lanes over the weights of the row:
 *    w = sum_m codewords (fp32, reference order) times x, summed in double.
 *  The double sums are added in another order than the reference's: results agree to
 *  about 1e-6 relative (fp32 table entries), not bit for bit.
 */
#include "kernels/cuda/cuda_internal.cuh"

/* bytes of lookup tables at once (the emulator sets a small value to run several chunks) */
#ifndef LMP_CUDA_LUT_MAX_BYTES
#define LMP_CUDA_LUT_MAX_BYTES (64 << 20)
#endif
static const int64_t LUT_MAX_BYTES = LMP_CUDA_LUT_MAX_BYTES;
static const int     WARPS         = 8;

__global__ void lut_kernel(float *lut, const float *x, const float *cb, int64_t nb, int64_t n_in,
                           int M, int K, int g) {
    const int64_t n_grp = n_in / g, per_row = n_grp * M * K;
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= nb * per_row) return;
    const int64_t b = i / per_row, r = i % per_row, j = r / ((int64_t)M * K);
    const int64_t mk = r % ((int64_t)M * K); /* m K + k */
    const float  *c = cb + mk * g, *xg = x + b * n_in + j * g;
    float         dot = 0.0f;
    for (int t = 0; t < g; t++) dot += c[t] * xg[t];
    lut[i] = dot;
}

__device__ double warp_sum(double v) {
    for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
    return v;
}

__global__ void lut_sum_kernel(float *y, const float *lut, const uint16_t *codes,
                               const float *scale, int64_t nb, int64_t n_out, int64_t n_pos,
                               int K) {
    const int64_t wid  = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) / 32;
    const int     lane = threadIdx.x % 32;
    if (wid >= nb * n_out) return; /* whole warps leave together */
    const int64_t   b = wid / n_out, o = wid % n_out;
    const uint16_t *co  = codes + o * n_pos;
    const float    *lb  = lut + b * n_pos * K;
    double          acc = 0.0;
    for (int64_t p = lane; p < n_pos; p += 32) acc += lb[p * K + co[p]];
    acc = warp_sum(acc);
    if (lane == 0) y[b * n_out + o] = (float)(acc * scale[o]);
}

__global__ void decode_dot_kernel(float *y, const float *x, const uint16_t *codes, const float *cb,
                                  const float *scale, int64_t nb, int64_t n_out, int64_t n_in,
                                  int M, int K, int g) {
    const int64_t wid  = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) / 32;
    const int     lane = threadIdx.x % 32;
    if (wid >= nb * n_out) return;
    const int64_t b = wid / n_out, o = wid % n_out, n_grp = n_in / g;
    double        acc = 0.0;
    for (int64_t col = lane; col < n_in; col += 32) {
        const int64_t   j = col / g, t = col % g;
        const uint16_t *c = codes + (o * n_grp + j) * M;
        float           w = 0.0f;
        for (int m = 0; m < M; m++) w += cb[((int64_t)m * K + c[m]) * g + t];
        acc += (double)w * (double)x[b * n_in + col];
    }
    acc = warp_sum(acc);
    if (lane == 0) y[b * n_out + o] = (float)(acc * scale[o]);
}

extern "C" int lmp_aq_matvec_cuda(float *y, const float *x, int64_t n_batch, const uint16_t *codes,
                                  const float *cb, const float *scale,
                                  const struct lmp_aq_shape *s) {
    cudaStream_t st = lmp_cuda_stream_get();
    if (st == NULL) return LMP_ENOMEM;
    if (n_batch <= 0 || s->n_out <= 0) return 0;
    const int threads = 32 * WARPS;
    if (s->K > 256) {
        decode_dot_kernel<<<lmp_cuda_blocks(n_batch * s->n_out, WARPS), threads, 0, st>>>(
            y, x, codes, cb, scale, n_batch, s->n_out, s->n_in, s->M, s->K, s->g);
        return lmp_cuda_check_launch("aq_matvec: decode-dot") ? 0 : LMP_ENOMEM;
    }
    const int64_t n_pos = s->n_in / s->g * s->M, per_row = n_pos * s->K;
    int64_t       chunk = LUT_MAX_BYTES / (int64_t)sizeof(float) / per_row;
    if (chunk < 1) chunk = 1;
    if (chunk > n_batch) chunk = n_batch;
    float *lut = (float *)lmp_cuda_scratch((size_t)(chunk * per_row) * sizeof(float));
    if (lut == NULL) return LMP_ENOMEM;
    int rc = 0;
    for (int64_t b0 = 0; b0 < n_batch && rc == 0; b0 += chunk) {
        const int64_t nb = n_batch - b0 < chunk ? n_batch - b0 : chunk;
        lut_kernel<<<lmp_cuda_blocks(nb * per_row, 256), 256, 0, st>>>(
            lut, x + b0 * s->n_in, cb, nb, s->n_in, s->M, s->K, s->g);
        lut_sum_kernel<<<lmp_cuda_blocks(nb * s->n_out, WARPS), threads, 0, st>>>(
            y + b0 * s->n_out, lut, codes, scale, nb, s->n_out, n_pos, s->K);
        if (!lmp_cuda_check_launch("aq_matvec: lookup tables")) rc = LMP_ENOMEM;
    }
    lmp_cuda_scratch_free(lut);
    return rc;
}
