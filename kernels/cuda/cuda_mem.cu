/*  cuda_mem - devices, memory, per-thread streams and the sticky error (cuda_mem.h)
 *
 *  Links the CUDA runtime and cuBLAS only (never libcuda): without a driver, the runtime's
 *  first call (cudaGetDeviceCount) returns an error, which is reported, not fatal.
 */
#include "kernels/cuda/cuda_internal.cuh"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* The calling thread's CUDA state. Plain data (no destructor): released explicitly by
 * lmp_cuda_thread_release; a thread that exits without it leaks one stream and handle. */
struct tstate {
    cudaStream_t    stream;
    cublasHandle_t  blas;
    int             dev;  /* device the stream was made on */
    bool            made; /* stream (and handle) exist */
    enum lmp_status err;  /* sticky: first failure since the last lmp_cuda_sync */
    char            msg[256];
};
static thread_local struct tstate ts;
static int                        use_dev; /* lmp_cuda_use's device */

static void record(enum lmp_status code, const char *fmt, ...) {
    if (ts.err != LMP_OK) return;
    ts.err = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ts.msg, sizeof(ts.msg), fmt, ap);
    va_end(ap);
}

bool lmp_cuda_check(cudaError_t e, const char *what) {
    if (e == cudaSuccess) return true;
    record(e == cudaErrorMemoryAllocation ? LMP_ENOMEM : LMP_ENODEV, "%s: %s", what,
           cudaGetErrorString(e));
    return false;
}

bool lmp_cuda_check_blas(cublasStatus_t e, const char *what) {
    if (e == CUBLAS_STATUS_SUCCESS) return true;
    record(e == CUBLAS_STATUS_ALLOC_FAILED ? LMP_ENOMEM : LMP_ENODEV, "%s: %s", what,
           cublasGetStatusString(e));
    return false;
}

bool lmp_cuda_check_launch(const char *what) {
    return lmp_cuda_check(cudaGetLastError(), what);
}

static bool thread_make(void) {
    if (ts.made && ts.dev == use_dev) return true;
    if (ts.made) lmp_cuda_thread_release();
    if (!lmp_cuda_check(cudaSetDevice(use_dev), "cudaSetDevice")) return false;
    if (!lmp_cuda_check(cudaStreamCreateWithFlags(&ts.stream, cudaStreamNonBlocking),
                        "cudaStreamCreate"))
        return false;
    if (!lmp_cuda_check_blas(cublasCreate(&ts.blas), "cublasCreate")) {
        cudaStreamDestroy(ts.stream);
        return false;
    }
    /* the reference's fp32 sums: no TF32 for sgemm (cuBLAS's default math mode is exact
     * fp32 already; set so that a changed default does not change results silently) */
    cublasSetMathMode(ts.blas, CUBLAS_DEFAULT_MATH);
    cublasSetStream(ts.blas, ts.stream);
    ts.dev  = use_dev;
    ts.made = true;
    return true;
}

cudaStream_t lmp_cuda_stream_get(void) {
    return thread_make() ? ts.stream : NULL;
}

cublasHandle_t lmp_cuda_blas_get(void) {
    return thread_make() ? ts.blas : NULL;
}

extern "C" void *lmp_cuda_stream(void) {
    return (void *)lmp_cuda_stream_get();
}

extern "C" void lmp_cuda_thread_release(void) {
    if (!ts.made) return;
    cudaStreamSynchronize(ts.stream);
    cublasDestroy(ts.blas);
    cudaStreamDestroy(ts.stream);
    ts.made = false;
}

extern "C" enum lmp_status lmp_cuda_devices(int *n_dev, struct lmp_err *err) {
    int         n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    *n_dev        = 0;
    if (e != cudaSuccess) {
        cudaGetLastError(); /* not sticky: clear it */
        return lmp_err_set(err, LMP_ENODEV, "no CUDA device: cudaGetDeviceCount: %s",
                           cudaGetErrorString(e));
    }
    if (n <= 0) return lmp_err_set(err, LMP_ENODEV, "no CUDA device: the driver reports none");
    *n_dev = n;
    return LMP_OK;
}

extern "C" enum lmp_status lmp_cuda_device_info(int dev, struct lmp_cuda_info *info,
                                                struct lmp_err *err) {
    int             n  = 0;
    enum lmp_status st = lmp_cuda_devices(&n, err);
    if (st != LMP_OK) return st;
    if (dev < 0 || dev >= n)
        return lmp_err_set(err, LMP_ENODEV, "no CUDA device cuda:%d (this machine has %d)", dev, n);
    cudaDeviceProp p;
    cudaError_t    e = cudaGetDeviceProperties(&p, dev);
    if (e != cudaSuccess)
        return lmp_err_set(err, LMP_ENODEV, "cuda:%d: cudaGetDeviceProperties: %s", dev,
                           cudaGetErrorString(e));
    memset(info, 0, sizeof(*info));
    snprintf(info->name, sizeof(info->name), "%.127s", p.name);
    info->memory_bytes = (uint64_t)p.totalGlobalMem;
    info->cc           = p.major * 10 + p.minor;
    info->n_sm         = p.multiProcessorCount;
    /* clocks are attributes since CUDA 13 (cudaDeviceProp lost clockRate, memoryClockRate) */
    int clock_khz = 0, mem_khz = 0, bus_bits = p.memoryBusWidth;
    cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, dev);
    cudaDeviceGetAttribute(&mem_khz, cudaDevAttrMemoryClockRate, dev);
    /* 128 fp32 lanes per SM from sm_80 (A100 has 64: its figure is then twice the real) */
    const int lanes = info->cc == 80 ? 64 : 128;
    info->peak_fp32 = 2.0 * lanes * info->n_sm * (double)clock_khz * 1e3;
    info->peak_bw   = 2.0 * (double)mem_khz * 1e3 * bus_bits / 8.0;
    return LMP_OK;
}

extern "C" enum lmp_status lmp_cuda_use(int dev, struct lmp_err *err) {
    struct lmp_cuda_info info;
    enum lmp_status      st = lmp_cuda_device_info(dev, &info, err);
    if (st != LMP_OK) return st;
    cudaError_t e = cudaSetDevice(dev);
    if (e != cudaSuccess)
        return lmp_err_set(err, LMP_ENODEV, "cuda:%d: cudaSetDevice: %s", dev,
                           cudaGetErrorString(e));
    use_dev = dev;
    return LMP_OK;
}

extern "C" void *lmp_cuda_alloc(size_t bytes) {
    void *p = NULL;
    if (bytes == 0) return NULL;
    if (!thread_make()) return NULL;
    if (!lmp_cuda_check(cudaMalloc(&p, bytes), "cudaMalloc")) return NULL;
    return p;
}

extern "C" void lmp_cuda_free(void *p) {
    if (p == NULL) return;
    if (ts.made) cudaStreamSynchronize(ts.stream); /* the thread's queued ops may use p */
    lmp_cuda_check(cudaFree(p), "cudaFree");
}

static cudaMemcpyKind kind_of(enum lmp_copy_dir dir) {
    return dir == LMP_COPY_HOST_TO_DEVICE   ? cudaMemcpyHostToDevice
           : dir == LMP_COPY_DEVICE_TO_HOST ? cudaMemcpyDeviceToHost
                                            : cudaMemcpyDeviceToDevice;
}

extern "C" void lmp_cuda_copy_async(void *dst, const void *src, size_t bytes,
                                    enum lmp_copy_dir dir) {
    cudaStream_t s = lmp_cuda_stream_get();
    if (s == NULL || bytes == 0) return;
    lmp_cuda_check(cudaMemcpyAsync(dst, src, bytes, kind_of(dir), s), "cudaMemcpyAsync");
}

extern "C" void lmp_cuda_copy(void *dst, const void *src, size_t bytes, enum lmp_copy_dir dir) {
    cudaStream_t s = lmp_cuda_stream_get();
    if (s == NULL) return;
    if (bytes) lmp_cuda_check(cudaMemcpyAsync(dst, src, bytes, kind_of(dir), s), "cudaMemcpy");
    lmp_cuda_check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
}

extern "C" void lmp_cuda_zero(void *dst, size_t bytes) {
    cudaStream_t s = lmp_cuda_stream_get();
    if (s == NULL || bytes == 0) return;
    lmp_cuda_check(cudaMemsetAsync(dst, 0, bytes, s), "cudaMemsetAsync");
}

void *lmp_cuda_scratch(size_t bytes) {
    cudaStream_t s = lmp_cuda_stream_get();
    void        *p = NULL;
    if (s == NULL || bytes == 0) return NULL;
    if (!lmp_cuda_check(cudaMallocAsync(&p, bytes, s), "cudaMallocAsync")) return NULL;
    return p;
}

void lmp_cuda_scratch_free(void *p) {
    if (p == NULL || !ts.made) return;
    lmp_cuda_check(cudaFreeAsync(p, ts.stream), "cudaFreeAsync");
}

extern "C" enum lmp_status lmp_cuda_sync(struct lmp_err *err) {
    if (ts.made) lmp_cuda_check(cudaStreamSynchronize(ts.stream), "cudaStreamSynchronize");
    enum lmp_status st = ts.err;
    if (st != LMP_OK) lmp_err_set(err, st, "%s", ts.msg);
    ts.err    = LMP_OK;
    ts.msg[0] = '\0';
    return st;
}

extern "C" enum lmp_status lmp_kernels_init_cuda(struct lmp_kernels *k, int dev,
                                                 struct lmp_err *err) {
    enum lmp_status st = lmp_cuda_use(dev, err);
    if (st != LMP_OK) return st;
    memset(k, 0, sizeof(*k));
    k->name          = "cuda";
    k->device        = LMP_DEVICE_CUDA;
    k->mem_alloc     = lmp_cuda_alloc;
    k->mem_free      = lmp_cuda_free;
    k->mem_copy      = lmp_cuda_copy;
    k->sgemm         = lmp_sgemm_cuda;
    k->gram_acc      = lmp_gram_acc_cuda;
    k->kmeans_assign = lmp_kmeans_assign_cuda;
    k->kmeans_update = lmp_kmeans_update_cuda;
    k->aq_grad_dw    = lmp_aq_grad_dw_cuda;
    k->aq_grad       = lmp_aq_grad_cuda;
    k->aq_beam       = lmp_aq_beam_cuda;
    k->aq_decode     = lmp_aq_decode_cuda;
    k->aq_matvec     = lmp_aq_matvec_cuda;
    return LMP_OK;
}
