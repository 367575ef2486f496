/*  aq_grad_dw_ref - codebook and scale gradients from a dense weight gradient
 *
 *  Given dL/dW_hat for W_hat[o, j*g + t] = s_o u_o[j*g + t] with
 *  u_o[j*g + t] = sum_m cb[m][codes[o, j, m]][t] (codes frozen), the chain rule gives
 *
 *      dL/ds_o         = sum_i dW[o, i] u_o[i]
 *      dL/dcb[m][k][t] = sum over (o, j) with codes[o, j, m] = k of  s_o dW[o, j*g + t]
 *
 *  This is how block fine-tuning and PV-Tuning's P step turn the backward pass of a
 *  dense layer into updates of the AQ parameters. Both outputs are overwritten. Rows are
 *  independent, so the codebook gradient of a layer is the sum over any partition of its
 *  rows (how row shards combine theirs); g_scale covers only the call's rows.
 *  The reference accumulates the codebook gradient in double.
 */
#include "kernels/kernels.h"
#include "base/status.h" /* defines: LMP_ENOMEM */

#include <stdlib.h>
#include <string.h>

int lmp_aq_grad_dw_ref(float                     *g_cb,    /* (M, K, g) out */
                       float                     *g_scale, /* (n_out) out */
                       const float               *dw,      /* (n_out, n_in) dL/dW_hat */
                       const uint16_t            *codes,   /* (n_out, n_in/g, M) */
                       const float               *cb,      /* (M, K, g) */
                       const float               *scale,   /* (n_out) */
                       const struct lmp_aq_shape *s) {
    const int64_t           n_grp = s->n_in / s->g, n_cb = (int64_t)s->M * s->K * s->g;
    struct lmp_scratch_mark mark = lmp_scratch_mark();
    double                 *gc   = lmp_scratch_alloc((size_t)n_cb * sizeof(double));
    if (gc == NULL) {
        lmp_scratch_reset(mark);
        return LMP_ENOMEM;
    }
    memset(gc, 0, (size_t)n_cb * sizeof(double));
    for (int64_t o = 0; o < s->n_out; o++) {
        const uint16_t *co = codes + o * n_grp * s->M;
        const float    *d  = dw + o * s->n_in;
        double          gs = 0.0;
        for (int64_t j = 0; j < n_grp; j++)
            for (int m = 0; m < s->M; m++) {
                const int64_t base = ((int64_t)m * s->K + co[j * s->M + m]) * s->g;
                for (int t = 0; t < s->g; t++) {
                    gs += (double)d[j * s->g + t] * cb[base + t];
                    gc[base + t] += (double)scale[o] * d[j * s->g + t];
                }
            }
        g_scale[o] = (float)gs;
    }
    for (int64_t k = 0; k < n_cb; k++) g_cb[k] = (float)gc[k];
    lmp_scratch_reset(mark);
    return 0;
}
