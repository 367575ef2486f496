/*  aq_grad_ref - AQLM objective and its gradient with respect to codebooks and scales
 *
 *  With u_o the unscaled decoded row (sum of the row's codewords), w_hat_o = s_o u_o,
 *  r_o = w_o - w_hat_o and H symmetric:
 *
 *      L          = sum_o  r_o H r_o^T
 *      G_o        = dL/dw_hat_o = -2 r_o H                          (n_in)
 *      dL/dcb_m[k] = sum over (o, j) with codes[o, j, m] = k of  s_o G_o[j*g : (j+1)*g]
 *      dL/ds_o    = G_o . u_o
 *
 *  Rows are independent, so the codebook gradient of a layer is the sum of the
 *  gradients of any partition of its rows (how row shards combine theirs).
 *  The reference works row by row in double.
 */
#include "kernels/kernels.h"
#include "base/status.h" /* defines: LMP_ENOMEM */

#include <stdlib.h>
#include <string.h>

int lmp_aq_grad_ref(double                    *loss,    /* out: L */
                    float                     *g_cb,    /* (M, K, g) out */
                    float                     *g_scale, /* (n_out) out */
                    const uint16_t            *codes,   /* (n_out, n_in/g, M) */
                    const float               *w,       /* (n_out, n_in) */
                    const float               *scale,   /* (n_out) */
                    const float               *cb,      /* (M, K, g) */
                    const float               *h,       /* (n_in, n_in) */
                    const struct lmp_aq_shape *s) {
    const int64_t           n_in = s->n_in, n_grp = n_in / s->g, n_cb = (int64_t)s->M * s->K * s->g;
    struct lmp_scratch_mark mark = lmp_scratch_mark();
    double                 *u    = lmp_scratch_alloc((size_t)(3 * n_in) * sizeof(double));
    double                 *gc   = lmp_scratch_alloc((size_t)n_cb * sizeof(double));
    if (u == NULL || gc == NULL) {
        lmp_scratch_reset(mark);
        return LMP_ENOMEM;
    }
    memset(gc, 0, (size_t)n_cb * sizeof(double));
    double *r = u + n_in, *gr = r + n_in;
    double  L = 0.0;
    for (int64_t o = 0; o < s->n_out; o++) {
        const uint16_t *co = codes + o * n_grp * s->M;
        for (int64_t j = 0; j < n_grp; j++)
            for (int t = 0; t < s->g; t++) {
                double acc = 0.0;
                for (int m = 0; m < s->M; m++)
                    acc += cb[((int64_t)m * s->K + co[j * s->M + m]) * s->g + t];
                u[j * s->g + t] = acc;
            }
        for (int64_t i = 0; i < n_in; i++) r[i] = (double)w[o * n_in + i] - scale[o] * u[i];
        for (int64_t i = 0; i < n_in; i++) { /* gr = -2 r H */
            double acc = 0.0;
            for (int64_t a = 0; a < n_in; a++) acc += r[a] * h[a * n_in + i];
            gr[i] = -2.0 * acc;
            L += r[i] * acc;
        }
        double gs = 0.0;
        for (int64_t i = 0; i < n_in; i++) gs += gr[i] * u[i];
        g_scale[o] = (float)gs;
        for (int64_t j = 0; j < n_grp; j++)
            for (int m = 0; m < s->M; m++) {
                double *dst = gc + ((int64_t)m * s->K + co[j * s->M + m]) * s->g;
                for (int t = 0; t < s->g; t++) dst[t] += scale[o] * gr[j * s->g + t];
            }
    }
    for (int64_t k = 0; k < n_cb; k++) g_cb[k] = (float)gc[k];
    *loss = L;
    lmp_scratch_reset(mark);
    return 0;
}
