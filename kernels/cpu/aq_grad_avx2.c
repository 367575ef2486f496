/*  aq_grad_avx2 - AQLM objective and gradient with the O(n_out n_in^2) product R H
 *  done by OpenBLAS sgemm (the dominant cost of a codebook/scale step), AVX2 + FMA
 *
 *  U = decode(codes) with unit scales, R = W - diag(s) U, RH = R H (sgemm, fp32),
 *  L = sum R * RH (double), G = -2 RH, then the same scatter as the reference. The
 *  operations of aq_grad_avx512.c lane for lane (its 8 double lanes as two halves of 4,
 *  reduced in _mm512_reduce_add_pd's order): the same bits as the AVX-512 variant.
 *  CPU reference: kernels/ref/aq_grad_ref.c
 */
#include "kernels/cpu/cpu_variants.h"
#include "kernels/cpu/avx2_util.h" /* defines: avx2_mask8, avx2_reduce8_pd */
#include "base/status.h"           /* defines: LMP_ENOMEM */

#include <cblas.h>
#include <immintrin.h>
#include <stdlib.h>

/* u = unscaled decode of row o, r = w - scale u (8 lanes per step, the last masked when
 * g is not a multiple of 8). */
static void decode_residual_row(float *u, float *r, const float *w, const uint16_t *co,
                                const float *cb, float so, int64_t n_grp, int64_t g, int64_t M,
                                int64_t K) {
    const __m256 s8 = _mm256_set1_ps(so);
    for (int64_t j = 0; j < n_grp; j++)
        for (int64_t t = 0; t < g; t += 8) {
            const __m256i mk  = avx2_mask8(g - t);
            __m256        acc = _mm256_maskload_ps(cb + co[j * M] * g + t, mk);
            for (int64_t m = 1; m < M; m++)
                acc = _mm256_add_ps(acc,
                                    _mm256_maskload_ps(cb + (m * K + co[j * M + m]) * g + t, mk));
            _mm256_maskstore_ps(u + j * g + t, mk, acc);
            _mm256_maskstore_ps(r + j * g + t, mk,
                                _mm256_fnmadd_ps(s8, acc, _mm256_maskload_ps(w + j * g + t, mk)));
        }
}

int lmp_aq_grad_avx2(double *loss, float *g_cb, float *g_scale, const uint16_t *codes,
                     const float *w, const float *scale, const float *cb, const float *h,
                     const struct lmp_aq_shape *s) {
    const int64_t n_out = s->n_out, n_in = s->n_in, g = s->g, M = s->M, K = s->K;
    const int64_t n_grp = n_in / g, n_cb = M * K * g;
    if (n_out <= 0) return lmp_aq_grad_ref(loss, g_cb, g_scale, codes, w, scale, cb, h, s);
    struct lmp_scratch_mark mark = lmp_scratch_mark();
    float                  *u    = lmp_scratch_alloc((size_t)(3 * n_out * n_in) * sizeof(float));
    if (u == NULL) {
        lmp_scratch_reset(mark);
        return LMP_ENOMEM;
    }
    float *r = u + n_out * n_in, *rh = r + n_out * n_in;
    for (int64_t o = 0; o < n_out; o++)
        decode_residual_row(u + o * n_in, r + o * n_in, w + o * n_in, codes + o * n_grp * M, cb,
                            scale[o], n_grp, g, M, K);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)n_out, (blasint)n_in,
                (blasint)n_in, 1.0f, r, (blasint)n_in, h, (blasint)n_in, 0.0f, rh, (blasint)n_in);
    /* g_cb accumulates in fp32 (see aq_grad_avx512.c) */
    for (int64_t k = 0; k < n_cb; k++) g_cb[k] = 0.0f;
    double L = 0.0;
    for (int64_t o = 0; o < n_out; o++) {
        const float *ro = r + o * n_in, *qo = rh + o * n_in, *uo = u + o * n_in;
        __m256d      l0 = _mm256_setzero_pd(), l1 = l0, s0 = l0, s1 = l0; /* lanes 0-3, 4-7 */
        int64_t      i = 0;
        for (; i + 8 <= n_in; i += 8) {
            const __m256 q = _mm256_loadu_ps(qo + i), rv = _mm256_loadu_ps(ro + i),
                         uv  = _mm256_loadu_ps(uo + i);
            const __m256d q0 = _mm256_cvtps_pd(_mm256_castps256_ps128(q)),
                          q1 = _mm256_cvtps_pd(_mm256_extractf128_ps(q, 1));
            l0               = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(rv)), q0, l0);
            l1 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(rv, 1)), q1, l1);
            s0 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(uv)), q0, s0);
            s1 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(uv, 1)), q1, s1);
        }
        double lo = avx2_reduce8_pd(l0, l1), gs = avx2_reduce8_pd(s0, s1);
        for (; i < n_in; i++) {
            lo += (double)ro[i] * qo[i];
            gs += (double)uo[i] * qo[i];
        }
        L += lo;
        g_scale[o]         = (float)(-2.0 * gs);
        const __m256    f  = _mm256_set1_ps(-2.0f * scale[o]);
        const uint16_t *co = codes + o * n_grp * M;
        for (int64_t j = 0; j < n_grp; j++)
            for (int64_t m = 0; m < M; m++) {
                float *dst = g_cb + (m * K + co[j * M + m]) * g;
                for (int64_t t = 0; t < g; t += 8) {
                    const __m256i mk = avx2_mask8(g - t);
                    _mm256_maskstore_ps(dst + t, mk,
                                        _mm256_fmadd_ps(f, _mm256_maskload_ps(qo + j * g + t, mk),
                                                        _mm256_maskload_ps(dst + t, mk)));
                }
            }
    }
    *loss = L;
    lmp_scratch_reset(mark);
    return 0;
}
