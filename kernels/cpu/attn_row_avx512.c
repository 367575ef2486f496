/*  attn_row_avx512 - attention of one query token against its cache, 16 lanes (AVX-512 F)
 *
 *  The reference (kernels/ref/attn_row_ref.c): per key, its row's dot products with all
 *  grp query heads that share it (lanes over d, then a horizontal sum), the key and value
 *  rows of later keys fetched ahead (a cache row holds every kv head: these are strided);
 *  then per query, its output 4 vectors at a time in registers over every value row
 *  (which stay in L1/L2), the probabilities broadcast. head_dim a multiple of 16 and at
 *  most 256, grp at most 8; else the reference.
 */
#include "kernels/cpu/cpu_variants.h"

#include <immintrin.h>
#include <math.h>

enum { AR_GRP = 8, AR_HD = 256, AR_AHEAD = 8 /* rows fetched ahead */ };

void lmp_attn_row_avx512(float *o, const float *q, const float *k, const float *v, int64_t ks,
                         int64_t k0, int64_t n, int grp, int64_t hd, float scale, float *s) {
    if (hd % 16 != 0 || hd > AR_HD || grp > AR_GRP || grp < 1) {
        lmp_attn_row_ref(o, q, k, v, ks, k0, n, grp, hd, scale, s);
        return;
    }
    const int64_t nv = hd / 16;
    float         mx[AR_GRP], inv[AR_GRP];
    for (int i = 0; i < grp; i++) mx[i] = -INFINITY;
    for (int64_t j = k0; j < n; j++) {
        const float *kj = k + j * ks;
        if (j + AR_AHEAD < n) /* the rows are ks apart: fetched ahead, line by line (the
                                 value rows too, for the sums below) */
            for (int64_t t = 0; t < hd; t += 16) {
                _mm_prefetch((const char *)(kj + AR_AHEAD * ks + t), _MM_HINT_T0);
                _mm_prefetch((const char *)(v + (j + AR_AHEAD) * ks + t), _MM_HINT_T0);
            }
        for (int i = 0; i < grp; i++) {
            const float *qi  = q + i * hd;
            __m512       acc = _mm512_mul_ps(_mm512_loadu_ps(qi), _mm512_loadu_ps(kj));
            for (int64_t t = 1; t < nv; t++)
                acc = _mm512_fmadd_ps(_mm512_loadu_ps(qi + 16 * t), _mm512_loadu_ps(kj + 16 * t),
                                      acc);
            const float sc = scale * _mm512_reduce_add_ps(acc);
            s[i * n + j]   = sc;
            mx[i]          = sc > mx[i] ? sc : mx[i];
        }
    }
    for (int i = 0; i < grp; i++) {
        float *si  = s + (int64_t)i * n;
        float  sum = 0.0f;
        for (int64_t j = k0; j < n; j++) {
            si[j] = expf(si[j] - mx[i]);
            sum += si[j];
        }
        inv[i] = 1.0f / sum;
    }
    /* o_i = sum_j p_ij v_j: per query, 4 vectors of the output at a time in registers over
     * every key (the value rows, read grp times, stay in L1/L2) */
    for (int i = 0; i < grp; i++) {
        const float *si = s + (int64_t)i * n;
        float       *oi = o + i * hd;
        int64_t      t  = 0;
        for (; t + 4 <= nv; t += 4) {
            __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (int64_t j = k0; j < n; j++) {
                const float *vj = v + j * ks + 16 * t;
                const __m512 p  = _mm512_set1_ps(si[j] * inv[i]);
                a0              = _mm512_fmadd_ps(p, _mm512_loadu_ps(vj), a0);
                a1              = _mm512_fmadd_ps(p, _mm512_loadu_ps(vj + 16), a1);
                a2              = _mm512_fmadd_ps(p, _mm512_loadu_ps(vj + 32), a2);
                a3              = _mm512_fmadd_ps(p, _mm512_loadu_ps(vj + 48), a3);
            }
            _mm512_storeu_ps(oi + 16 * t, a0);
            _mm512_storeu_ps(oi + 16 * t + 16, a1);
            _mm512_storeu_ps(oi + 16 * t + 32, a2);
            _mm512_storeu_ps(oi + 16 * t + 48, a3);
        }
        for (; t < nv; t++) {
            __m512 a0 = _mm512_setzero_ps();
            for (int64_t j = k0; j < n; j++)
                a0 = _mm512_fmadd_ps(_mm512_set1_ps(si[j] * inv[i]),
                                     _mm512_loadu_ps(v + j * ks + 16 * t), a0);
            _mm512_storeu_ps(oi + 16 * t, a0);
        }
    }
}
