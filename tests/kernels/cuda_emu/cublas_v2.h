/*  cublas_v2 - a stand-in cuBLAS over OpenBLAS for the CUDA emulator (column-major, as cuBLAS) */
#ifndef LMP_TESTS_CUDA_EMU_CUBLAS_V2_H
#define LMP_TESTS_CUDA_EMU_CUBLAS_V2_H

#include <cblas.h>

#include "cuda_runtime.h"

typedef void *cublasHandle_t;
enum cublasStatus_t { CUBLAS_STATUS_SUCCESS = 0, CUBLAS_STATUS_ALLOC_FAILED = 3 };
enum cublasOperation_t { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 };
enum cublasFillMode_t { CUBLAS_FILL_MODE_LOWER = 0, CUBLAS_FILL_MODE_UPPER = 1 };
enum cublasMath_t { CUBLAS_DEFAULT_MATH = 0 };

static inline const char *cublasGetStatusString(cublasStatus_t s) {
    return s == CUBLAS_STATUS_SUCCESS ? "success" : "failed";
}
static inline cublasStatus_t cublasCreate(cublasHandle_t *h) {
    static char one;
    return *h = &one, CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasDestroy(cublasHandle_t h) {
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s) {
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t m) {
    return CUBLAS_STATUS_SUCCESS;
}
static inline CBLAS_TRANSPOSE emu_op(cublasOperation_t o) {
    return o == CUBLAS_OP_T ? CblasTrans : CblasNoTrans;
}
static inline cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta,
                                         cublasOperation_t tb, int m, int n, int k,
                                         const float *alpha, const float *a, int lda,
                                         const float *b, int ldb, const float *beta, float *c,
                                         int ldc) {
    cblas_sgemm(CblasColMajor, emu_op(ta), emu_op(tb), m, n, k, *alpha, a, lda, b, ldb, *beta, c,
                ldc);
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasDgemm(cublasHandle_t h, cublasOperation_t ta,
                                         cublasOperation_t tb, int m, int n, int k,
                                         const double *alpha, const double *a, int lda,
                                         const double *b, int ldb, const double *beta, double *c,
                                         int ldc) {
    cblas_dgemm(CblasColMajor, emu_op(ta), emu_op(tb), m, n, k, *alpha, a, lda, b, ldb, *beta, c,
                ldc);
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasDsyrk(cublasHandle_t h, cublasFillMode_t uplo,
                                         cublasOperation_t t, int n, int k, const double *alpha,
                                         const double *a, int lda, const double *beta, double *c,
                                         int ldc) {
    cblas_dsyrk(CblasColMajor, uplo == CUBLAS_FILL_MODE_UPPER ? CblasUpper : CblasLower, emu_op(t),
                n, k, *alpha, a, lda, *beta, c, ldc);
    return CUBLAS_STATUS_SUCCESS;
}

#endif /* LMP_TESTS_CUDA_EMU_CUBLAS_V2_H */
