/*  forward_ref - RMSNorm, RoPE, SwiGLU and softmax: the definitions (kernels/forward.h)
 *
 *  The transformer's loops (model/transformer.c) written once more as plain ops over
 *  arrays, in the same order of operations, so that a device variant can be compared
 *  with them: RMSNorm's sum of squares and softmax's sum in double, everything else fp32.
 */
#include "kernels/forward.h"

#include <math.h>

void lmp_rmsnorm_ref(float *out, const float *x, /* (n_rows, dim) */
                     const float *w,             /* (dim) */
                     int64_t n_rows, int64_t dim, float eps) {
    for (int64_t r = 0; r < n_rows; r++) {
        const float *xr = x + r * dim;
        float       *o  = out + r * dim;
        double       ss = 0;
        for (int64_t i = 0; i < dim; i++) ss += (double)xr[i] * xr[i];
        float s = (float)(1.0 / sqrt(ss / (double)dim + (double)eps));
        for (int64_t i = 0; i < dim; i++) o[i] = xr[i] * s * w[i];
    }
}

void lmp_rope_ref(float *x, int64_t n_rows, int n_heads, /* x (n_rows, n_heads * head_dim) */
                  int64_t head_dim, const float *cos_t,  /* (n_pos, head_dim / 2) */
                  const float *sin_t, int64_t pos0, int64_t n_tok, bool interleaved) {
    const int64_t half = head_dim / 2;
    for (int64_t r = 0; r < n_rows; r++) {
        const int64_t pos = pos0 + r % n_tok;
        const float  *cs = cos_t + pos * half, *sn = sin_t + pos * half;
        for (int h = 0; h < n_heads; h++) {
            float *xh = x + (r * n_heads + h) * head_dim;
            for (int64_t i = 0; i < half; i++) {
                const int64_t ia = interleaved ? 2 * i : i, ib = interleaved ? 2 * i + 1 : i + half;
                const float   a = xh[ia], b = xh[ib];
                xh[ia] = a * cs[i] - b * sn[i];
                xh[ib] = a * sn[i] + b * cs[i];
            }
        }
    }
}

void lmp_swiglu_ref(float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

void lmp_softmax_ref(float *x, int64_t n_rows, int64_t n) {
    for (int64_t r = 0; r < n_rows; r++) {
        float *row = x + r * n;
        float  mx  = row[0];
        for (int64_t i = 1; i < n; i++) mx = row[i] > mx ? row[i] : mx;
        double sum = 0;
        for (int64_t i = 0; i < n; i++) {
            row[i] = expf(row[i] - mx);
            sum += row[i];
        }
        const float inv = (float)(1.0 / sum);
        for (int64_t i = 0; i < n; i++) row[i] *= inv;
    }
}
