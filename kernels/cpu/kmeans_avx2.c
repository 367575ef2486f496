/*  kmeans_avx2 - k-means assignment with the ||c||^2 - 2 p.c expansion, 8 centroids per
 *  vector (centroids transposed to (g, K)), points split across threads; the update
 *  accumulates in double like the reference. AVX2 + FMA.
 *
 *  Each candidate's score is formed by the same operations as in kmeans_avx512.c (the
 *  same FMA chains; centroids past the last multiple of 16 by the same scalar tail), and
 *  the lowest k among the lowest scores wins in both, so assignments and distances are
 *  the same bits as the AVX-512 variant's; the update too (the same double FMAs per lane).
 *  CPU reference: kernels/ref/kmeans_ref.c (assignments may differ on near-ties: the
 *  expansion rounds differently; tests compare the distances achieved).
 */
#include "kernels/cpu/cpu_variants.h"
#include "kernels/cpu/parallel.h"

#include <float.h>
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

struct assign_job {
    int32_t     *assign;
    float       *dist2;
    const float *pts;
    int64_t      n;
    const float *cent;
    const float *cT; /* (g, K16) */
    const float *cn; /* (K) ||c_k||^2 */
    int64_t      K, K16;
    int          g;
};

/* Keep the lanes of (v, i) where v < best (strictly: the first k per lane). */
static inline void keep_lower(__m256 v, __m256i i, __m256 *bv, __m256i *bi) {
    const __m256 lt = _mm256_cmp_ps(v, *bv, _CMP_LT_OQ);
    *bv             = _mm256_blendv_ps(*bv, v, lt);
    *bi =
        _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(*bi), _mm256_castsi256_ps(i), lt));
}

/* Finish point i: reduce the 8 lanes (lowest k on ties), scalar tail, write outputs. */
static void assign_finish(const struct assign_job *J, int64_t i, __m256 bestv, __m256i besti) {
    const int    g = J->g;
    const float *p = J->pts + i * g;
    float        bv[8];
    int32_t      bi[8];
    _mm256_storeu_ps(bv, bestv);
    _mm256_storeu_si256((__m256i *)bi, besti);
    float   best = FLT_MAX;
    int32_t bk   = 0;
    for (int l = 0; l < 8; l++)
        if (bv[l] < best || (bv[l] == best && bi[l] < bk)) {
            best = bv[l];
            bk   = bi[l];
        }
    for (int64_t k = J->K16; k < J->K; k++) { /* scalar tail */
        float d = J->cn[k];
        for (int t = 0; t < g; t++) d -= 2.0f * p[t] * J->cent[k * g + t];
        if (d < best) {
            best = d;
            bk   = (int32_t)k;
        }
    }
    J->assign[i] = bk;
    if (J->dist2) {
        float pn = 0.0f;
        for (int t = 0; t < g; t++) pn += p[t] * p[t];
        float d     = best + pn;
        J->dist2[i] = d > 0.0f ? d : 0.0f;
    }
}

/* g = 8: four points at a time share each block of 8 transposed centroids held in
 * registers; two FMA chains per point as in the AVX-512 variant. */
static int64_t assign_g8(const struct assign_job *J, int64_t lo, int64_t hi) {
    const __m256i eight = _mm256_set1_epi32(8);
    int64_t       i     = lo;
    for (; i + 4 <= hi; i += 4) {
        const float *p = J->pts + i * 8;
        __m256       bv[4];
        __m256i      bi[4];
#pragma GCC unroll 4
        for (int u = 0; u < 4; u++) {
            bv[u] = _mm256_set1_ps(FLT_MAX);
            bi[u] = _mm256_setzero_si256();
        }
        __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        for (int64_t k = 0; k < J->K16; k += 8) {
            __m256 c[8];
#pragma GCC unroll 8
            for (int t = 0; t < 8; t++) c[t] = _mm256_loadu_ps(J->cT + t * J->K16 + k);
            const __m256 cn = _mm256_loadu_ps(J->cn + k);
#pragma GCC unroll 4
            for (int u = 0; u < 4; u++) {
                __m256 a0 = cn, a1 = _mm256_setzero_ps();
#pragma GCC unroll 4
                for (int t = 0; t < 8; t += 2) {
                    a0 = _mm256_fmadd_ps(_mm256_set1_ps(-2.0f * p[u * 8 + t]), c[t], a0);
                    a1 = _mm256_fmadd_ps(_mm256_set1_ps(-2.0f * p[u * 8 + t + 1]), c[t + 1], a1);
                }
                keep_lower(_mm256_add_ps(a0, a1), idx, &bv[u], &bi[u]);
            }
            idx = _mm256_add_epi32(idx, eight);
        }
        for (int u = 0; u < 4; u++) assign_finish(J, i + u, bv[u], bi[u]);
    }
    return i;
}

static void assign_part(void *arg, int tid, int nt) {
    const struct assign_job *J = arg;
    int64_t                  lo, hi;
    lmp_par_range(J->n, tid, nt, &lo, &hi);
    const int g = J->g;
    if (g == 8) lo = assign_g8(J, lo, hi);
    const __m256i eight = _mm256_set1_epi32(8);
    for (int64_t i = lo; i < hi; i++) {
        const float *p     = J->pts + i * g;
        __m256       bestv = _mm256_set1_ps(FLT_MAX);
        __m256i besti = _mm256_setzero_si256(), idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        for (int64_t k = 0; k < J->K16; k += 8) {
            __m256 acc = _mm256_loadu_ps(J->cn + k);
            for (int t = 0; t < g; t++)
                acc = _mm256_fmadd_ps(_mm256_set1_ps(-2.0f * p[t]),
                                      _mm256_loadu_ps(J->cT + t * J->K16 + k), acc);
            keep_lower(acc, idx, &bestv, &besti);
            idx = _mm256_add_epi32(idx, eight);
        }
        assign_finish(J, i, bestv, besti);
    }
}

void lmp_kmeans_assign_avx2(int32_t *assign, float *dist2, const float *pts, int64_t n,
                            const float *cent, int64_t K, int g) {
    const int64_t           K16  = K / 16 * 16; /* as the AVX-512 variant: same tail */
    struct lmp_scratch_mark mark = lmp_scratch_mark();
    float *cT = K16 > 0 ? lmp_scratch_alloc((size_t)(g * K16 + K) * sizeof(float)) : NULL;
    if (cT == NULL) {
        lmp_scratch_reset(mark);
        lmp_kmeans_assign_ref(assign, dist2, pts, n, cent, K, g);
        return;
    }
    float *cn = cT + g * K16;
    for (int64_t k = 0; k < K; k++) {
        float s = 0.0f;
        for (int t = 0; t < g; t++) s += cent[k * g + t] * cent[k * g + t];
        cn[k] = s;
        if (k < K16)
            for (int t = 0; t < g; t++) cT[t * K16 + k] = cent[k * g + t];
    }
    struct assign_job J  = {assign, dist2, pts, n, cent, cT, cn, K, K16, g};
    int               nt = lmp_cpu_threads();
    if (n < 256 * nt) nt = 1;
    lmp_cpu_parallel(nt, assign_part, &J);
    lmp_scratch_reset(mark);
}

void lmp_kmeans_update_avx2(float *cent, const float *pts, const float *weights,
                            const int32_t *assign, int64_t n, int64_t K, int g) {
    if (g != 8) {
        lmp_kmeans_update_ref(cent, pts, weights, assign, n, K, g);
        return;
    }
    struct lmp_scratch_mark mark = lmp_scratch_mark();
    double                 *sum  = lmp_scratch_alloc((size_t)(K * 8 + K) * sizeof(double));
    if (sum == NULL) {
        lmp_scratch_reset(mark);
        return;
    }
    memset(sum, 0, (size_t)(K * 8 + K) * sizeof(double));
    double *wsum = sum + K * 8;
    for (int64_t i = 0; i < n; i++) {
        const double  wi  = weights ? (double)weights[i] : 1.0;
        double       *dst = sum + assign[i] * 8;
        const __m256  pv  = _mm256_loadu_ps(pts + i * 8);
        const __m256d w4  = _mm256_set1_pd(wi);
        _mm256_storeu_pd(dst, _mm256_fmadd_pd(w4, _mm256_cvtps_pd(_mm256_castps256_ps128(pv)),
                                              _mm256_loadu_pd(dst)));
        _mm256_storeu_pd(dst + 4, _mm256_fmadd_pd(w4, _mm256_cvtps_pd(_mm256_extractf128_ps(pv, 1)),
                                                  _mm256_loadu_pd(dst + 4)));
        wsum[assign[i]] += wi;
    }
    for (int64_t k = 0; k < K; k++)
        if (wsum[k] > 0.0) {
            const __m256d ws = _mm256_set1_pd(wsum[k]);
            const __m128  lo = _mm256_cvtpd_ps(_mm256_div_pd(_mm256_loadu_pd(sum + k * 8), ws));
            const __m128  hi = _mm256_cvtpd_ps(_mm256_div_pd(_mm256_loadu_pd(sum + k * 8 + 4), ws));
            _mm256_storeu_ps(cent + k * 8, _mm256_set_m128(hi, lo));
        }
    lmp_scratch_reset(mark);
}
