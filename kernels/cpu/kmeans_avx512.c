/*  kmeans_avx512 - k-means assignment with the ||c||^2 - 2 p.c expansion, 16 centroids
 *  per vector (centroids transposed to (g, K)), points split across threads; the update
 *  accumulates in double like the reference.
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
    const float *cT;
    const float *cn;
    int64_t      K, K16;
    int          g;
};

/* Finish point i: reduce the 16 lanes (lowest k on ties), scalar tail, write outputs. */
static void assign_finish(const struct assign_job *J, int64_t i, __m512 bestv, __m512i besti) {
    const int    g = J->g;
    const float *p = J->pts + i * g;
    float        bv[16];
    int32_t      bi[16];
    _mm512_storeu_ps(bv, bestv);
    _mm512_storeu_si512(bi, besti);
    float   best = FLT_MAX;
    int32_t bk   = 0;
    for (int l = 0; l < 16; l++)
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

/* g = 8: four points at a time share each block of 16 transposed centroids held in
 * registers; four independent FMA chains hide the FMA latency. */
static int64_t assign_g8(const struct assign_job *J, int64_t lo, int64_t hi) {
    const __m512i sixteen = _mm512_set1_epi32(16);
    int64_t       i       = lo;
    for (; i + 4 <= hi; i += 4) {
        const float *p = J->pts + i * 8;
        __m512       bv[4];
        __m512i      bi[4];
#pragma GCC unroll 4
        for (int u = 0; u < 4; u++) {
            bv[u] = _mm512_set1_ps(FLT_MAX);
            bi[u] = _mm512_setzero_si512();
        }
        __m512i idx = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        for (int64_t k = 0; k < J->K16; k += 16) {
            __m512 c[8];
#pragma GCC unroll 8
            for (int t = 0; t < 8; t++) c[t] = _mm512_loadu_ps(J->cT + t * J->K16 + k);
            const __m512 cn = _mm512_loadu_ps(J->cn + k);
#pragma GCC unroll 4
            for (int u = 0; u < 4; u++) {
                __m512 a0 = cn, a1 = _mm512_setzero_ps();
#pragma GCC unroll 4
                for (int t = 0; t < 8; t += 2) {
                    a0 = _mm512_fmadd_ps(_mm512_set1_ps(-2.0f * p[u * 8 + t]), c[t], a0);
                    a1 = _mm512_fmadd_ps(_mm512_set1_ps(-2.0f * p[u * 8 + t + 1]), c[t + 1], a1);
                }
                a0           = _mm512_add_ps(a0, a1);
                __mmask16 lt = _mm512_cmp_ps_mask(a0, bv[u], _CMP_LT_OQ);
                bv[u]        = _mm512_mask_blend_ps(lt, bv[u], a0);
                bi[u]        = _mm512_mask_blend_epi32(lt, bi[u], idx);
            }
            idx = _mm512_add_epi32(idx, sixteen);
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
    for (int64_t i = lo; i < hi; i++) {
        const float *p     = J->pts + i * g;
        __m512       bestv = _mm512_set1_ps(FLT_MAX);
        __m512i      besti = _mm512_setzero_si512(),
                idx = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        const __m512i sixteen = _mm512_set1_epi32(16);
        for (int64_t k = 0; k < J->K16; k += 16) {
            __m512 acc = _mm512_loadu_ps(J->cn + k);
            for (int t = 0; t < g; t++)
                acc = _mm512_fmadd_ps(_mm512_set1_ps(-2.0f * p[t]),
                                      _mm512_loadu_ps(J->cT + t * J->K16 + k), acc);
            __mmask16 lt = _mm512_cmp_ps_mask(acc, bestv, _CMP_LT_OQ);
            bestv        = _mm512_mask_blend_ps(lt, bestv, acc);
            besti        = _mm512_mask_blend_epi32(lt, besti, idx);
            idx          = _mm512_add_epi32(idx, sixteen);
        }
        assign_finish(J, i, bestv, besti);
    }
}

void lmp_kmeans_assign_avx512(int32_t *assign, float *dist2, const float *pts, int64_t n,
                              const float *cent, int64_t K, int g) {
    const int64_t           K16  = K / 16 * 16;
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

void lmp_kmeans_update_avx512(float *cent, const float *pts, const float *weights,
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
        double  wi  = weights ? (double)weights[i] : 1.0;
        double *dst = sum + assign[i] * 8;
        __m512d pv  = _mm512_cvtps_pd(_mm256_loadu_ps(pts + i * 8));
        _mm512_storeu_pd(dst, _mm512_fmadd_pd(_mm512_set1_pd(wi), pv, _mm512_loadu_pd(dst)));
        wsum[assign[i]] += wi;
    }
    for (int64_t k = 0; k < K; k++)
        if (wsum[k] > 0.0) {
            __m512d c = _mm512_div_pd(_mm512_loadu_pd(sum + k * 8), _mm512_set1_pd(wsum[k]));
            _mm256_storeu_ps(cent + k * 8, _mm512_cvtpd_ps(c));
        }
    lmp_scratch_reset(mark);
}
