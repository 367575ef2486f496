/*  aq_matvec_ref - y = W_hat x for a batch of inputs, straight from the codes
 *
 *      y[b, o] = scale[o] * sum_j sum_m  cb[m][codes[o, j, m]] . x[b, j*g : (j+1)*g]
 *
 *  The reference takes the dot products one codeword at a time (sums in double).
 */
#include "kernels/kernels.h"

int lmp_aq_matvec_ref(float       *y,                         /* (n_batch, n_out) out */
                      const float *x,                         /* (n_batch, n_in) */
                      int64_t n_batch, const uint16_t *codes, /* (n_out, n_in/g, M) */
                      const float               *cb,          /* (M, K, g) */
                      const float               *scale,       /* (n_out) */
                      const struct lmp_aq_shape *s) {
    const int64_t n_grp = s->n_in / s->g;
    for (int64_t b = 0; b < n_batch; b++) {
        for (int64_t o = 0; o < s->n_out; o++) {
            double acc = 0.0;
            for (int64_t j = 0; j < n_grp; j++) {
                const float *xg = x + b * s->n_in + j * s->g;
                for (int m = 0; m < s->M; m++) {
                    const float *c =
                        cb + ((int64_t)m * s->K + codes[(o * n_grp + j) * s->M + m]) * s->g;
                    for (int t = 0; t < s->g; t++) acc += (double)c[t] * (double)xg[t];
                }
            }
            y[b * s->n_out + o] = (float)(acc * scale[o]);
        }
    }
    return 0;
}
