/*  aq_beam_ref - beam search over the codes of each output row (AQLM's code update)
 *
 *  For one row with target w, scale s and residual r = w - w_hat, the objective is
 *  L = r H r^T. Changing the code of position (group j, codebook m) from c to k moves
 *  the group's weights by d = s (cb_m[k] - cb_m[c]) and changes L by exactly
 *
 *      dL(k) = -2 (rH)_j . d + d^T H_jj d
 *            = e(k) - e(c),   e(k) = s^2 q_jm[k] + cb_m[k] . v,   q_jm[k] = cb_m[k]^T H_jj cb_m[k],
 *                                                                  v = -2 s (rH)_j - 2 s^2 H_jj
 * cb_m[c]
 *
 *  where (rH)_j and H_jj are the g-wide slice and block of group j. After a change,
 *  rH -= d^T H[j-rows, :] keeps the running product exact, so each position costs
 *  O(K g) to score and O(g n_in) to apply.
 *
 *  A beam of b partial solutions is kept: every position expands every hypothesis
 *  into its K variants (k = c is "keep"), and the b lowest-loss distinct code vectors
 *  survive. Because "keep" of the best hypothesis is always a candidate, the best loss
 *  never increases. Positions are visited once, groups in order j = 0, 1, ..., and
 *  within group j the codebooks in the order m_order[j M .. j M + M) (0, 1, ..., M-1
 *  when m_order is NULL). AQLM shuffles groups and codebooks every round: the caller
 *  permutes the groups of w, h and codes and passes the codebook order here.
 *  Distinct code vectors are recognised by a Zobrist hash of (p = j M + m, code). Ties go to the
 * earlier hypothesis, then the lower k. The reference keeps rH and losses in double.
 */
#include "kernels/kernels.h"
#include "base/status.h" /* defines: LMP_ENOMEM */

#include <stdlib.h>
#include <string.h>

/* Zobrist key of (position, code): splitmix64 of a unique index. */
static uint64_t zkey(int64_t pos, int code) {
    uint64_t z = (uint64_t)pos * 65536u + (uint64_t)code + 0x9E3779B97F4A7C15ull;
    z          = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z          = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

struct hyp {
    uint16_t *codes; /* (n_grp * M) */
    double   *rh;    /* (n_in) r H */
    double    loss;
    uint64_t  hash;
};

int lmp_aq_beam_ref(uint16_t                  *codes, /* (n_out, n_grp, M) in/out */
                    double                    *loss,  /* (n_out) out, or NULL */
                    const float               *w,     /* (n_out, n_in) */
                    const float               *scale, /* (n_out) */
                    const float               *cb,    /* (M, K, g) */
                    const float               *h,     /* (n_in, n_in) */
                    const struct lmp_aq_shape *s, int beam,
                    const uint8_t *m_order) { /* (n_grp, M) or NULL */
    const int64_t n_in = s->n_in, g = s->g, K = s->K, M = s->M, n_grp = n_in / g, P = n_grp * M;
    if (beam < 1) beam = 1;
    int                     st   = LMP_ENOMEM;
    struct lmp_scratch_mark mark = lmp_scratch_mark();
    double     *q     = lmp_scratch_alloc((size_t)(P * K) * sizeof(double)); /* (n_grp, M, K) */
    double     *cand  = lmp_scratch_alloc((size_t)(beam * K) * sizeof(double));
    uint64_t   *chash = lmp_scratch_alloc((size_t)(beam * K) * sizeof(uint64_t));
    double     *tmp   = lmp_scratch_alloc((size_t)(2 * n_in + g) * sizeof(double));
    struct hyp *hy    = lmp_scratch_alloc((size_t)(2 * beam) * sizeof(*hy));
    int        *pick  = lmp_scratch_alloc((size_t)beam * 2 * sizeof(int));
    if (!q || !cand || !chash || !tmp || !hy || !pick) goto out;
    memset(hy, 0, (size_t)(2 * beam) * sizeof(*hy));
    for (int i = 0; i < 2 * beam; i++) {
        hy[i].codes = lmp_scratch_alloc((size_t)P * sizeof(uint16_t));
        hy[i].rh    = lmp_scratch_alloc((size_t)n_in * sizeof(double));
        if (!hy[i].codes || !hy[i].rh) goto out;
    }
    double *r = tmp, *v = tmp + n_in, *hc = tmp + 2 * n_in; /* hc (g) = H_jj cb_m[c] */

    for (int64_t j = 0; j < n_grp; j++) /* q_jm[k] = c^T H_jj c */
        for (int64_t m = 0; m < M; m++)
            for (int64_t k = 0; k < K; k++) {
                const float *c   = cb + (m * K + k) * g;
                double       acc = 0.0;
                for (int64_t a = 0; a < g; a++)
                    for (int64_t b = 0; b < g; b++)
                        acc += (double)c[a] * h[(j * g + a) * n_in + j * g + b] * c[b];
                q[(j * M + m) * K + k] = acc;
            }

    for (int64_t o = 0; o < s->n_out; o++) {
        const double so  = scale[o];
        struct hyp  *cur = hy, *nxt = hy + beam;
        int          n_cur = 1;
        memcpy(cur[0].codes, codes + o * P, (size_t)P * sizeof(uint16_t));
        cur[0].hash = 0;
        for (int64_t p = 0; p < P; p++) cur[0].hash ^= zkey(p, cur[0].codes[p]);
        for (int64_t j = 0; j < n_grp; j++) /* r = w - s u */
            for (int64_t t = 0; t < g; t++) {
                double u = 0.0;
                for (int64_t m = 0; m < M; m++) u += cb[(m * K + cur[0].codes[j * M + m]) * g + t];
                r[j * g + t] = (double)w[o * n_in + j * g + t] - so * u;
            }
        cur[0].loss = 0.0;
        for (int64_t i = 0; i < n_in; i++) {
            double acc = 0.0;
            for (int64_t a = 0; a < n_in; a++) acc += r[a] * h[a * n_in + i];
            cur[0].rh[i] = acc;
            cur[0].loss += r[i] * acc;
        }

        for (int64_t j = 0; j < n_grp; j++) {
            for (int64_t mi = 0; mi < M; mi++) {
                const int64_t m  = m_order ? m_order[j * M + mi] : mi;
                const int64_t p  = j * M + m;
                const double *qp = q + p * K;
                for (int hi = 0; hi < n_cur; hi++) { /* score every variant */
                    const struct hyp *x  = &cur[hi];
                    const int         c  = x->codes[p];
                    const float      *cc = cb + (m * K + c) * g;
                    for (int64_t a = 0; a < g; a++) {
                        double acc = 0.0;
                        for (int64_t b = 0; b < g; b++)
                            acc += h[(j * g + a) * n_in + j * g + b] * cc[b];
                        hc[a] = acc;
                    }
                    for (int64_t a = 0; a < g; a++)
                        v[a] = -2.0 * so * x->rh[j * g + a] - 2.0 * so * so * hc[a];
                    const uint64_t hbase = x->hash ^ zkey(p, c);
                    double         ec    = so * so * qp[c]; /* e(c) */
                    for (int64_t a = 0; a < g; a++) ec += cc[a] * v[a];
                    for (int64_t k = 0; k < K; k++) {
                        const float *ck = cb + (m * K + k) * g;
                        double       d  = so * so * qp[k] - ec;
                        for (int64_t a = 0; a < g; a++) d += ck[a] * v[a];
                        if (k == c) d = 0.0;
                        cand[hi * K + k]  = x->loss + d;
                        chash[hi * K + k] = hbase ^ zkey(p, (int)k);
                    }
                }
                int n_nxt = 0; /* b best distinct */
                while (n_nxt < beam) {
                    int best = -1;
                    for (int ci = 0; ci < n_cur * K; ci++) {
                        if (best >= 0 && !(cand[ci] < cand[best])) continue;
                        int dup = 0;
                        for (int e = 0; e < n_nxt; e++) dup |= chash[pick[e]] == chash[ci];
                        if (!dup) best = ci;
                    }
                    if (best < 0) break;
                    pick[n_nxt++] = best;
                }
                for (int e = 0; e < n_nxt; e++) { /* apply */
                    const struct hyp *x = &cur[pick[e] / K];
                    struct hyp       *y = &nxt[e];
                    const int         k = pick[e] % K, c = x->codes[p];
                    memcpy(y->codes, x->codes, (size_t)P * sizeof(uint16_t));
                    memcpy(y->rh, x->rh, (size_t)n_in * sizeof(double));
                    y->codes[p] = (uint16_t)k;
                    y->loss     = cand[pick[e]];
                    y->hash     = chash[pick[e]];
                    if (k != c)
                        for (int64_t a = 0; a < g; a++) {
                            double d =
                                so * ((double)cb[(m * K + k) * g + a] - cb[(m * K + c) * g + a]);
                            for (int64_t i = 0; i < n_in; i++)
                                y->rh[i] -= d * h[(j * g + a) * n_in + i];
                        }
                }
                struct hyp *sw = cur;
                cur            = nxt;
                nxt            = sw;
                n_cur          = n_nxt;
            }
        }
        int bi = 0; /* the survivors are sorted: cur[0] is best */
        memcpy(codes + o * P, cur[bi].codes, (size_t)P * sizeof(uint16_t));
        if (loss) loss[o] = cur[bi].loss;
    }
    st = 0;
out:
    lmp_scratch_reset(mark);
    return st;
}
