/*  cuda_runtime - a stand-in CUDA runtime for running kernels/cuda/ on the CPU (emulator)
 *
 *  Not CUDA: just enough of its API for the CUDA table's host code to run in host memory,
 *  with kernels launched by emu.h (scripts/cuda_emu_check.sh). Device memory is host memory;
 *  streams are synchronous; one device.
 */
#ifndef LMP_TESTS_CUDA_EMU_CUDA_RUNTIME_H
#define LMP_TESTS_CUDA_EMU_CUDA_RUNTIME_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emu.h"

enum cudaError_t { cudaSuccess = 0, cudaErrorMemoryAllocation = 2 };
typedef void *cudaStream_t;
enum cudaMemcpyKind {
    cudaMemcpyHostToDevice   = 1,
    cudaMemcpyDeviceToHost   = 2,
    cudaMemcpyDeviceToDevice = 3
};
enum { cudaStreamNonBlocking = 1 };
enum cudaDeviceAttr { cudaDevAttrClockRate = 13, cudaDevAttrMemoryClockRate = 36 };
struct cudaDeviceProp {
    char   name[256];
    size_t totalGlobalMem;
    int    major, minor, multiProcessorCount, memoryBusWidth;
};

static inline const char *cudaGetErrorString(cudaError_t e) {
    return e == cudaSuccess ? "no error" : "out of memory";
}
static inline cudaError_t cudaGetLastError(void) {
    return cudaSuccess;
}
static inline cudaError_t cudaGetDeviceCount(int *n) {
    return *n = 1, cudaSuccess;
}
static inline cudaError_t cudaSetDevice(int d) {
    return d == 0 ? cudaSuccess : cudaErrorMemoryAllocation;
}
static inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d) {
    memset(p, 0, sizeof(*p));
    snprintf(p->name, sizeof(p->name), "lmpress CUDA emulator (CPU)");
    p->totalGlobalMem = (size_t)1 << 30, p->major = 9, p->multiProcessorCount = 1;
    p->memoryBusWidth = 64;
    return cudaSuccess;
}
static inline cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr a, int d) {
    return *v = 1000000, cudaSuccess;
}
static inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned f) {
    static char one;
    return *s = &one, cudaSuccess;
}
static inline cudaError_t cudaStreamDestroy(cudaStream_t s) {
    return cudaSuccess;
}
static inline cudaError_t cudaStreamSynchronize(cudaStream_t s) {
    return cudaSuccess;
}
/* allocations are poisoned (NaN bytes) so a kernel that reads what it never wrote shows */
static inline cudaError_t cudaMalloc(void **p, size_t n) {
    *p = aligned_alloc(256, (n + 255) / 256 * 256);
    if (*p) memset(*p, 0xff, n);
    return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
static inline cudaError_t cudaFree(void *p) {
    return free(p), cudaSuccess;
}
static inline cudaError_t cudaMallocAsync(void **p, size_t n, cudaStream_t s) {
    return cudaMalloc(p, n);
}
static inline cudaError_t cudaFreeAsync(void *p, cudaStream_t s) {
    return cudaFree(p);
}
static inline cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, cudaMemcpyKind k,
                                          cudaStream_t st) {
    return memcpy(d, s, n), cudaSuccess;
}
static inline cudaError_t cudaMemsetAsync(void *d, int v, size_t n, cudaStream_t st) {
    return memset(d, v, n), cudaSuccess;
}

/* intrinsics: the emulator compiles with -ffp-contract=off, so plain operations round once */
static inline double __dadd_rn(double a, double b) {
    return a + b;
}
static inline double __dmul_rn(double a, double b) {
    return a * b;
}
static inline float __fadd_rn(float a, float b) {
    return a + b;
}
static inline float __fmul_rn(float a, float b) {
    return a * b;
}

#endif /* LMP_TESTS_CUDA_EMU_CUDA_RUNTIME_H */
