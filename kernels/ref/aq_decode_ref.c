/*  aq_decode_ref - decode additive-quantized weights
 *
 *  Each group of g consecutive weights in an output row is the sum of M codewords,
 *  one per codebook, times a per-row scale:
 *
 *      w[o, j*g + t] = scale[o] * sum_m  cb[m][ codes[o, j, m] ][t]
 */
#include "kernels/kernels.h"

void lmp_aq_decode_ref(float                     *w,     /* (n_out, n_in) out */
                       const uint16_t            *codes, /* (n_out, n_in/g, M) */
                       const float               *cb,    /* (M, K, g) */
                       const float               *scale, /* (n_out) */
                       const struct lmp_aq_shape *s) {
    const int64_t n_grp = s->n_in / s->g;
    for (int64_t o = 0; o < s->n_out; o++) {
        for (int64_t j = 0; j < n_grp; j++) {
            float *wg = w + o * s->n_in + j * s->g;
            for (int t = 0; t < s->g; t++) wg[t] = 0.0f;
            for (int m = 0; m < s->M; m++) {
                const float *c =
                    cb + ((int64_t)m * s->K + codes[(o * n_grp + j) * s->M + m]) * s->g;
                for (int t = 0; t < s->g; t++) wg[t] += c[t];
            }
            for (int t = 0; t < s->g; t++) wg[t] *= scale[o];
        }
    }
}
