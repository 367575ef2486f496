/*  attn_row_ref - attention of one query token (decoding) against its sequence's cache
 *
 *  For grp query heads that share one key/value head (GQA), with the keys [k0, n):
 *      s[i, j] = scale (q_i . k_j)          (dot in fp32, d in order)
 *      p[i, j] = exp(s[i, j] - max_j s[i, j]) / sum_j exp(...)   (fp32, expf, j in order)
 *      o_i     = sum_j p[i, j] v_j          (fp32, j in order)
 *  as the transformer's one-token attention computes it with two sgemms and its softmax
 *  (model/transformer.c), up to the order of the sums. Variants: kernels/cpu/attn_row_avx512.c.
 */
#include "kernels/kernels.h"

#include <math.h>

void lmp_attn_row_ref(float *o, const float *q, const float *k, const float *v, int64_t ks,
                      int64_t k0, int64_t n, int grp, int64_t hd, float scale, float *s) {
    for (int i = 0; i < grp; i++) {
        const float *qi = q + i * hd;
        float       *si = s + (int64_t)i * n;
        float        mx = -INFINITY;
        for (int64_t j = k0; j < n; j++) {
            float dot = 0.0f;
            for (int64_t d = 0; d < hd; d++) dot += qi[d] * k[j * ks + d];
            si[j] = scale * dot;
            mx    = si[j] > mx ? si[j] : mx;
        }
        float sum = 0.0f;
        for (int64_t j = k0; j < n; j++) {
            si[j] = expf(si[j] - mx);
            sum += si[j];
        }
        const float inv = 1.0f / sum;
        float      *oi  = o + i * hd;
        for (int64_t d = 0; d < hd; d++) oi[d] = 0.0f;
        for (int64_t j = k0; j < n; j++) {
            const float p = si[j] * inv;
            for (int64_t d = 0; d < hd; d++) oi[d] += p * v[j * ks + d];
        }
    }
}
