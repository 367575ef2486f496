/*  kmeans_ref - the two half-steps of (weighted) Lloyd k-means on g-dimensional points
 *
 *  assign:  assign[i] = argmin_k ||p_i - c_k||^2        (lowest k wins a tie)
 *  update:  c_k = sum_{i: assign[i]=k} w_i p_i / sum w_i  (w_i = 1 without weights)
 *
 *  A centroid that receives no weight keeps its previous value; the caller decides
 *  whether to re-seed it. Sums are taken in double.
 */
#include "kernels/kernels.h"

#include <stdlib.h>
#include <string.h>

void lmp_kmeans_assign_ref(int32_t     *assign,          /* (n) out */
                           float       *dist2,           /* (n) out, or NULL */
                           const float *pts,             /* (n, g) */
                           int64_t n, const float *cent, /* (K, g) */
                           int64_t K, int g) {
    for (int64_t i = 0; i < n; i++) {
        const float *p    = pts + i * g;
        double       best = 0.0;
        int32_t      bk   = 0;
        for (int64_t k = 0; k < K; k++) {
            double d = 0.0;
            for (int t = 0; t < g; t++) {
                double e = (double)p[t] - (double)cent[k * g + t];
                d += e * e;
            }
            if (k == 0 || d < best) {
                best = d;
                bk   = (int32_t)k;
            }
        }
        assign[i] = bk;
        if (dist2) dist2[i] = (float)best;
    }
}

void lmp_kmeans_update_ref(float         *cent,    /* (K, g) in/out */
                           const float   *pts,     /* (n, g) */
                           const float   *weights, /* (n) or NULL */
                           const int32_t *assign,  /* (n) */
                           int64_t n, int64_t K, int g) {
    struct lmp_scratch_mark mark = lmp_scratch_mark();
    double                 *sum  = lmp_scratch_alloc((size_t)(K * g + K) * sizeof(double));
    if (sum == NULL) { /* keep the centroids: the next iteration retries */
        lmp_scratch_reset(mark);
        return;
    }
    memset(sum, 0, (size_t)(K * g + K) * sizeof(double));
    double *wsum = sum + K * g;
    for (int64_t i = 0; i < n; i++) {
        double  wi = weights ? (double)weights[i] : 1.0;
        int32_t k  = assign[i];
        for (int t = 0; t < g; t++) sum[k * g + t] += wi * (double)pts[i * g + t];
        wsum[k] += wi;
    }
    for (int64_t k = 0; k < K; k++)
        if (wsum[k] > 0.0)
            for (int t = 0; t < g; t++) cent[k * g + t] = (float)(sum[k * g + t] / wsum[k]);
    lmp_scratch_reset(mark);
}
