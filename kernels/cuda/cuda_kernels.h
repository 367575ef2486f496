/*  cuda_kernels - the CUDA kernel table: the ops of kernels/kernels.h on device pointers
 *
 *  Built only with -DLMP_CUDA=ON. Each op has a .cu file here (llm.c's dev/cuda layout: a
 *  header naming the version, a "CPU reference" line pointing to kernels/ref/, the kernels,
 *  a host launcher with C linkage) and keeps the signature of its kernels.h type, with
 *  every pointer a device pointer (from the table's mem_alloc, kernels/cuda/cuda_mem.h).
 *  Ops are queued on the calling thread's stream and return at once; their errors are
 *  collected by lmp_cuda_sync (cuda_mem.h). tests/kernels/test_kernels_cuda.c compares
 *  every op with its reference and skips where no device is present.
 *
 *  The table ("cuda", LMP_DEVICE_CUDA):
 *
 *      mem_alloc / mem_free / mem_copy   cuda_mem.cu       device memory
 *      sgemm                             gemm_cublas.cu    cublasSgemm (row-major by the
 *                                                          transpose identity)
 *      gram_acc                          gemm_cublas.cu    x to double, cublasDsyrk, mirror
 *      aq_decode                         aq_decode.cu      one thread per weight
 *      aq_matvec                         aq_matvec.cu      lookup tables (K <= 256) or
 *                                                          decode-dot, one warp per output
 *      aq_beam                           aq_beam.cu        the reference's search, one block
 *                                                          per row, candidates scored in
 *                                                          parallel
 *      kmeans_assign                     kmeans.cu         one thread per point
 *      kmeans_update                     kmeans.cu         one thread per centroid coordinate
 *      aq_grad_dw                        aq_grad_dw.cu     gathers per codebook coordinate,
 *                                                          one warp per row for the scales
 *      aq_grad                           aq_grad.cu        decode, cublasDgemm (r H), one
 *                                                          warp per row, the aq_grad_dw gather
 *
 *  The other slots (dequant_row, and any added later) are NULL: a caller
 *  that needs them uses a CPU table. The forward ops of kernels/forward.h are below
 *  (forward.cu), outside the table until the forward pass is device-aware.
 */
#ifndef LMP_KERNELS_CUDA_CUDA_KERNELS_H
#define LMP_KERNELS_CUDA_CUDA_KERNELS_H

#include "base/status.h"     /* defines: struct lmp_err */
#include "kernels/forward.h" /* defines: lmp_rmsnorm_fn, lmp_rope_fn, ... */
#include "kernels/kernels.h" /* defines: struct lmp_kernels, the op types */

#ifdef __cplusplus
extern "C" {
#endif

/* Fill *k with the CUDA table for device dev (lmp_cuda_use(dev)). RET LMP_OK, or
 * LMP_ENODEV (no device, no such device; err names the problem; k untouched). */
enum lmp_status lmp_kernels_init_cuda(struct lmp_kernels *k, int dev, struct lmp_err *err);

lmp_sgemm_fn         lmp_sgemm_cuda;
lmp_gram_acc_fn      lmp_gram_acc_cuda;
lmp_aq_decode_fn     lmp_aq_decode_cuda;
lmp_aq_matvec_fn     lmp_aq_matvec_cuda;
lmp_aq_beam_fn       lmp_aq_beam_cuda;
lmp_kmeans_assign_fn lmp_kmeans_assign_cuda;
lmp_kmeans_update_fn lmp_kmeans_update_cuda;
lmp_aq_grad_dw_fn    lmp_aq_grad_dw_cuda;
lmp_aq_grad_fn       lmp_aq_grad_cuda;

lmp_rmsnorm_fn lmp_rmsnorm_cuda;
lmp_rope_fn    lmp_rope_cuda;
lmp_swiglu_fn  lmp_swiglu_cuda;
lmp_softmax_fn lmp_softmax_cuda;

#ifdef __cplusplus
}
#endif

#endif /* LMP_KERNELS_CUDA_CUDA_KERNELS_H */
