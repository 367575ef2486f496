/*  kmeans - the k-means assignment half-step (AQLM's residual k-means initialisation)
 *
 *  CPU reference: kernels/ref/kmeans_ref.c (lmp_kmeans_assign_ref).
 *
 *  Version 1 (this one): one thread per point scans the K centroids in order with the
 *  reference's double arithmetic (no FMA contraction: __dmul_rn, __dadd_rn), so the
 *  distances, and the assignment with its lowest-k tie rule, are the reference's bits.
 *  The centroids are read through the cache; K g floats fit it for AQLM's codebooks.
 */
#include "kernels/cuda/cuda_internal.cuh"

__global__ void kmeans_assign_kernel(int32_t *assign, float *dist2, const float *pts, int64_t n,
                                     const float *cent, int64_t K, int g) {
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float *p    = pts + i * g;
    double       best = 0.0;
    int32_t      bk   = 0;
    for (int64_t k = 0; k < K; k++) {
        double d = 0.0;
        for (int t = 0; t < g; t++) {
            const double e = (double)p[t] - (double)cent[k * g + t];
            d              = __dadd_rn(d, __dmul_rn(e, e));
        }
        if (k == 0 || d < best) {
            best = d;
            bk   = (int32_t)k;
        }
    }
    assign[i] = bk;
    if (dist2) dist2[i] = (float)best;
}

extern "C" void lmp_kmeans_assign_cuda(int32_t *assign, float *dist2, const float *pts, int64_t n,
                                       const float *cent, int64_t K, int g) {
    cudaStream_t st = lmp_cuda_stream_get();
    if (st == NULL || n <= 0) return;
    kmeans_assign_kernel<<<lmp_cuda_blocks(n, 128), 128, 0, st>>>(assign, dist2, pts, n, cent, K,
                                                                  g);
    lmp_cuda_check_launch("kmeans_assign");
}
