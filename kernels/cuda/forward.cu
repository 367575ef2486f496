/*  forward - RMSNorm, RoPE, SwiGLU and softmax on the device (kernels/forward.h)
 *
 *  CPU reference: kernels/ref/forward_ref.c.
 *
 *  Version 1 (this one): RMSNorm and softmax one block of 256 threads per row (the row's
 *  sum in double, a shared-memory tree, so in another order than the reference: results
 *  agree to fp32 rounding); RoPE one thread per rotated pair, SwiGLU one thread per
 *  element (the reference's operations, expf on the device differs from glibc's by at
 *  most 2 ulp).
 */
#include "kernels/cuda/cuda_internal.cuh"

enum { ROW_THREADS = 256 };

__device__ double block_sum(double v, double *sh) {
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int k = ROW_THREADS / 2; k > 0; k >>= 1) {
        if ((int)threadIdx.x < k) sh[threadIdx.x] += sh[threadIdx.x + k];
        __syncthreads();
    }
    double r = sh[0];
    __syncthreads();
    return r;
}

__global__ void rmsnorm_kernel(float *out, const float *x, const float *w, int64_t dim, float eps) {
    __shared__ double sh[ROW_THREADS];
    const float      *xr = x + blockIdx.x * dim;
    float            *o  = out + blockIdx.x * dim;
    double            ss = 0;
    for (int64_t i = threadIdx.x; i < dim; i += ROW_THREADS) ss += (double)xr[i] * xr[i];
    ss            = block_sum(ss, sh);
    const float s = (float)(1.0 / sqrt(ss / (double)dim + (double)eps));
    for (int64_t i = threadIdx.x; i < dim; i += ROW_THREADS) o[i] = xr[i] * s * w[i];
}

extern "C" void lmp_rmsnorm_cuda(float *out, const float *x, const float *w, int64_t n_rows,
                                 int64_t dim, float eps) {
    cudaStream_t st = lmp_cuda_stream_get();
    if (st == NULL || n_rows <= 0) return;
    rmsnorm_kernel<<<(unsigned)n_rows, ROW_THREADS, 0, st>>>(out, x, w, dim, eps);
    lmp_cuda_check_launch("rmsnorm");
}

__global__ void rope_kernel(float *x, int64_t n_rows, int n_heads, int64_t head_dim,
                            const float *cos_t, const float *sin_t, int64_t pos0, int64_t n_tok,
                            bool interleaved) {
    const int64_t half = head_dim / 2;
    const int64_t i    = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= n_rows * n_heads * half) return;
    const int64_t r = i / (n_heads * half), hp = i % (n_heads * half), h = hp / half, p = hp % half;
    const int64_t pos = pos0 + r % n_tok;
    float        *xh  = x + (r * n_heads + h) * head_dim;
    const int64_t ia = interleaved ? 2 * p : p, ib = interleaved ? 2 * p + 1 : p + half;
    const float   a = xh[ia], b = xh[ib], c = cos_t[pos * half + p], sn = sin_t[pos * half + p];
    /* __fmul_rn / __fadd_rn: no FMA contraction, the reference's two roundings */
    xh[ia] = __fadd_rn(__fmul_rn(a, c), -__fmul_rn(b, sn));
    xh[ib] = __fadd_rn(__fmul_rn(a, sn), __fmul_rn(b, c));
}

extern "C" void lmp_rope_cuda(float *x, int64_t n_rows, int n_heads, int64_t head_dim,
                              const float *cos_t, const float *sin_t, int64_t pos0, int64_t n_tok,
                              bool interleaved) {
    cudaStream_t st = lmp_cuda_stream_get();
    if (st == NULL || n_rows <= 0) return;
    const int64_t n = n_rows * n_heads * (head_dim / 2);
    rope_kernel<<<lmp_cuda_blocks(n, 256), 256, 0, st>>>(x, n_rows, n_heads, head_dim, cos_t, sin_t,
                                                         pos0, n_tok, interleaved);
    lmp_cuda_check_launch("rope");
}

__global__ void swiglu_kernel(float *g, const float *u, int64_t n) {
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < n) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

extern "C" void lmp_swiglu_cuda(float *g, const float *u, int64_t n) {
    cudaStream_t st = lmp_cuda_stream_get();
    if (st == NULL || n <= 0) return;
    swiglu_kernel<<<lmp_cuda_blocks(n, 256), 256, 0, st>>>(g, u, n);
    lmp_cuda_check_launch("swiglu");
}

__global__ void softmax_kernel(float *x, int64_t n) {
    __shared__ double sh[ROW_THREADS];
    __shared__ float  shm[ROW_THREADS];
    float            *row = x + blockIdx.x * n;
    float             mx  = -INFINITY;
    for (int64_t i = threadIdx.x; i < n; i += ROW_THREADS) mx = fmaxf(mx, row[i]);
    shm[threadIdx.x] = mx;
    __syncthreads();
    for (int k = ROW_THREADS / 2; k > 0; k >>= 1) {
        if ((int)threadIdx.x < k) shm[threadIdx.x] = fmaxf(shm[threadIdx.x], shm[threadIdx.x + k]);
        __syncthreads();
    }
    mx         = shm[0];
    double sum = 0;
    for (int64_t i = threadIdx.x; i < n; i += ROW_THREADS) {
        row[i] = expf(row[i] - mx);
        sum += row[i];
    }
    sum             = block_sum(sum, sh);
    const float inv = (float)(1.0 / sum);
    for (int64_t i = threadIdx.x; i < n; i += ROW_THREADS) row[i] *= inv;
}

extern "C" void lmp_softmax_cuda(float *x, int64_t n_rows, int64_t n) {
    cudaStream_t st = lmp_cuda_stream_get();
    if (st == NULL || n_rows <= 0 || n <= 0) return;
    softmax_kernel<<<(unsigned)n_rows, ROW_THREADS, 0, st>>>(x, n);
    lmp_cuda_check_launch("softmax");
}
