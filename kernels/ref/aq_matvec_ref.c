/*  aq_matvec_ref - y = x W_hat^T for a batch of inputs, straight from the codes
 *
 *      y[b, o] = scale[o] * sum_j sum_m  cb[m][codes[o, j, m]] . x[b, j*g : (j+1)*g]
 *
 *  Two plain algorithms, the ones the fast variants run (kernels/cpu/aq_matvec_*.c):
 *
 *  Lookup tables (K <= 256: the Kx8 codebooks, e.g. 2x8g8). For each input row b and
 *  group j, the table
 *      lut[j, m, k] = cb[m][k] . x[b, j*g : (j+1)*g]          (n_grp, M, K) floats
 *  holds every codeword's dot product with that slice of the input (n_in M K
 *  multiply-adds per input row, independent of n_out); each output is then scale[o]
 *  times the sum of the n_grp M entries its codes select: n_in M / g lookups per output
 *  instead of n_in multiply-adds.
 *
 *  Decode-dot (K > 256: 1x16, whose table of n_grp 65536 entries would cost more than
 *  the weights). Each output row's group is decoded (the sum of its M codewords) and
 *  dotted with the input's slice; the codebook is read, no dense row is kept.
 *
 *  Tables are fp32 (as in the variants); sums over groups and codebooks in double.
 */
#include "kernels/kernels.h"
#include "base/status.h" /* defines: LMP_ENOMEM */

int lmp_aq_matvec_ref(float       *y,                         /* (n_batch, n_out) out */
                      const float *x,                         /* (n_batch, n_in) */
                      int64_t n_batch, const uint16_t *codes, /* (n_out, n_in/g, M) */
                      const float               *cb,          /* (M, K, g) */
                      const float               *scale,       /* (n_out) */
                      const struct lmp_aq_shape *s) {
    const int64_t n_grp = s->n_in / s->g, K = s->K, M = s->M, g = s->g;
    if (K > 256) { /* decode-dot */
        for (int64_t b = 0; b < n_batch; b++)
            for (int64_t o = 0; o < s->n_out; o++) {
                double acc = 0.0;
                for (int64_t j = 0; j < n_grp; j++) {
                    const float *xg = x + b * s->n_in + j * g;
                    for (int64_t t = 0; t < g; t++) {
                        float w = 0.0f; /* the decoded weight w[o, j g + t] / scale[o] */
                        for (int64_t m = 0; m < M; m++)
                            w += cb[(m * K + codes[(o * n_grp + j) * M + m]) * g + t];
                        acc += (double)w * (double)xg[t];
                    }
                }
                y[b * s->n_out + o] = (float)(acc * scale[o]);
            }
        return 0;
    }
    struct lmp_scratch_mark mark = lmp_scratch_mark();
    float *lut = lmp_scratch_alloc((size_t)(n_grp * M * K) * sizeof(float)); /* (n_grp, M, K) */
    if (lut == NULL) {
        lmp_scratch_reset(mark);
        return LMP_ENOMEM;
    }
    for (int64_t b = 0; b < n_batch; b++) {
        const float *xb = x + b * s->n_in;
        for (int64_t j = 0; j < n_grp; j++)
            for (int64_t m = 0; m < M; m++)
                for (int64_t k = 0; k < K; k++) {
                    const float *c   = cb + (m * K + k) * g;
                    float        dot = 0.0f;
                    for (int64_t t = 0; t < g; t++) dot += c[t] * xb[j * g + t];
                    lut[(j * M + m) * K + k] = dot;
                }
        for (int64_t o = 0; o < s->n_out; o++) {
            const uint16_t *co  = codes + o * n_grp * M;
            double          acc = 0.0;
            for (int64_t p = 0; p < n_grp * M; p++) acc += lut[p * K + co[p]];
            y[b * s->n_out + o] = (float)(acc * scale[o]);
        }
    }
    lmp_scratch_reset(mark);
    return 0;
}
