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

/* The update half-step. Version 1: one thread per centroid coordinate (k, t) scans every
 * point in order and adds those assigned to k: the reference's sums in the reference's order
 * (no contraction), so the same bits. O(n K g) reads of assign, which the threads of a warp
 * share; fine for AQLM's initialisation (K <= 65536 centroids of g <= 16). */
__global__ void kmeans_update_kernel(float *cent, const float *pts, const float *weights,
                                     const int32_t *assign, int64_t n, int64_t K, int g) {
    const int64_t x = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (x >= K * g) return;
    const int64_t k   = x / g;
    const int     t   = (int)(x % g);
    double        sum = 0.0, wsum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        if (assign[i] != k) continue;
        const double wi = weights ? (double)weights[i] : 1.0;
        sum             = __dadd_rn(sum, __dmul_rn(wi, (double)pts[i * g + t]));
        wsum += wi;
    }
    if (wsum > 0.0) cent[x] = (float)(sum / wsum);
}

extern "C" void lmp_kmeans_update_cuda(float *cent, const float *pts, const float *weights,
                                       const int32_t *assign, int64_t n, int64_t K, int g) {
    cudaStream_t st = lmp_cuda_stream_get();
    if (st == NULL || n <= 0 || K <= 0) return;
    kmeans_update_kernel<<<lmp_cuda_blocks(K * g, 128), 128, 0, st>>>(cent, pts, weights, assign, n,
                                                                      K, g);
    lmp_cuda_check_launch("kmeans_update");
}
