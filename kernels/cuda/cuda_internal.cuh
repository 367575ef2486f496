/*  cuda_internal - what the CUDA table's .cu files share (not a public header)
 *
 *  The calling thread's stream and cuBLAS handle, the sticky error of kernels/cuda/cuda_mem.h,
 *  stream-ordered scratch, and the launch helpers.
 */
#ifndef LMP_KERNELS_CUDA_CUDA_INTERNAL_CUH
#define LMP_KERNELS_CUDA_CUDA_INTERNAL_CUH

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stdint.h>

extern "C" {
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/cuda_mem.h"
}

/* The calling thread's stream and cuBLAS handle (made on first use; NULL after a failure,
 * which is then recorded). */
cudaStream_t   lmp_cuda_stream_get(void);
cublasHandle_t lmp_cuda_blas_get(void);

/* Record a failure in the calling thread's sticky error (the first one wins). what: the
 * call that failed. Returns false when e is an error (true for cudaSuccess). */
bool lmp_cuda_check(cudaError_t e, const char *what);
bool lmp_cuda_check_blas(cublasStatus_t e, const char *what);
/* Check the last kernel launch. */
bool lmp_cuda_check_launch(const char *what);

/* bytes of scratch on the calling thread's stream; NULL (recorded) on failure. */
void *lmp_cuda_scratch(size_t bytes);
void  lmp_cuda_scratch_free(void *p);

static inline unsigned lmp_cuda_blocks(int64_t n, int threads) {
    int64_t b = (n + threads - 1) / threads;
    return (unsigned)(b < 1 ? 1 : b > 2147483647 ? 2147483647 : b);
}

#endif /* LMP_KERNELS_CUDA_CUDA_INTERNAL_CUH */
