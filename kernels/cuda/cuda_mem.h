/*  cuda_mem - the CUDA table's devices, memory and streams (kernels/cuda/cuda_mem.cu)
 *
 *  Only built with -DLMP_CUDA=ON (then lmp_kernels defines LMP_HAVE_CUDA). Everything
 *  here links the CUDA runtime and cuBLAS only, never the driver library (libcuda): a
 *  binary built with CUDA still starts on a machine without a GPU or driver, where
 *  lmp_cuda_devices() reports the problem and every other call is refused.
 *
 *  Ownership. Device memory belongs to whoever called lmp_cuda_alloc until lmp_cuda_free
 *  (the table's mem_alloc / mem_free slots are these functions). Scratch that a kernel
 *  needs inside one call is allocated and freed on the calling thread's stream
 *  (stream-ordered, cudaMallocAsync) and never returned.
 *
 *  Threads and streams. Each host thread that issues CUDA ops gets its own stream and
 *  cuBLAS handle, made on its first op (on the device chosen by lmp_cuda_use) and kept
 *  until lmp_cuda_thread_release; ops of one thread run in the order issued. The ops
 *  (kernels/cuda/cuda_kernels.h) are asynchronous: they return once queued. lmp_cuda_copy
 *  (the mem_copy slot) and lmp_cuda_sync wait for the thread's stream.
 *
 *  Errors. The table's ops have the CPU table's signatures (void, or 0 / LMP_ENOMEM), so a
 *  CUDA failure inside one is recorded in the calling thread's sticky error:
 *  lmp_cuda_sync() returns it (and clears it) with its message.
 */
#ifndef LMP_KERNELS_CUDA_CUDA_MEM_H
#define LMP_KERNELS_CUDA_CUDA_MEM_H

#include <stddef.h>
#include <stdint.h>

#include "base/status.h"     /* defines: enum lmp_status, struct lmp_err */
#include "kernels/kernels.h" /* defines: enum lmp_copy_dir */

#ifdef __cplusplus
extern "C" {
#endif

/* What one device is. */
struct lmp_cuda_info {
    char     name[128];    /* "NVIDIA H100 80GB HBM3" */
    uint64_t memory_bytes; /* global memory, bytes */
    int      cc;           /* compute capability, major * 10 + minor */
    int      n_sm;         /* streaming multiprocessors */
    double   peak_fp32;    /* nominal FP32 FLOP/s (SMs x clock x 128 FMA lanes x 2) */
    double   peak_bw;      /* nominal memory bytes/s (bus width x memory clock x 2) */
};

/* Count the devices: *n_dev = how many (0 on failure). RET LMP_OK (at least one), or
 * LMP_ENODEV with err's one line naming the problem ("no CUDA device: cudaGetDeviceCount:
 * CUDA driver version is insufficient for CUDA runtime version"). */
enum lmp_status lmp_cuda_devices(int *n_dev, struct lmp_err *err);

/* Describe device dev. RET LMP_OK, or LMP_ENODEV. */
enum lmp_status lmp_cuda_device_info(int dev, struct lmp_cuda_info *info, struct lmp_err *err);

/* Make dev the device of this process's CUDA ops (cudaSetDevice; threads that already
 * issued ops keep their stream on the previous one until lmp_cuda_thread_release).
 * RET LMP_OK, or LMP_ENODEV (no such device, or it cannot be used). */
enum lmp_status lmp_cuda_use(int dev, struct lmp_err *err);

/* bytes of device memory, 256-byte aligned; NULL on failure or bytes == 0. Thread-safe. */
void *lmp_cuda_alloc(size_t bytes);
/* Free what lmp_cuda_alloc returned (after the calling thread's queued ops); NULL: no-op. */
void lmp_cuda_free(void *p);
/* Copy bytes (dir as in the CPU tables; host memory may be pageable); synchronous: waits
 * for the calling thread's stream, so earlier ops' outputs are complete. */
void lmp_cuda_copy(void *dst, const void *src, size_t bytes, enum lmp_copy_dir dir);
/* Queue a copy on the calling thread's stream and return (host memory must stay valid
 * and, for a real overlap, be pinned). */
void lmp_cuda_copy_async(void *dst, const void *src, size_t bytes, enum lmp_copy_dir dir);
/* Set bytes of device memory to zero, queued on the calling thread's stream. */
void lmp_cuda_zero(void *dst, size_t bytes);

/* The calling thread's stream (a cudaStream_t), made on first use; NULL if it cannot be. */
void *lmp_cuda_stream(void);
/* Wait for the calling thread's stream. RET LMP_OK, or the first error recorded since the
 * last call (LMP_ENOMEM for out-of-memory, else LMP_ENODEV) with its message; clears it. */
enum lmp_status lmp_cuda_sync(struct lmp_err *err);
/* Destroy the calling thread's stream and cuBLAS handle (after waiting for them). */
void lmp_cuda_thread_release(void);

#ifdef __cplusplus
}
#endif

#endif /* LMP_KERNELS_CUDA_CUDA_MEM_H */
