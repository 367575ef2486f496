/*  aq_grad_avx512 - AQLM objective and gradient with the O(n_out n_in^2) product R H
 *  done by OpenBLAS sgemm (the dominant cost of a codebook/scale step)
 *
 *  U = decode(codes) with unit scales, R = W - diag(s) U, RH = R H (sgemm, fp32),
 *  L = sum R * RH (double), G = -2 RH, then the same scatter as the reference.
 *  CPU reference: kernels/ref/aq_grad_ref.c
 */
#include "kernels/cpu/cpu_variants.h"
#include "proto/status.h"   /* defines: LMP_ENOMEM */

#include <cblas.h>
#include <immintrin.h>
#include <stdlib.h>

int lmp_aq_grad_avx512(double *loss, float *g_cb, float *g_scale, const uint16_t *codes,
                       const float *w, const float *scale, const float *cb, const float *h,
                       const struct lmp_aq_shape *s) {
    const int64_t n_out = s->n_out, n_in = s->n_in, g = s->g, M = s->M, K = s->K;
    const int64_t n_grp = n_in / g, n_cb = M * K * g;
    if (n_out <= 0) return lmp_aq_grad_ref(loss, g_cb, g_scale, codes, w, scale, cb, h, s);
    float *u   = malloc((size_t) (3 * n_out * n_in + n_out) * sizeof(float));
    double *gc = calloc((size_t) n_cb, sizeof(double));
    if (u == NULL || gc == NULL) { free(u); free(gc); return LMP_ENOMEM; }
    float *r = u + n_out * n_in, *rh = r + n_out * n_in, *ones = rh + n_out * n_in;
    for (int64_t o = 0; o < n_out; o++) ones[o] = 1.0f;
    struct lmp_aq_shape s1 = *s;
    lmp_aq_decode_avx512(u, codes, cb, ones, &s1);
    for (int64_t o = 0; o < n_out; o++) {
        const __m512 so = _mm512_set1_ps(scale[o]);
        int64_t i = 0;
        for (; i + 16 <= n_in; i += 16)
            _mm512_storeu_ps(r + o * n_in + i, _mm512_fnmadd_ps(so, _mm512_loadu_ps(u + o * n_in + i),
                                                                _mm512_loadu_ps(w + o * n_in + i)));
        for (; i < n_in; i++) r[o * n_in + i] = w[o * n_in + i] - scale[o] * u[o * n_in + i];
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint) n_out, (blasint) n_in,
                (blasint) n_in, 1.0f, r, (blasint) n_in, h, (blasint) n_in, 0.0f, rh, (blasint) n_in);
    double L = 0.0;
    for (int64_t o = 0; o < n_out; o++) {
        const float *ro = r + o * n_in, *qo = rh + o * n_in, *uo = u + o * n_in;
        __m512d l8 = _mm512_setzero_pd(), s8 = _mm512_setzero_pd();
        int64_t i = 0;
        for (; i + 8 <= n_in; i += 8) {
            __m512d q = _mm512_cvtps_pd(_mm256_loadu_ps(qo + i));
            l8 = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm256_loadu_ps(ro + i)), q, l8);
            s8 = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm256_loadu_ps(uo + i)), q, s8);
        }
        double lo = _mm512_reduce_add_pd(l8), gs = _mm512_reduce_add_pd(s8);
        for (; i < n_in; i++) { lo += (double) ro[i] * qo[i]; gs += (double) uo[i] * qo[i]; }
        L += lo;
        g_scale[o] = (float) (-2.0 * gs);
        const double f = -2.0 * scale[o];
        const uint16_t *co = codes + o * n_grp * M;
        for (int64_t j = 0; j < n_grp; j++)
            for (int64_t m = 0; m < M; m++) {
                double *dst = gc + (m * K + co[j * M + m]) * g;
                for (int64_t t = 0; t < g; t++) dst[t] += f * qo[j * g + t];
            }
    }
    for (int64_t k = 0; k < n_cb; k++) g_cb[k] = (float) gc[k];
    *loss = L;
    free(u);
    free(gc);
    return 0;
}
