/*  aq_decode - dense weights from AQLM codes, codebooks and scales
 *
 *  CPU reference: kernels/ref/aq_decode_ref.c.
 *
 *      w[o, j g + t] = scale[o] * sum_m cb[m][codes[o, j, m]][t]
 *
 *  Version 1 (this one): one thread per weight, the codewords summed in the reference's
 *  order (m = 0, 1, ...) in fp32 and then scaled: the same operations as the reference,
 *  so the same bits. Memory-bound: each thread reads its M codes (shared by the g threads
 *  of its group, cached) and M codebook entries.
 */
#include "kernels/cuda/cuda_internal.cuh"

__global__ void aq_decode_kernel(float *w, const uint16_t *codes, const float *cb,
                                 const float *scale, int64_t n_out, int64_t n_in, int M, int K,
                                 int g) {
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= n_out * n_in) return;
    const int64_t   o = i / n_in, col = i % n_in, j = col / g, t = col % g, n_grp = n_in / g;
    const uint16_t *c   = codes + (o * n_grp + j) * M;
    float           acc = 0.0f;
    for (int m = 0; m < M; m++) acc += cb[((int64_t)m * K + c[m]) * g + t];
    w[i] = acc * scale[o];
}

extern "C" void lmp_aq_decode_cuda(float *w, const uint16_t *codes, const float *cb,
                                   const float *scale, const struct lmp_aq_shape *s) {
    cudaStream_t st = lmp_cuda_stream_get();
    if (st == NULL || s->n_out <= 0) return;
    aq_decode_kernel<<<lmp_cuda_blocks(s->n_out * s->n_in, 256), 256, 0, st>>>(
        w, codes, cb, scale, s->n_out, s->n_in, s->M, s->K, s->g);
    lmp_cuda_check_launch("aq_decode");
}
