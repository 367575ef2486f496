/*  gemm_cublas - sgemm and the Gram accumulation by cuBLAS
 *
 *  CPU reference: kernels/ref/sgemm_ref.c, kernels/ref/gram_acc_ref.c.
 *
 *  sgemm: row-major C = alpha op(A) op(B) + beta C is column-major C^T = alpha op(B)^T
 *  op(A)^T + beta C^T, so cublasSgemm is called with the operands swapped (m and n too)
 *  and the same transposes. Exact fp32 (CUBLAS_DEFAULT_MATH: no TF32).
 *
 *  gram_acc: h (n_in, n_in) double += x^T x. The products of two floats are exact in
 *  double, as in the reference: x is widened to double on the device, a chunk of tokens
 *  at a time, and cublasDsyrk adds X^T X to one triangle (row-major lower = column-major
 *  upper), which is then mirrored. The sums' order differs from the reference's, so the
 *  results agree to double rounding, not bit for bit.
 */
#include "kernels/cuda/cuda_internal.cuh"

/* Tokens widened at once: 4096 x n_in doubles (32 MiB at n_in = 1024). */
static const int64_t GRAM_CHUNK = 4096;

__global__ void scale_c(float *c, int64_t m, int64_t n, int64_t ldc, float beta) {
    int64_t i = blockIdx.y * (int64_t)blockDim.y + threadIdx.y;
    int64_t j = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < m && j < n) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
}

extern "C" void lmp_sgemm_cuda(enum lmp_trans ta, enum lmp_trans tb, int64_t m, int64_t n,
                               int64_t k, float alpha, const float *a, int64_t lda, const float *b,
                               int64_t ldb, float beta, float *c, int64_t ldc) {
    cublasHandle_t h = lmp_cuda_blas_get();
    if (h == NULL || m <= 0 || n <= 0) return;
    const cublasOperation_t opa = ta == LMP_TRANS ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t opb = tb == LMP_TRANS ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (k <= 0) { /* C = beta C (cuBLAS wants k >= 1); beta == 0: C = 0, NaN ignored */
        dim3 th(32, 8), bl(lmp_cuda_blocks(n, 32), lmp_cuda_blocks(m, 8));
        scale_c<<<bl, th, 0, lmp_cuda_stream_get()>>>(c, m, n, ldc, beta);
        lmp_cuda_check_launch("sgemm: scale");
        return;
    }
    lmp_cuda_check_blas(cublasSgemm(h, opb, opa, (int)n, (int)m, (int)k, &alpha, b, (int)ldb, a,
                                    (int)lda, &beta, c, (int)ldc),
                        "cublasSgemm");
}

__global__ void widen(double *xd, const float *x, int64_t n) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < n) xd[i] = (double)x[i];
}

/* h[b, a] = h[a, b] for b > a (row-major): copy the computed lower triangle upwards. */
__global__ void mirror_lower(double *h, int64_t n_in) {
    int64_t a = blockIdx.y * (int64_t)blockDim.y + threadIdx.y; /* row */
    int64_t b = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; /* column */
    if (a < n_in && b < n_in && b > a) h[a * n_in + b] = h[b * n_in + a];
}

extern "C" void lmp_gram_acc_cuda(double *h, const float *x, int64_t n_tok, int64_t n_in) {
    cublasHandle_t hb = lmp_cuda_blas_get();
    cudaStream_t   s  = lmp_cuda_stream_get();
    if (hb == NULL || n_tok <= 0 || n_in <= 0) return;
    const int64_t chunk = n_tok < GRAM_CHUNK ? n_tok : GRAM_CHUNK;
    double       *xd    = (double *)lmp_cuda_scratch((size_t)(chunk * n_in) * sizeof(double));
    if (xd == NULL) return;
    const double one = 1.0;
    for (int64_t t0 = 0; t0 < n_tok; t0 += chunk) {
        const int64_t nt = n_tok - t0 < chunk ? n_tok - t0 : chunk;
        widen<<<lmp_cuda_blocks(nt * n_in, 256), 256, 0, s>>>(xd, x + t0 * n_in, nt * n_in);
        if (!lmp_cuda_check_launch("gram_acc: widen")) break;
        /* column-major: xd is X^T (n_in, nt), ld n_in; H += X^T X is C = A A^T (OP_N), and
         * the column-major upper triangle is the row-major lower one */
        if (!lmp_cuda_check_blas(cublasDsyrk(hb, CUBLAS_FILL_MODE_UPPER, CUBLAS_OP_N, (int)n_in,
                                             (int)nt, &one, xd, (int)n_in, &one, h, (int)n_in),
                                 "cublasDsyrk"))
            break;
    }
    dim3 th(32, 8), bl(lmp_cuda_blocks(n_in, 32), lmp_cuda_blocks(n_in, 8));
    mirror_lower<<<bl, th, 0, s>>>(h, n_in);
    lmp_cuda_check_launch("gram_acc: mirror");
    lmp_cuda_scratch_free(xd);
}
